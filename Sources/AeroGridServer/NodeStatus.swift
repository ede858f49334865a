import AeroGridAPI
import AeroGridCore
import AeroGridKafka
import AeroGridStore
import Foundation
import Logging
import Synchronization

/// What each node of a cluster says about the apps it runs, as Kafka Connect's workers do in
/// their status topic (docs/cluster.md "Status across nodes"): every node writes, every few
/// seconds and at once when something changes, one record with the state, counts and usage
/// of each app it runs; every node reads them all. So any node answers an app's status and
/// tells discovery's watchers which node runs it, without asking the others.
///
/// Record format 1, keyed by node id: `{"v":1,"node":…,"apps":[{"tenant","app","id","state",
/// "crash_reason","last_crash","restarts","records","lag","usage"}]}`.
final class NodeStatus: Sendable {
    struct Record: Codable, Sendable, Equatable {
        var v = 1
        var node: String
        var apps: [App]
    }

    /// One app as the node that runs it describes it.
    struct App: Codable, Sendable, Equatable {
        var tenant: String
        var app: String
        var id: String
        var state: String
        var crashReason: String?
        var lastCrash: String?
        var restarts: Int
        var records: Int
        var lag: Int?
        var usage: Schemas.Usage?

        enum CodingKeys: String, CodingKey {
            case tenant, app, id, state, restarts, records, lag, usage
            case crashReason = "crash_reason"
            case lastCrash = "last_crash"
        }
    }

    /// How often a node writes its record when nothing changes; a node not heard from for
    /// three of these runs nothing, as far as the others know.
    static let interval: Duration = .seconds(2)

    private let nodeID: String
    private let topic: String
    private let kafka: KafkaConfiguration
    private let producer: KafkaProducer
    private let logger: Logger
    /// The latest record of every other node, with when it came.
    private let heard = Mutex<[String: (record: Record, at: ContinuousClock.Instant)]>([:])
    private let dirty = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    init(nodeID: String, topic: String, kafka: KafkaConfiguration, producer: KafkaProducer, logger: Logger) {
        self.nodeID = nodeID
        self.topic = topic
        self.kafka = kafka
        self.producer = producer
        self.logger = logger
    }

    /// The node running the app and its description there, if another node says it runs it.
    func elsewhere(tenant: String, app: String) -> (node: String, app: App)? {
        let now = ContinuousClock.now
        return heard.withLock { heard in
            for (node, entry) in heard.sorted(by: { $0.key < $1.key }) where now - entry.at < Self.interval * 3 {
                if let found = entry.record.apps.first(where: { $0.tenant == tenant && $0.app == app }) { return (node, found) }
            }
            return nil
        }
    }

    /// Something about this node's apps changed: its record goes out now.
    func changed() { dirty.continuation.yield() }

    /// Writes this node's record every `interval`, and on each change, until cancelled;
    /// the last one, at shutdown, says it runs nothing.
    func publish(_ describe: @Sendable () async -> [App]) async {
        let ticker = Task { [dirty] in
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.interval)
                dirty.continuation.yield()
            }
        }
        defer { ticker.cancel() }
        var last: [App]?
        var lastSent = ContinuousClock.now
        for await _ in dirty.stream {
            if Task.isCancelled { break }
            // At most five records a second, however often things change.
            try? await Task.sleep(for: .milliseconds(200))
            let apps = await describe()
            guard apps != last || ContinuousClock.now - lastSent >= Self.interval else { continue }
            write(apps)
            last = apps
            lastSent = .now
        }
        write([])
        try? await producer.flush(timeout: .seconds(2))
    }

    private func write(_ apps: [App]) {
        guard let value = try? JSONEncoder().encode(Record(node: nodeID, apps: apps)) else { return }
        let error = producer.produce(topic: topic, partition: 0, key: Array(nodeID.utf8), value: Array(value)) { [logger] result in
            if case .failure(let error) = result { logger.debug("a status record was not delivered: \(error)") }
        }
        if let error { logger.debug("a status record could not be sent: \(error)") }
    }

    /// Reads every node's records until cancelled (from a little before the end: each node
    /// writes every few seconds), telling `onChange` of each app whose description changed.
    func follow(onChange: @Sendable (AppID) -> Void) async {
        while !Task.isCancelled {
            do {
                try await read(onChange: onChange)
            } catch {
                if !Task.isCancelled { logger.warning("reading the cluster's status topic: \(error)") }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func read(onChange: @Sendable (AppID) -> Void) async throws {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka), logger: logger)
        defer { Task { await consumer.close() } }
        let partition = TopicPartition(topic, 0)
        let marks = try await consumer.watermarks(partition)
        try await consumer.assign([partition: .offset(max(marks.low, marks.high - 1000))])
        let decoder = JSONDecoder()
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(500))
            var changed = Set<AppID>()
            for message in batch.messages {
                guard let value = message.value, let record = try? decoder.decode(Record.self, from: Data(value)), record.v == 1,
                    record.node != nodeID
                else { continue }
                let before = heard.withLock { heard in
                    defer { heard[record.node] = (record, .now) }
                    return heard[record.node]?.record.apps ?? []
                }
                changed.formUnion(Self.differences(before, record.apps))
            }
            // A node gone quiet runs nothing any more, as far as this one knows.
            let now = ContinuousClock.now
            let gone = heard.withLock { heard in
                let stale = heard.filter { now - $0.value.at >= Self.interval * 3 }
                for node in stale.keys { heard[node] = nil }
                return stale.values.flatMap(\.record.apps)
            }
            changed.formUnion(gone.map { AppID(tenant: $0.tenant, name: $0.app) })
            for app in changed.sorted() { onChange(app) }
        }
    }

    private static func differences(_ before: [App], _ after: [App]) -> Set<AppID> {
        let old = Dictionary(before.map { (AppID(tenant: $0.tenant, name: $0.app), $0) }, uniquingKeysWith: { first, _ in first })
        let new = Dictionary(after.map { (AppID(tenant: $0.tenant, name: $0.app), $0) }, uniquingKeysWith: { first, _ in first })
        return Set(Set(old.keys).union(new.keys).filter { old[$0] != new[$0] })
    }
}
