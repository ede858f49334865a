import AeroGridCluster
import AeroGridCore
import AeroGridKafka
import AeroGridStore
import Foundation
import Logging

/// On a node of a cluster: every audit entry goes to the cluster's audit topic as well as
/// into this node's store, and every node reads the topic into its store, so any node
/// shows the whole cluster's audit. Format 1: a JSON object per entry (`v`, `id`, `time`,
/// `tenant`, `tenant_id`, `actor`, `action`, `target`, `source`, `outcome`, `node`), keyed
/// by the tenant's id. A node that began reading after the topic had dropped older entries
/// says from when its audit is whole.
final class AuditTopic: Sendable {
    static let formatVersion = 1
    /// A record larger than this is not an entry any node wrote: skipped.
    static let recordBytes = 64 << 10
    let topic: String
    private let kafka: KafkaConfiguration
    private let producer: KafkaProducer
    private let store: Store
    private let nodeID: String
    private let logger: Logger

    init(kafka: KafkaConfiguration, topic: String, store: Store, nodeID: String, logger: Logger) throws {
        self.topic = topic
        self.kafka = kafka
        self.store = store
        self.nodeID = nodeID
        self.logger = logger
        producer = try ClusterTopics.producer(kafka, logger: logger)
    }

    private struct Entry: Codable {
        var v: Int
        var id: String
        var time: Double
        var tenant: String?
        var tenantId: String?
        var actor: String
        var action: String
        var target: String
        var source: String
        var outcome: String
        var node: String

        enum CodingKeys: String, CodingKey {
            case v, id, time, tenant, actor, action, target, source, outcome, node
            case tenantId = "tenant_id"
        }
    }

    /// Sends an entry this node kept; the store already has it, so a failure is logged.
    func publish(_ entry: Store.AuditRecord) async {
        guard let id = entry.entryID else { return }
        let value = Entry(
            v: Self.formatVersion, id: id, time: entry.time.timeIntervalSince1970, tenant: entry.tenant, tenantId: entry.tenantID,
            actor: entry.actor, action: entry.action, target: entry.target, source: entry.source, outcome: entry.outcome, node: nodeID)
        do {
            let bytes = Array(try JSONEncoder().encode(value))
            _ = try await producer.send(topic: topic, partition: 0, key: entry.tenantID.map { Array($0.utf8) }, value: bytes)
        } catch {
            logger.error("audit entry \(id) is kept on this node but did not reach \(topic): \(error)")
        }
    }

    /// Reads the topic into this node's store until cancelled.
    func follow() async {
        while !Task.isCancelled {
            do {
                try await followFromStoredPosition()
            } catch is CancellationError {
                return
            } catch {
                logger.error("reading \(topic): \(error); trying again in 1 s")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func followFromStoredPosition() async throws {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka), logger: logger)
        defer { Task { await consumer.close() } }
        let partition = TopicPartition(topic, 0)
        let marks = try await consumer.watermarks(partition)
        let stored = try await store.auditPosition()
        var next = stored?.nextOffset ?? marks.low
        // A topic emptied (a restarted embedded Kafka) or trimmed past where this node was:
        // from what it has. The entries this node kept stay.
        if next > marks.high || next < marks.low { next = marks.low }
        var completeSince: Date? = nil
        let beginsLate = stored == nil && marks.low > 0
        try await consumer.assign([partition: .offset(next)])
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 500, timeout: .milliseconds(200))
            var entries: [Store.AuditRecord] = []
            for message in batch.messages where message.topic == topic && message.offset >= next {
                next = message.offset + 1
                guard let value = message.value, value.count <= Self.recordBytes,
                    let entry = try? JSONDecoder().decode(Entry.self, from: Data(value)), entry.v == Self.formatVersion, entry.time.isFinite
                else {
                    logger.warning("skipping the record at offset \(message.offset) of \(topic): not an audit entry of format \(Self.formatVersion)")
                    continue
                }
                if beginsLate, completeSince == nil, stored == nil, entries.isEmpty { completeSince = Date(timeIntervalSince1970: entry.time) }
                entries.append(
                    Store.AuditRecord(
                        entryID: entry.id.cut(toBytes: 64), time: Date(timeIntervalSince1970: entry.time), tenant: entry.tenant?.cut(toBytes: 64),
                        tenantID: entry.tenantId?.cut(toBytes: 64), actor: entry.actor.cut(toBytes: 64), action: entry.action.cut(toBytes: 64),
                        target: entry.target.cut(toBytes: 256), source: entry.source.cut(toBytes: 256), outcome: entry.outcome.cut(toBytes: 4096)))
            }
            if !batch.messages.isEmpty {
                try await store.appendAudit(entries, nextOffset: next, completeSince: completeSince)
            }
        }
    }

    func close() async {
        try? await producer.flush(timeout: .seconds(5))
        await producer.close()
    }
}
