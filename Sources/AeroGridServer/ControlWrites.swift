public import AeroGridCluster
import AeroGridCore
import AeroGridKafka
public import AeroGridStore
import Foundation
public import Logging
import Synchronization

/// Where the API's writes go. On a single node they are applied to its view at once; on a
/// node of a cluster they are appended to the cluster's config log and answered once this
/// node has read them back and applied them (read-your-writes), so a write is decided by
/// its place in the log — the same decision on every node.
public final class ControlWrites: Sendable {
    public let store: Store
    let effects: ControlEffects
    private let applier: ControlApplier
    private let cluster: ClusterLog?
    /// How long a caller waits for its write to come back from the log.
    static let readBackTimeout: Duration = .seconds(10)

    /// Writes applied here directly: a single node.
    public init(store: Store) {
        self.store = store
        effects = ControlEffects(store: store)
        applier = ControlApplier(store: store)
        cluster = nil
    }

    /// Writes through the cluster's log, which `follow` reads into this node's view.
    public init(store: Store, log: ConfigLog, logger: Logger) {
        self.store = store
        effects = ControlEffects(store: store)
        applier = ControlApplier(store: store)
        cluster = ClusterLog(log: log, logger: logger)
    }

    /// Makes the write and returns what it came to; a refusal is thrown as the API error
    /// every node decided. `writeID` is the caller's when it retries a write.
    @discardableResult
    func submit(_ change: ControlChange, writeID: String = ControlRecord.newWriteID()) async throws -> ControlOutcome {
        let record = ControlRecord(writeID: writeID, at: Date(), change: change)
        let outcome =
            if let cluster {
                try await cluster.write(record)
            } else {
                try await apply(record, position: nil, reportEffects: true)
            }
        if let refusal = outcome.refusal { throw refusal }
        return outcome
    }

    /// Applies a record to this node's view, with what this node does about it.
    /// `reportEffects`: an effect's failure is the caller's to hear (else it is logged).
    private func apply(_ record: ControlRecord, position: LogPosition?, reportEffects: Bool) async throws -> ControlOutcome {
        let prepared = try await effects.prepare(record.change)
        let (outcome, isNew) = try await applier.apply(record, position: position)
        if isNew {
            do {
                try await effects.settle(record.change, outcome: outcome, prepared: prepared)
            } catch  where !reportEffects {
                cluster?.logger.error("applying \(record.change.type) \(record.writeID) on this node: \(error)")
            }
        }
        return outcome
    }

    // MARK: Following the cluster's log

    /// Brings this node's view up to the end of the log as it is now (a new cluster's log
    /// gets its first record, `cluster.init`, here). Throws, saying what to do, when the
    /// view belongs to another cluster or is ahead of the log.
    public func catchUp() async throws {
        guard let cluster else { return }
        try await cluster.open(store: store)
        let end = try await cluster.reader().end()
        while try cluster.reader().position < end {
            try await followOnce()
        }
    }

    /// Reads the log into this node's view from now until `stopFollowing` (after
    /// `catchUp`, before the first write: a write is answered once it is read back).
    public func startFollowing() {
        guard let cluster else { return }
        cluster.following.withLock { task in
            if task == nil { task = Task { await self.follow() } }
        }
    }

    /// Stops reading the log (the node is shutting down).
    func stopFollowing() async {
        guard let task = cluster?.following.withLock({ $0 }) else { return }
        task.cancel()
        await task.value
    }

    private func follow() async {
        guard let cluster else { return }
        while !Task.isCancelled {
            do {
                try await followOnce()
            } catch is CancellationError {
                return
            } catch {
                cluster.logger.error("reading the cluster's log: \(error); trying again in 1 s")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func followOnce() async throws {
        guard let cluster else { return }
        for message in try await cluster.reader().next(timeout: .milliseconds(200)) {
            try await applyFromLog(message, cluster: cluster)
        }
    }

    /// Applies one record read from the log. A record that does not read is skipped the
    /// same way by every node; one of a newer format stops this node (it must be upgraded
    /// before it can decide as the others do).
    private func applyFromLog(_ message: KafkaRecord, cluster: ClusterLog) async throws {
        let record: ControlRecord
        do {
            record = try ControlRecord(decoding: message.value ?? [])
        } catch {
            if error.newerFormat != nil { throw ClusterLogHalt("the record at offset \(message.offset) of \(cluster.log.topic): \(error)") }
            cluster.logger.error("skipping the record at offset \(message.offset) of \(cluster.log.topic): \(error)")
            if let id = cluster.clusterID { try await store.advance(to: LogPosition(clusterID: id, nextOffset: message.offset + 1)) }
            return
        }
        if case .clusterInit(let body) = record.change, cluster.clusterID == nil { cluster.adopt(clusterID: body.clusterId) }
        guard let id = cluster.clusterID else {
            throw ClusterLogHalt(
                "\(cluster.log.topic) does not begin with its cluster.init record (offset \(message.offset) is a \(record.change.type)): it is not a log this node can follow"
            )
        }
        // Until it applies, a store error is retried: skipping the record would diverge.
        while true {
            do {
                let outcome = try await apply(record, position: LogPosition(clusterID: id, nextOffset: message.offset + 1), reportEffects: false)
                cluster.resolve(record.writeID, .success(outcome))
                return
            } catch {
                cluster.logger.error("applying \(record.change.type) at offset \(message.offset): \(error); trying again in 1 s")
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// A node's link to its cluster's config log: the reader its view follows, the cluster's
/// id, and the callers waiting for their writes to come back.
final class ClusterLog: Sendable {
    let log: ConfigLog
    let logger: Logger
    /// The task reading the log into the view.
    let following = Mutex<Task<Void, Never>?>(nil)
    private struct State {
        var reader: ConfigLogReader?
        var clusterID: String?
        var waiting: [String: CheckedContinuation<ControlOutcome, any Error>] = [:]
    }
    private let state = Mutex(State())

    init(log: ConfigLog, logger: Logger) {
        self.log = log
        self.logger = logger
    }

    var clusterID: String? { state.withLock { $0.clusterID } }

    func adopt(clusterID: String) { state.withLock { $0.clusterID = clusterID } }

    func reader() throws -> ConfigLogReader {
        guard let reader = state.withLock({ $0.reader }) else { throw ClusterLogHalt("the cluster's log is not open") }
        return reader
    }

    /// Checks the log and opens a reader where the view stands (a new view: the beginning;
    /// an empty log gets a new cluster id first).
    func open(store: Store) async throws {
        try await log.check()
        let position = try await store.position()
        let probe = try await log.reader(from: 0)
        defer { Task { await probe.close() } }
        var end = try await probe.end()
        if end == 0 {
            guard position == nil else { throw viewAhead(position!, end: 0) }
            let id = RandomID.make(prefix: "cl_")
            let record = ControlRecord(writeID: ControlRecord.newWriteID(), at: Date(), change: .clusterInit(.init(clusterId: id)))
            try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
            end = try await probe.end()
            logger.info("\(log.topic) was empty: began cluster \(id)")
        }
        if let position {
            guard position.nextOffset <= end else { throw viewAhead(position, end: end) }
            adopt(clusterID: position.clusterID)
        }
        let reader = try await log.reader(from: position?.nextOffset ?? 0)
        state.withLock { $0.reader = reader }
    }

    private func viewAhead(_ position: LogPosition, end: Int64) -> ClusterLogHalt {
        ClusterLogHalt(
            "this node's view has applied \(log.topic) up to offset \(position.nextOffset) of cluster \(position.clusterID), but the log ends at \(end): "
                + "the log was emptied or replaced (a restarted embedded Kafka, a restore). Refusing to start rather than diverge; see docs/cluster.md, \"Restoring a cluster\"."
        )
    }

    /// Appends the record and waits until this node has applied it.
    func write(_ record: ControlRecord) async throws -> ControlOutcome {
        try await withCheckedThrowingContinuation { continuation in
            // Registered before the append, so the follower cannot apply it unseen.
            state.withLock { $0.waiting[record.writeID] = continuation }
            Task {
                do {
                    try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
                } catch {
                    resolve(record.writeID, .failure(APIError(.serviceUnavailable, .notReady, "the cluster's log did not take the write: \(error)")))
                    return
                }
                try? await Task.sleep(for: ControlWrites.readBackTimeout)
                resolve(
                    record.writeID,
                    .failure(
                        APIError(
                            .serviceUnavailable, .notReady,
                            "the write is in the cluster's log but this node has not read it back within \(ControlWrites.readBackTimeout); it will apply — read before writing again"
                        )))
            }
        }
    }

    /// Answers the caller waiting for `writeID`, if it is waiting here.
    func resolve(_ writeID: String, _ result: Result<ControlOutcome, any Error>) {
        state.withLock { $0.waiting.removeValue(forKey: writeID) }?.resume(with: result)
    }
}

/// The cluster's log cannot be followed: the node stops rather than diverge.
struct ClusterLogHalt: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
