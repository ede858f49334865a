import AeroGridCore
import AeroGridIPC
import AeroGridStore
import Logging
import Synchronization

/// The protocol state of one app process: its hello, the batches sent and not yet
/// confirmed, and the frames the app sent for the batch it is working on. Frames arrive on
/// the connection's reader thread; batches are registered by the runner's pump.
final class AppSession: Sendable {
    /// A records frame sent and not yet confirmed.
    struct InFlight: Sendable {
        let id: UInt64
        let records: UInt32
        /// The next offset of each partition once this batch is applied.
        let offsets: [SourcePartition: Int64]
        /// The frame as sent: the records, for the dead-letter topic if the app fails on some.
        let frame: [UInt8]
        /// When it was registered (just before it was sent): its latency ends when it is applied.
        var sent = ContinuousClock.now
    }

    private struct State {
        var hello: Hello?
        var helloWaiter: CheckedContinuation<Hello?, Never>?
        var ended = false
        var inFlight: [InFlight] = []
        var updates: [(grid: String, key: GridKey, row: GridRow?)] = []
        var produced: [ProduceRequest] = []
        var errors: [RecordError] = []
        var columns: [String: Set<String>] = [:]
        var produces: Set<String> = []
        var streams = 1
        /// What the frames held for the oldest batch cost (see `AppLimits.pendingBytes`).
        var pendingBytes = 0
    }

    private let state = Mutex(State())
    let credits = AsyncCredits(limit: 2)
    private let grids: GridState
    /// In a cluster: each batch is applied and written to the changelog as one step.
    private let changelog: AppChangelog?
    private let log: AppLog
    private let limits: AppLimits
    private let onQuotaExceeded: @Sendable (String) -> Void
    /// Records the app failed on, and records it asked to produce, once their batch is done.
    private let onRecordErrors: @Sendable ([RecordError], [UInt8]) -> Void
    private let onProduce: @Sendable ([ProduceRequest]) -> Void
    /// Each batch's time from sent to applied.
    private let onBatchApplied: @Sendable (Duration) -> Void

    init(
        grids: GridState, log: AppLog, limits: AppLimits, changelog: AppChangelog? = nil, onQuotaExceeded: @escaping @Sendable (String) -> Void,
        onRecordErrors: @escaping @Sendable ([RecordError], [UInt8]) -> Void,
        onProduce: @escaping @Sendable ([ProduceRequest]) -> Void,
        onBatchApplied: @escaping @Sendable (Duration) -> Void = { _ in }
    ) {
        self.onBatchApplied = onBatchApplied
        self.grids = grids
        self.changelog = changelog
        self.log = log
        self.limits = limits
        self.onQuotaExceeded = onQuotaExceeded
        self.onRecordErrors = onRecordErrors
        self.onProduce = onProduce
    }

    /// The app's hello, or nil when the process ended (or `timeout` passed) first.
    func hello(timeout: Duration) async -> Hello? {
        let timer = Task { [self] in
            try await Task.sleep(for: timeout)
            resolveHello(nil)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let ready: Hello?? = state.withLock { state in
                if state.hello != nil || state.ended { return .some(state.hello) }
                state.helloWaiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func resolveHello(_ hello: Hello?) {
        let waiter = state.withLock { state in
            defer { state.helloWaiter = nil }
            return state.helloWaiter
        }
        waiter?.resume(returning: hello)
    }

    /// What the supervisor accepted from hello: grid columns and produce topics.
    func accept(_ hello: Hello) {
        state.withLock { state in
            state.columns = Dictionary(hello.grids.map { ($0.name, Set($0.columns)) }, uniquingKeysWith: { first, _ in first })
            state.produces = Set(hello.produces)
            state.streams = max(1, hello.streams.count)
        }
    }

    func registerBatch(_ batch: InFlight) {
        state.withLock { $0.inFlight.append(batch) }
    }

    /// Takes back a batch that could not be sent.
    func unregisterBatch(_ id: UInt64) {
        state.withLock { $0.inFlight.removeAll { $0.id == id } }
    }

    var inFlightCount: Int { state.withLock { $0.inFlight.count } }
    var hasEnded: Bool { state.withLock { $0.ended } }

    /// The process is gone: nothing more will be confirmed. Unconfirmed batches are
    /// dropped (their records go to the next process again, from the applied offsets).
    func end() {
        state.withLock { state in
            state.ended = true
            state.inFlight.removeAll()
            state.updates.removeAll()
            state.produced.removeAll()
            state.errors.removeAll()
            state.pendingBytes = 0
        }
        resolveHello(nil)
        credits.finish()
    }

    /// One frame from the app, on the reader thread; `bytes` is the size of its payload.
    func handle(_ frame: AppFrame, bytes: Int = 0) throws(ProtocolViolation) {
        switch frame {
        case .hello(let hello):
            let first = state.withLock { state -> Bool in
                guard state.hello == nil else { return false }
                state.hello = hello
                return true
            }
            guard first else { throw ProtocolViolation("a second hello") }
            try check(hello)
            resolveHello(hello)
        case .gridUpdate(let update):
            try state.withLock { state throws(ProtocolViolation) in
                // At most one update per key per batch: no more than the quota's rows plus one per
                // record and stream (deletes and new keys) — beyond that, the quota check at
                // batch-done could never be reached without holding unbounded memory.
                try Self.checkPending(
                    state, adding: state.updates.count,
                    limit: limits.gridRows + Int(state.inFlight.first?.records ?? 0) * state.streams, what: "grid-updates")
                guard let columns = state.columns[update.grid] else {
                    throw ProtocolViolation("a grid-update for undeclared grid '\(update.grid.cut(toBytes: 64))'")
                }
                if case .string(let key) = update.key, key.utf8.count > limits.keyBytes {
                    throw ProtocolViolation("grid '\(update.grid)' got a key of \(key.utf8.count) bytes; a key is at most \(limits.keyBytes)")
                }
                if let row = update.row, let unknown = row.keys.first(where: { !columns.contains($0) }) {
                    throw ProtocolViolation("grid '\(update.grid)' has no column '\(unknown.cut(toBytes: 64))'")
                }
                try hold(&state, bytes + 128 + 64 * (update.row?.count ?? 0))
                state.updates.append((update.grid, update.key, update.row))
            }
        case .produce(let request):
            try state.withLock { state throws(ProtocolViolation) in
                // Up to 16 records produced per record read: a fan-out, not a flood.
                try Self.checkPending(state, adding: state.produced.count, limit: 16 * Int(state.inFlight.first?.records ?? 0), what: "produce frames")
                guard state.produces.contains(request.topic) else {
                    throw ProtocolViolation("a produce to '\(request.topic.cut(toBytes: 255))', which hello did not declare")
                }
                try hold(&state, bytes + 128 + 64 * request.headers.count)
                state.produced.append(request)
            }
        case .error(let error):
            try state.withLock { state throws(ProtocolViolation) in
                // A record can fail in each stream that reads it.
                try Self.checkPending(state, adding: state.errors.count, limit: Int(state.inFlight.first?.records ?? 0) * state.streams, what: "error frames")
                try hold(&state, bytes + 128)
                state.errors.append(error)
            }
        case .batchDone(let done):
            try confirm(done)
        case .log(let message):
            log.append(message.message, source: "app", level: Logger.Level(appLevel: message.level))
        case .heartbeat, .unknown:
            break
        }
    }

    /// Counts what a frame for the oldest batch costs the supervisor until its batch-done;
    /// past `AppLimits.pendingBytes` the app is stopped with the numbers (`quota`).
    private func hold(_ state: inout State, _ cost: Int) throws(ProtocolViolation) {
        let total = state.pendingBytes + cost
        guard total <= limits.pendingBytes else {
            let detail =
                "batch \(state.inFlight.first?.id ?? 0): the app sent \(total) bytes of grid-updates, errors and produce requests "
                + "before its batch-done (payloads, plus 128 bytes a frame and 64 a cell); the limit is \(limits.pendingBytes)"
            onQuotaExceeded(detail)
            throw ProtocolViolation("over its quota: \(detail)")
        }
        state.pendingBytes = total
    }

    /// What hello declares, within the app's limits: names as docs/ipc.md gives them, and
    /// counts and sizes the supervisor holds for as long as the app runs.
    private func check(_ hello: Hello) throws(ProtocolViolation) {
        guard hello.grids.count <= limits.grids else {
            throw ProtocolViolation("hello declares \(hello.grids.count) grids; an app may have \(limits.grids)")
        }
        var names = Set<String>()
        for grid in hello.grids {
            if let problem = ResourceName.problem(with: grid.name) {
                throw ProtocolViolation("grid name '\(grid.name.cut(toBytes: 64))' is not valid: \(problem)")
            }
            guard names.insert(grid.name).inserted else { throw ProtocolViolation("hello declares grid '\(grid.name)' twice") }
            guard !grid.columns.isEmpty, grid.columns.count <= limits.columnsPerGrid else {
                throw ProtocolViolation("grid '\(grid.name)' declares \(grid.columns.count) columns; a grid has 1 to \(limits.columnsPerGrid)")
            }
            for column in grid.columns where column.isEmpty || column.utf8.count > limits.columnNameBytes {
                throw ProtocolViolation("grid '\(grid.name)' has a column name of \(column.utf8.count) bytes; names are 1 to \(limits.columnNameBytes) bytes")
            }
            guard Set(grid.columns).count == grid.columns.count else {
                throw ProtocolViolation("grid '\(grid.name)' declares a column twice")
            }
        }
        for (what, count) in [("topics", hello.topics.count), ("streams", hello.streams.count), ("produce topics", hello.produces.count)]
        where count > limits.declaredTopics {
            throw ProtocolViolation("hello declares \(count) \(what); an app may declare \(limits.declaredTopics)")
        }
        let topics = hello.topics.map(\.name) + hello.streams.map(\.topic) + hello.produces
        if let long = topics.first(where: { $0.isEmpty || $0.utf8.count > 249 }) {
            throw ProtocolViolation("topic name '\(long.cut(toBytes: 64))…' is not 1 to 249 bytes long")
        }
    }

    /// The oldest batch not yet confirmed, and how long ago it was sent.
    var oldestUnconfirmed: (id: UInt64, age: Duration)? {
        state.withLock { state in state.inFlight.first.map { ($0.id, ContinuousClock.now - $0.sent) } }
    }

    /// A batch's frames come only while it is outstanding, and no more of them than it can
    /// have caused: what an app sends before batch-done is held in memory until then.
    private static func checkPending(_ state: State, adding count: Int, limit: Int, what: String) throws(ProtocolViolation) {
        guard !state.inFlight.isEmpty else { throw ProtocolViolation("\(what) with no batch outstanding") }
        guard count < max(limit, 1) else {
            throw ProtocolViolation("more \(what) than batch \(state.inFlight[0].id) can have caused (\(limit))")
        }
    }

    /// Applies the oldest unconfirmed batch, with everything the app sent for it.
    private func confirm(_ done: BatchDone) throws(ProtocolViolation) {
        // Applied under the session's lock: once `end()` has returned, no batch of this
        // process changes the grids, so the next process starts from settled offsets.
        let (errors, produced, frame, over, sent) = try state.withLock { state throws(ProtocolViolation) in
            guard !state.ended else { throw ProtocolViolation("batch-done after the process ended") }
            guard let oldest = state.inFlight.first else {
                throw ProtocolViolation("batch-done \(done.batchID) with no batch outstanding")
            }
            guard done.batchID == oldest.id else {
                throw ProtocolViolation("batch-done \(done.batchID), but the oldest batch outstanding is \(oldest.id)")
            }
            guard done.records == oldest.records, done.updates == state.updates.count,
                done.errors == state.errors.count, done.produced == state.produced.count
            else {
                throw ProtocolViolation(
                    "batch-done \(done.batchID) counts \(done.records) records, \(done.updates) updates, \(done.errors) errors, \(done.produced) produced; "
                        + "the supervisor sent \(oldest.records) records and received \(state.updates.count), \(state.errors.count), \(state.produced.count)")
            }
            var batch = GridState.Batch()
            batch.updates = state.updates
            batch.offsets = oldest.offsets
            batch.records = Int(oldest.records)
            state.inFlight.removeFirst()
            defer {
                state.updates.removeAll(keepingCapacity: true)
                state.errors.removeAll()
                state.produced.removeAll()
                state.pendingBytes = 0
            }
            let over =
                if let changelog {
                    changelog.applyAndRecord(batch, maxRows: limits.gridRows, maxBytes: limits.gridBytes)
                } else {
                    grids.apply(batch, maxRows: limits.gridRows, maxBytes: limits.gridBytes)
                }
            return (state.errors, state.produced, state.errors.isEmpty ? [] : oldest.frame, over, oldest.sent)
        }
        if let over {
            // Not applied: the app stops with the numbers, and reading its frames ends here.
            onQuotaExceeded(over)
            throw ProtocolViolation("over its grid quota: \(over)")
        }
        onBatchApplied(ContinuousClock.now - sent)
        if !errors.isEmpty { onRecordErrors(errors, frame) }
        if !produced.isEmpty { onProduce(produced) }
        credits.release()
    }
}

extension Logger.Level {
    /// The levels an app's log frames use.
    init(appLevel: String) {
        switch appLevel {
        case "debug": self = .debug
        case "warning": self = .warning
        case "error": self = .error
        default: self = .info
        }
    }
}
