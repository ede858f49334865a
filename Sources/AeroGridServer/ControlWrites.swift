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

    /// Writes through the cluster's log, which this node follows into its view.
    /// `snapshotEvery`: the bytes and records after which a snapshot goes into the log.
    public init(store: Store, log: ConfigLog, snapshotEvery: (bytes: Int, records: Int), nodeID: String, logger: Logger) {
        self.store = store
        effects = ControlEffects(store: store)
        applier = ControlApplier(store: store)
        cluster = ClusterLog(log: log, snapshotEvery: snapshotEvery, nodeID: nodeID, logger: logger)
    }

    /// The caller's key for the request being served (its `Idempotency-Key`, with its
    /// token's id): the write it makes gets an id derived from it, so a retry of the same
    /// request is answered with the first attempt's outcome instead of being applied again.
    @TaskLocal static var callerKey: String?

    /// Makes the write and returns what it came to; a refusal is thrown as the API error
    /// every node decided.
    @discardableResult
    func submit(_ change: ControlChange) async throws -> ControlOutcome {
        var writeID = ControlRecord.newWriteID()
        if let key = Self.callerKey {
            writeID = ControlRecord.writeID(callerKey: key, type: change.type)
            // Applied here before (the first attempt went through this node, or reached it).
            if let text = try await store.outcome(ofWrite: writeID) {
                var outcome = ControlOutcome(text: text)
                outcome.repeated = true
                if let refusal = outcome.refusal { throw refusal }
                return outcome
            }
        }
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

    /// Brings this node's view up to the end of the log as it is now. A new cluster's log
    /// gets its first record, `cluster.init`, here; a view the log no longer reaches back to
    /// is seeded from the log's latest snapshot. A view ahead of the log (or of another
    /// cluster, or with state of its own while the log is empty) is refused, saying what to
    /// do — unless `seedFromView`: then the view is published as a new cluster's snapshot.
    public func catchUp(seedFromView: Bool) async throws {
        guard let cluster else { return }
        try await cluster.open(store: store, seedFromView: seedFromView)
        var end = try await cluster.reader().end()
        while try cluster.reader().position < end {
            do {
                try await followOnce()
            } catch let gap as ClusterLogGap {
                // It fell behind the log's retention while catching up: from the latest snapshot.
                cluster.logger.warning("\(gap); seeding this node's view from the latest snapshot")
                try await cluster.open(store: store, seedFromView: false)
                end = try await cluster.reader().end()
            }
        }
        if cluster.snapshotDue() { cluster.snapshotSoon(store: store, at: try await store.position()?.nextOffset ?? 0) }
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
            } catch let gap as ClusterLogGap {
                // The log dropped records before this node read them: its view is seeded again
                // from the latest snapshot, as a node stopped for long is at its start.
                cluster.logger.warning("\(gap); seeding this node's view from the latest snapshot")
                do {
                    try await cluster.open(store: store, seedFromView: false)
                } catch {
                    cluster.logger.critical("this node stops following the cluster's log: \(error)")
                    return
                }
            } catch let halt as ClusterLogHalt {
                // Going on would make this view differ from the others': stop following. Writes
                // through this node time out; reads show the view as it was.
                cluster.logger.critical("this node stops following the cluster's log: \(halt)")
                return
            } catch {
                // From the last record applied: the rest of the batch was read but not applied.
                cluster.logger.error("reading the cluster's log: \(error); trying again in 1 s")
                try? await Task.sleep(for: .seconds(1))
                if let position = try? await store.position() {
                    try? await cluster.reader().seek(to: position.nextOffset)
                    cluster.expected = position.nextOffset
                }
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
    /// same way by every node; one of a newer format, or of another cluster, stops this node
    /// (it must not decide otherwise than the others).
    private func applyFromLog(_ message: KafkaRecord, cluster: ClusterLog) async throws {
        // The consumer starts over at the log's first record when the one it wanted is gone:
        // records this view never applied. Going on would diverge.
        if let expected = cluster.expected, message.offset > expected {
            throw ClusterLogGap(description: "\(cluster.log.topic) dropped offsets \(expected) to \(message.offset - 1) before this node read them")
        }
        cluster.expected = message.offset + 1
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
        if let other = record.clusterID, other != id {
            throw ClusterLogHalt(
                "the record at offset \(message.offset) of \(cluster.log.topic) belongs to cluster \(other), this node's view to cluster \(id): see docs/cluster.md, \"Restoring a cluster\""
            )
        }
        let position = LogPosition(clusterID: id, nextOffset: message.offset + 1)
        if case .snapshot = record.change {
            // This view has what the snapshot holds: it followed the records the snapshot sums up.
            cluster.sawSnapshot()
            try await store.advance(to: position)
            try await store.noteSnapshot(at: message.offset)
            return
        }
        // Until it applies, a store error is retried: skipping the record would diverge.
        while true {
            do {
                let outcome = try await apply(record, position: position, reportEffects: false)
                cluster.resolve(record.writeID, applied: outcome, attempt: record.attempt)
                cluster.exitIfFaultHookSaysSo(after: "apply", of: record)
                break
            } catch {
                cluster.logger.error("applying \(record.change.type) at offset \(message.offset): \(error); trying again in 1 s")
                try await Task.sleep(for: .seconds(1))
            }
        }
        if cluster.counted(bytes: message.value?.count ?? 0) { cluster.snapshotSoon(store: store, at: message.offset) }
    }
}

/// A node's link to its cluster's config log: the reader its view follows, the cluster's
/// id, the callers waiting for their writes to come back, and when to write a snapshot.
final class ClusterLog: Sendable {
    let log: ConfigLog
    let logger: Logger
    let snapshotEvery: (bytes: Int, records: Int)
    /// This node's id: which turn it takes at writing snapshots.
    let nodeID: String
    /// The task reading the log into the view.
    let following = Mutex<Task<Void, Never>?>(nil)
    private struct State {
        var reader: ConfigLogReader?
        var clusterID: String?
        /// By write id: each attempt at it on this node (a retry may come while the first waits).
        var waiting: [String: [(attempt: String, continuation: CheckedContinuation<ControlOutcome, any Error>)]] = [:]
        /// Since the last snapshot read (or this node's start).
        var bytesSinceSnapshot = 0
        var recordsSinceSnapshot = 0
        var snapshotting = false
        /// The offset of the next record this view must apply.
        var expected: Int64?
    }
    private let state = Mutex(State())

    init(log: ConfigLog, snapshotEvery: (bytes: Int, records: Int), nodeID: String, logger: Logger) {
        self.log = log
        self.nodeID = nodeID
        self.snapshotEvery = snapshotEvery
        self.logger = logger
    }

    var clusterID: String? { state.withLock { $0.clusterID } }

    var expected: Int64? {
        get { state.withLock { $0.expected } }
        set { state.withLock { $0.expected = newValue } }
    }

    func adopt(clusterID: String) { state.withLock { $0.clusterID = clusterID } }

    func reader() throws -> ConfigLogReader {
        guard let reader = state.withLock({ $0.reader }) else { throw ClusterLogHalt("the cluster's log is not open") }
        return reader
    }

    // MARK: Opening

    /// Checks the log and opens a reader where the view stands (see `ControlWrites.catchUp`).
    func open(store: Store, seedFromView: Bool) async throws {
        try await log.check()
        let position = try await store.position()
        let probe = try await log.reader(from: 0)
        defer { Task { await probe.close() } }
        let low = try await probe.start()
        let end = try await probe.end()
        let tenants = try await store.tenants()
        let hasOperator = try await store.hasOperatorToken()
        let hasState = !tenants.isEmpty || hasOperator
        // The cluster of the log's last record: the log's cluster now (a restore may have
        // begun a new one after an older one's records).
        let last = end > 0 ? try await clusterID(probe, at: end - 1) : nil
        let from: Int64
        if end == 0 {
            // An empty log: a new cluster's, unless this view has state the log must not lose.
            if position == nil && !hasState {
                from = try await begin()
            } else if seedFromView {
                from = try await republish(store: store)
            } else {
                throw refusal(position: position, low: low, end: end)
            }
        } else if let position, (low...end).contains(position.nextOffset) {
            // The usual start: the log still holds everything after what the view has, if it
            // is the log of the view's cluster.
            if last == nil || last == position.clusterID {
                adopt(clusterID: position.clusterID)
                from = position.nextOffset
            } else if seedFromView {
                from = try await republish(store: store)
            } else {
                throw ClusterLogHalt(
                    "\(log.topic) is the log of cluster \(last!), but this node's view follows cluster \(position.clusterID). Refusing to start rather than diverge; see docs/cluster.md, \"Restoring a cluster\"."
                )
            }
        } else if position == nil && hasState {
            // A node that kept its control plane to itself: it must not mix it with a cluster's.
            guard seedFromView else { throw refusal(position: nil, low: low, end: end) }
            from = try await republish(store: store)
        } else if position == nil && low == 0, try await clusterID(probe, at: 0) == last {
            // A new node, and the log still whole and one cluster's: from its first record.
            from = 0
        } else if position.map({ $0.nextOffset < low }) ?? true, let found = try await ControlSnapshots.latest(in: probe, low: low, end: end),
            position.map({ $0.clusterID == found.clusterID }) ?? true, last == nil || found.clusterID == last
        {
            // A new node, or one stopped for longer than the log keeps: from the latest snapshot.
            try await store.replaceControlTables(with: found.tables, position: LogPosition(clusterID: found.clusterID, nextOffset: found.covers))
            try await store.noteSnapshot(at: found.offset)
            adopt(clusterID: found.clusterID)
            from = found.covers
            logger.info("seeded this node's view from the snapshot of \(found.tables.count) rows covering \(log.topic) up to offset \(found.covers)")
        } else if seedFromView {
            from = try await republish(store: store)
        } else {
            throw refusal(position: position, low: low, end: end)
        }
        let reader = try await log.reader(from: from)
        let previous = state.withLock { state in
            defer {
                state.reader = reader
                state.expected = from
            }
            return state.reader
        }
        if let previous { Task { await previous.close() } }
        // No snapshot in the newer half of what the log keeps (this node's counts start at
        // zero at each start, so frequent restarts would otherwise never write one): one is due.
        let lastSnapshot = try await store.lastSnapshot()
        if end - low > 1_000, (lastSnapshot ?? -1) < low + (end - low) / 2 {
            state.withLock { $0.recordsSinceSnapshot = snapshotEvery.records + 1 }
        }
    }

    /// The cluster id of the record at `offset`, if it reads and has one.
    private func clusterID(_ probe: ConfigLogReader, at offset: Int64) async throws -> String? {
        try await probe.seek(to: offset)
        for _ in 0..<50 {
            if let message = try await probe.next(timeout: .milliseconds(100)).first(where: { $0.offset == offset }) {
                return (try? ControlRecord(decoding: message.value ?? []))?.clusterID
            }
        }
        return nil
    }

    /// A new cluster: its first record, with a random id; returns the offset to read from.
    private func begin() async throws -> Int64 {
        let id = RandomID.make(prefix: "cl_")
        let record = ControlRecord(
            writeID: ControlRecord.newWriteID(), clusterID: id, at: Date(), change: .clusterInit(.init(clusterId: id, peerSecret: TokenSecret.generate())))
        try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
        logger.info("\(log.topic) was empty: began cluster \(id)")
        return 0
    }

    /// Publishes this node's view as the snapshot of a new cluster: a `cluster.init` with a
    /// new id, then the snapshot; returns the offset to read from.
    private func republish(store: Store) async throws -> Int64 {
        let id = RandomID.make(prefix: "cl_")
        // The view's own secret stays (its nodes know it); a view that had none gets one.
        var tables = try await store.controlTables().tables
        let secret = tables.peerSecret ?? TokenSecret.generate()
        tables.peerSecret = secret
        let initial = ControlRecord(
            writeID: ControlRecord.newWriteID(), clusterID: id, at: Date(), change: .clusterInit(.init(clusterId: id, peerSecret: secret)))
        let offset = try await log.append(key: Array(initial.change.type.utf8), value: initial.encoded())
        for record in ControlSnapshots.records(of: tables, clusterID: id, covers: offset + 1) {
            try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
        }
        // The view is the snapshot, at the offset it covers (with the secret, if it had none).
        try await store.replaceControlTables(with: tables, position: LogPosition(clusterID: id, nextOffset: offset + 1))
        adopt(clusterID: id)
        logger.notice("published this node's view (\(tables.count) rows) as the snapshot of a new cluster \(id) in \(log.topic)")
        return offset + 1
    }

    private func refusal(position: LogPosition?, low: Int64, end: Int64) -> ClusterLogHalt {
        let restore =
            "Refusing to start rather than diverge; see docs/cluster.md, \"Restoring a cluster\" (aerogrid serve --seed-log publishes this node's view as a new cluster's)."
        guard let position else {
            if end == 0 {
                return ClusterLogHalt("\(log.topic) is empty but this node has a control plane of its own (tenants or tokens). \(restore)")
            }
            return ClusterLogHalt("\(log.topic) no longer has its beginning (it starts at offset \(low)) and holds no whole snapshot. \(restore)")
        }
        if position.nextOffset > end {
            return ClusterLogHalt(
                "this node's view has applied \(log.topic) up to offset \(position.nextOffset) of cluster \(position.clusterID), but the log ends at \(end): "
                    + "the log was emptied or replaced (a restarted embedded Kafka, a restore). \(restore)")
        }
        return ClusterLogHalt(
            "\(log.topic) is not the log of cluster \(position.clusterID), which this node's view follows, or no longer holds what follows offset \(position.nextOffset) and has no whole snapshot. \(restore)"
        )
    }

    // MARK: Writes

    /// Appends the record and waits until this node has applied it.
    func write(_ unstamped: ControlRecord) async throws -> ControlOutcome {
        var stamped = unstamped
        stamped.clusterID = clusterID
        // Tells this attempt's record from another attempt's at the same write (a retry).
        stamped.attempt = RandomID.make(prefix: "a_")
        let record = stamped
        let attempt = stamped.attempt ?? ""
        return try await withCheckedThrowingContinuation { continuation in
            // Registered before the append, so the follower cannot apply it unseen.
            state.withLock { $0.waiting[record.writeID, default: []].append((attempt, continuation)) }
            Task {
                do {
                    try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
                    exitIfFaultHookSaysSo(after: "append", of: record)
                } catch {
                    fail(
                        record.writeID, attempt: attempt,
                        APIError(.serviceUnavailable, .notReady, "the cluster's log did not take the write: \(error)"))
                    return
                }
                try? await Task.sleep(for: ControlWrites.readBackTimeout)
                fail(
                    record.writeID, attempt: attempt,
                    (APIError(
                        .serviceUnavailable, .notReady,
                        "the write is in the cluster's log but this node has not read it back within \(ControlWrites.readBackTimeout); it will apply — retry with the same Idempotency-Key, or read before writing again"
                    )))
            }
        }
    }

    /// Tests' fault hook: `AEROGRID_TEST_FAULT=exit-after-append:TYPE` ends the process at
    /// once after this node appended a write of TYPE, before it read it back (or
    /// `exit-after-apply:TYPE`, after applying one). Read once, at start; never set in production.
    private static let faultHook: (moment: String, type: Substring)? = {
        guard let value = ProcessInfo.processInfo.environment["AEROGRID_TEST_FAULT"], value.hasPrefix("exit-after-"),
            let colon = value.firstIndex(of: ":")
        else { return nil }
        return (String(value[value.index(value.startIndex, offsetBy: "exit-after-".count)..<colon]), value[value.index(after: colon)...])
    }()

    func exitIfFaultHookSaysSo(after moment: String, of record: ControlRecord) {
        guard let hook = Self.faultHook, hook.moment == moment, hook.type == record.change.type else { return }
        logger.critical("AEROGRID_TEST_FAULT: exiting after \(moment) of \(record.change.type) \(record.writeID)")
        _exit(75)
    }

    /// Answers every attempt waiting here for `writeID`, now applied (by `attempt`'s record):
    /// another attempt's answer says it was applied before.
    func resolve(_ writeID: String, applied outcome: ControlOutcome, attempt: String?) {
        for waiter in state.withLock({ $0.waiting.removeValue(forKey: writeID) }) ?? [] {
            var answer = outcome
            if waiter.attempt != attempt { answer.repeated = true }
            waiter.continuation.resume(returning: answer)
        }
    }

    /// Answers one attempt with an error, if it is still waiting.
    private func fail(_ writeID: String, attempt: String, _ error: APIError) {
        let waiter: CheckedContinuation<ControlOutcome, any Error>? = state.withLock { state in
            guard let index = state.waiting[writeID]?.firstIndex(where: { $0.attempt == attempt }) else { return nil }
            let found = state.waiting[writeID]?.remove(at: index).continuation
            if state.waiting[writeID]?.isEmpty == true { state.waiting[writeID] = nil }
            return found
        }
        waiter?.resume(throwing: error)
    }

    // MARK: Snapshots

    /// Counts an applied record; true when a snapshot is due.
    func counted(bytes: Int) -> Bool {
        state.withLock { state in
            state.bytesSinceSnapshot += bytes
            state.recordsSinceSnapshot += 1
            return !state.snapshotting && isDue(state)
        }
    }

    /// Whether the records since the last snapshot passed either threshold.
    private func isDue(_ state: State) -> Bool {
        state.bytesSinceSnapshot > snapshotEvery.bytes || state.recordsSinceSnapshot > snapshotEvery.records
    }

    /// Whether a snapshot is due and none is being written.
    func snapshotDue() -> Bool {
        state.withLock { state in
            !state.snapshotting && isDue(state)
        }
    }

    func sawSnapshot() {
        state.withLock { state in
            state.bytesSinceSnapshot = 0
            state.recordsSinceSnapshot = 0
        }
    }

    /// How long each node after the chosen one waits for a snapshot before it writes one.
    static let snapshotTurn: Duration = .seconds(10)

    /// Writes a snapshot, unless another node's arrives first. Every node sees the same
    /// records, so one is chosen from the nodes the view knows, by the offset that made it
    /// due: it writes at once, the next in turn after `snapshotTurn` if none came (the chosen
    /// one may be gone), and so on.
    func snapshotSoon(store: Store, at offset: Int64) {
        state.withLock { $0.snapshotting = true }
        Task {
            defer { state.withLock { $0.snapshotting = false } }
            let nodes = ((try? await store.clusterNodes()) ?? []).map(\.id)
            let turn: Int
            if let mine = nodes.firstIndex(of: nodeID) {
                let first = Int(offset.magnitude % UInt64(nodes.count))
                turn = (mine - first + nodes.count) % nodes.count
            } else {
                turn = nodes.count
            }
            try? await Task.sleep(for: Self.snapshotTurn * turn)
            let due = state.withLock { isDue($0) }
            guard due else { return }
            do {
                // The tables and the position they are at, read together.
                let (tables, position) = try await store.controlTables()
                guard let position else { return }
                for record in ControlSnapshots.records(of: tables, clusterID: position.clusterID, covers: position.nextOffset) {
                    try await log.append(key: Array(record.change.type.utf8), value: record.encoded())
                }
                sawSnapshot()
                logger.info("wrote a snapshot of \(tables.count) rows covering \(log.topic) up to offset \(position.nextOffset)")
            } catch {
                logger.error("could not write a snapshot to \(log.topic): \(error); the next record tries again")
            }
        }
    }
}

/// The log dropped records this node had not read (it fell behind the retention).
struct ClusterLogGap: Error, CustomStringConvertible {
    let description: String
}

/// The cluster's log cannot be followed: the node stops rather than diverge.
struct ClusterLogHalt: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
