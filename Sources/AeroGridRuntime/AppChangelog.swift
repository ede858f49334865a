public import AeroGridCore
public import AeroGridKafka
import AeroGridStore
public import Logging
public import Synchronization

/// Where an app of a cluster keeps its grids: its slot's partition of the changelog topic,
/// written through the node's one producer for it.
public struct ChangelogBinding: Sendable {
    /// The app's immutable id: the records' key (a re-created app has another).
    public var appID: String
    public var node: String
    public var topic: String
    public var slot: Int32
    public var producer: KafkaProducer
    public var kafka: KafkaConfiguration
    /// What the topic keeps of a partition, in bytes: a snapshot is due every half of it.
    public var retentionBytes: Int
    /// The bytes this node wrote to each slot's partition.
    public var ledger: SlotLedger
    /// Whether this node holds the app's slot now: asked just before a claim, so a node that
    /// has heard it lost the slot does not claim the app from its new owner.
    public var holdsSlot: @Sendable () -> Bool = { true }

    public init(
        appID: String, node: String, topic: String, slot: Int32, producer: KafkaProducer, kafka: KafkaConfiguration, retentionBytes: Int,
        ledger: SlotLedger
    ) {
        self.appID = appID
        self.node = node
        self.topic = topic
        self.slot = slot
        self.producer = producer
        self.kafka = kafka
        self.retentionBytes = retentionBytes
        self.ledger = ledger
    }
}

/// The bytes written to each slot's partition by this node: an app's snapshot is due once
/// its partition (shared with the slot's other apps) has advanced half the retention since
/// its last one, so the partition always holds a whole snapshot of every app in it. Each
/// write tells the slot's other apps, so a quiet app beside a busy one snapshots in time.
public final class SlotLedger: Sendable {
    private struct State {
        var written: [Int32: Int] = [:]
        var members: [Int32: [ObjectIdentifier: @Sendable () -> Void]] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    func add(_ bytes: Int, slot: Int32) -> Int {
        let (total, members) = state.withLock { state in
            state.written[slot, default: 0] &+= bytes
            return (state.written[slot]!, Array((state.members[slot] ?? [:]).values))
        }
        for advanced in members { advanced() }
        return total
    }

    func total(_ slot: Int32) -> Int { state.withLock { $0.written[slot] ?? 0 } }

    func join(_ slot: Int32, _ member: ObjectIdentifier, onAdvance: @escaping @Sendable () -> Void) {
        state.withLock { $0.members[slot, default: [:]][member] = onAdvance }
    }

    func leave(_ slot: Int32, _ member: ObjectIdentifier) {
        state.withLock { _ = $0.members[slot]?.removeValue(forKey: member) }
    }
}

/// One app's side of the changelog (docs/cluster.md "The changelog"): claims the app,
/// restores its grids up to the claim, then writes each applied batch as a record (in parts
/// when large), a snapshot when one is due, and a release when it gives the app up.
///
/// Writes are made under one lock with the grid change they record, so the records follow
/// the grids' own order and a snapshot never lands inside a batch.
public final class AppChangelog: Sendable {
    private struct Writer {
        var generation: Int64 = -1
        var nextSequence: UInt64 = 1
        /// The slot's bytes (`SlotLedger`) when the last snapshot was written.
        var snapshotMark = 0
        /// Why the records written are no longer whole (a delivery failed), if they are not.
        var broken: String?
        /// Another node owns the app: nothing more is written, and no restart claims it back.
        var fenced = false
        var restoredNothing = false
    }

    public let binding: ChangelogBinding
    private let logger: Logger
    private let writer = Mutex(Writer())
    /// Told once when a write fails: the app restarts from the changelog.
    private let brokenListener = Mutex<(@Sendable (String) -> Void)?>(nil)

    private let grids: GridState
    /// A snapshot check is on its way (told by another app's write in the slot).
    private let checkScheduled = Atomic<Bool>(false)

    public init(binding: ChangelogBinding, grids: GridState, logger: Logger) {
        self.binding = binding
        self.grids = grids
        self.logger = logger
        // Told of every write in the slot on this node; checked outside the writer's lock
        // (which may be another app's, held while it writes).
        binding.ledger.join(binding.slot, ObjectIdentifier(self)) { [weak self] in
            guard let self, self.checkScheduled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
            Task {
                self.checkScheduled.store(false, ordering: .relaxed)
                self.snapshotIfDue()
            }
        }
    }

    deinit {
        binding.ledger.leave(binding.slot, ObjectIdentifier(self))
    }

    /// Who hears, once, that a write failed (the runner: it restarts the app from the changelog).
    func onBroken(_ listener: @escaping @Sendable (String) -> Void) {
        brokenListener.withLock { $0 = listener }
    }

    private func tellBroken(_ reason: String) {
        brokenListener.withLock { $0 }?(reason)
    }

    /// Whether the last restore found nothing of the app that counts (a new app, or one
    /// whose records all went with the retention).
    public var restoredNothing: Bool { writer.withLock { $0.restoredNothing } }
    /// Why the next process must start from the changelog again (a write failed), if it must.
    public var needsRestore: Bool { writer.withLock { $0.broken != nil && !$0.fenced } }

    /// Claims the app and rebuilds its grids from the changelog up to the claim, in the
    /// claim's generation (its epoch), then writes a snapshot under it. Claim first: a
    /// record a fenced owner writes after the claim does not count, so nothing read here can
    /// be overtaken (docs/cluster.md "Fencing").
    public func claimAndRestore() async throws {
        guard !writer.withLock({ $0.fenced }) else { throw RuntimeError("another node owns the app now: this run claims it no more") }
        guard binding.holdsSlot() else { throw RuntimeError("the app's slot is no longer this node's: it is not claimed here") }
        let claim = try await binding.producer.send(
            topic: binding.topic, partition: binding.slot, key: Array(binding.appID.utf8),
            value: ChangelogRecord.encodeClaim(app: binding.appID, node: binding.node))
        let started = ContinuousClock.now
        let image = try await ChangelogReader(binding: binding, logger: logger).image(before: claim.offset)
        grids.restore(image.checkpoint, epoch: claim.offset, records: image.records)
        let mark = binding.ledger.total(binding.slot)
        writer.withLock { writer in
            writer = Writer(generation: claim.offset, nextSequence: 1, snapshotMark: mark, broken: nil, restoredNothing: !image.counted)
        }
        logger.info(
            "claimed the app and restored its grids from the changelog",
            metadata: [
                "aerogrid.generation": "\(claim.offset)", "aerogrid.slot": "\(binding.slot)",
                "aerogrid.rows": "\(image.checkpoint.grids.values.reduce(0) { $0 + $1.count })",
                "aerogrid.restore": "\(ContinuousClock.now - started)",
            ])
        try writeSnapshot()
    }

    /// Applies a batch to the grids and writes it, as one step; the apply's answer (over a
    /// quota) is returned, and nothing is written then.
    func applyAndRecord(_ batch: GridState.Batch, maxRows: Int, maxBytes: Int) -> String? {
        writer.withLock { writer in
            guard let over = grids.apply(batch, maxRows: maxRows, maxBytes: maxBytes) else {
                let touched = Set(batch.updates.map(\.grid))
                let end = ChangelogRecord.End(offsets: batch.offsets, versions: grids.versions(of: touched), records: batch.records)
                let updates = batch.updates.map { ChangelogRecord.Update(grid: $0.grid, key: $0.key, row: $0.row) }
                // A row no record can hold ends the app with `quota` (the changelog no longer
                // has this batch: the next run restores from what it has).
                if let tooLarge = write(&writer, snapshot: false, updates: updates, end: end) { return tooLarge }
                if due(writer) { write(&writer, snapshotOf: grids) }
                return nil
            }
            return over
        }
    }

    /// Empties the grids and writes that as a snapshot (the out-of-range policy's reset).
    func reset() throws {
        try writer.withLock { writer in
            grids.restore(GridCheckpoint(), epoch: writer.generation)
            write(&writer, snapshotOf: grids)
            if let broken = writer.broken { throw RuntimeError(broken) }
        }
    }

    /// Writes the grids' columns (after a hello), so replicas show them too.
    func declare(_ columns: [String: [String]]) {
        writer.withLock { writer in
            guard writer.broken == nil, !writer.fenced else { return }
            let stamp = ChangelogRecord.Stamp(app: binding.appID, generation: writer.generation, sequence: writer.nextSequence)
            writer.nextSequence += 1
            produce(&writer, ChangelogRecord.encodeDeclare(stamp, columns: columns))
        }
    }

    /// Writes a snapshot when the slot's partition has advanced half the retention since
    /// the last one (for an app that has been quiet while others in its slot wrote).
    func snapshotIfDue() {
        writer.withLock { writer in
            if due(writer) { write(&writer, snapshotOf: grids) }
        }
    }

    /// Writes nothing more: the app is another node's now, and this one's records would be
    /// fenced anyway (it does not restart over it either).
    func fence() {
        writer.withLock { $0.fenced = true }
    }

    /// Waits for everything written, then writes the release: the app is given up whole.
    /// Throws when a write did not reach the changelog (the next owner restores what did).
    public func release() async throws {
        // Nothing more is written after this (a later start claims the app again).
        defer { writer.withLock { $0.fenced = true } }
        // A fenced run writes nothing more, and waits for nothing.
        guard !writer.withLock({ $0.fenced }) else { return }
        try await binding.producer.flush()
        let stamp: ChangelogRecord.Stamp? = writer.withLock { writer in
            guard writer.broken == nil, !writer.fenced, writer.generation >= 0 else { return nil }
            defer { writer.nextSequence += 1 }
            return ChangelogRecord.Stamp(app: binding.appID, generation: writer.generation, sequence: writer.nextSequence)
        }
        guard let stamp else { return }
        _ = try await binding.producer.send(
            topic: binding.topic, partition: binding.slot, key: Array(binding.appID.utf8), value: ChangelogRecord.encodeRelease(stamp))
    }

    private func writeSnapshot() throws {
        try writer.withLock { writer in
            write(&writer, snapshotOf: grids)
            if let broken = writer.broken { throw RuntimeError(broken) }
        }
    }

    private func due(_ writer: Writer) -> Bool {
        writer.broken == nil && !writer.fenced && binding.ledger.total(binding.slot) - writer.snapshotMark > binding.retentionBytes / 2
    }

    private func write(_ writer: inout Writer, snapshotOf grids: GridState) {
        let (checkpoint, records) = grids.image()
        var updates: [ChangelogRecord.Update] = []
        for grid in checkpoint.grids.keys.sorted() {
            for (key, row) in checkpoint.grids[grid]!.sorted(by: { $0.key < $1.key }) {
                updates.append(ChangelogRecord.Update(grid: grid, key: key, row: row))
            }
        }
        let end = ChangelogRecord.End(offsets: checkpoint.offsets, versions: checkpoint.versions, records: records)
        writer.snapshotMark = binding.ledger.total(binding.slot)
        if let reason = write(&writer, snapshot: true, updates: updates, end: end) {
            // Told outside the lock: the runner ends the process and starts from the changelog.
            Task { [self] in tellBroken(reason) }
        }
    }

    /// Writes the changes; what does not fit in records is returned (and nothing is written).
    @discardableResult
    private func write(_ writer: inout Writer, snapshot: Bool, updates: [ChangelogRecord.Update], end: ChangelogRecord.End) -> String? {
        guard writer.broken == nil, !writer.fenced else { return nil }
        let parts: [[UInt8]]
        do {
            parts = try ChangelogRecord.encodeChanges(
                app: binding.appID, generation: writer.generation, firstSequence: writer.nextSequence, snapshot: snapshot, updates: updates,
                end: end)
        } catch {
            let reason = "the grids do not fit in the changelog: \(error)"
            writer.broken = reason
            return reason
        }
        writer.nextSequence += UInt64(parts.count)
        for part in parts { produce(&writer, part) }
        return nil
    }

    private func produce(_ writer: inout Writer, _ value: [UInt8]) {
        let bytes = value.count + binding.appID.utf8.count
        _ = binding.ledger.add(bytes, slot: binding.slot)
        let error = binding.producer.produce(
            topic: binding.topic, partition: binding.slot, key: Array(binding.appID.utf8), value: value
        ) { [self] result in
            if case .failure(let error) = result { deliveryFailed("a changelog record was not delivered: \(error)") }
        }
        if let error { breakWriter(&writer, "a changelog record could not be sent: \(error)") }
    }

    private func deliveryFailed(_ reason: String) {
        let first = writer.withLock { writer -> Bool in
            guard writer.broken == nil, !writer.fenced else { return false }
            writer.broken = reason
            return true
        }
        if first { tellBroken(reason) }
    }

    private func breakWriter(_ writer: inout Writer, _ reason: String) {
        guard writer.broken == nil, !writer.fenced else { return }
        writer.broken = reason
        // Told outside the lock: whoever hears it may call back in.
        Task { [self] in tellBroken(reason) }
    }
}

/// Reads one app's records from its slot's partition, up to an offset, through
/// `ChangelogFold`: what a restore and a new replica start from.
struct ChangelogReader {
    let binding: ChangelogBinding
    let logger: Logger

    /// The image up to `end`. Gives up after a minute.
    func image(before end: Int64) async throws -> ChangelogImage {
        let deadline = ContinuousClock.now + .seconds(60)
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: binding.kafka), logger: logger)
        defer { Task { await consumer.close() } }
        let partition = TopicPartition(binding.topic, binding.slot)
        try await consumer.assign([partition: .beginning])
        var fold = ChangelogFold(app: binding.appID)
        var image = ChangelogImage()
        let key = Array(binding.appID.utf8)
        var reached = false
        while !reached {
            guard ContinuousClock.now < deadline, !Task.isCancelled else {
                throw RuntimeError("reading the app's changelog did not reach its claim within a minute")
            }
            let batch = try await consumer.pollPromptly()
            for case .error(let error) in batch.events where !error.isRetriable {
                throw RuntimeError("cannot read the changelog: \(error)")
            }
            for record in batch.messages {
                if record.offset >= end {
                    reached = true
                    break
                }
                guard record.key == key, let value = record.value else { continue }
                let decoded: ChangelogRecord
                do {
                    decoded = try ChangelogRecord.decode(value)
                } catch let unreadable as ChangelogUnreadable {
                    // Every reader skips it alike, so the owner and the replicas still agree.
                    logger.error("skipping the changelog record at offset \(record.offset): \(unreadable)")
                    continue
                }
                let outcome = fold.read(decoded, at: record.offset)
                if case .gap(let expected, let got) = outcome {
                    logger.error(
                        "the changelog of this app has a gap: sequence \(got) where \(expected) was next, at offset \(record.offset); what follows in that generation is not applied"
                    )
                }
                image.apply(outcome, bytes: value.count + key.count)
            }
        }
        return image
    }
}
