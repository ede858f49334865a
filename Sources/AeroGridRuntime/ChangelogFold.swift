public import AeroGridCore
public import AeroGridStore

/// Decides which of one app's changelog records count, in partition order (docs/cluster.md
/// "Fencing"): a claim starts a generation (its offset); a record counts only if it carries
/// the generation of the latest claim before it and the next sequence number. (A claim
/// gone with the topic's retention is stood in for by its generation's next snapshot.) An older
/// generation's record is a fenced writer's; a sequence number seen before is a duplicate;
/// one past the next is a gap, which is corruption and is reported. A batch or snapshot in
/// parts counts when its last part does.
///
/// The owner's restore and every replica read the changelog through this one type, so
/// they agree on the grids record for record.
public struct ChangelogFold: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// A new generation: the claim's offset.
        case claimed(Int64)
        /// A whole batch or snapshot, to apply.
        case changes(ChangelogRecord.Changes, updates: [ChangelogRecord.Update])
        case declared([String: [String]])
        case released
        /// A part of changes still coming.
        case pending
        /// A record of an older generation, or one already counted.
        case fenced, duplicate
        /// A sequence number past the next: the generation's records are not whole.
        case gap(expected: UInt64, got: UInt64)
    }

    public let app: String
    /// The generation now: the offset of the latest claim read (nil before any).
    public private(set) var generation: Int64?
    private var nextSequence: UInt64 = 1
    /// The parts of the changes in progress.
    private var staged: [ChangelogRecord.Update] = []
    private var stagedParts = 0
    /// Set by a gap: nothing more of this generation counts.
    public private(set) var broken = false

    public init(app: String) {
        self.app = app
    }

    public mutating func read(_ record: ChangelogRecord, at offset: Int64) -> Outcome {
        guard record.app == app else { return .fenced }
        guard let stamp = record.stamp else {
            generation = offset
            nextSequence = 1
            staged = []
            stagedParts = 0
            broken = false
            return .claimed(offset)
        }
        if generation.map({ stamp.generation > $0 }) ?? true {
            // A generation whose claim this reader never saw: the topic's retention dropped
            // it. It starts where one of its snapshots does (the owner writes one every half
            // the retention, so one is always kept); until then nothing of it counts. A
            // lower generation's records after that are a fenced owner's, as ever.
            guard case .changes(let changes) = record, changes.snapshot, changes.part == 0 else { return .fenced }
            generation = stamp.generation
            nextSequence = stamp.sequence
            staged = []
            stagedParts = 0
            broken = false
        }
        guard stamp.generation == generation, !broken else { return .fenced }
        if stamp.sequence < nextSequence { return .duplicate }
        if stamp.sequence > nextSequence {
            broken = true
            return .gap(expected: nextSequence, got: stamp.sequence)
        }
        nextSequence += 1
        switch record {
        case .claim: return .fenced  // handled above
        case .release: return .released
        case .declare(let declare): return .declared(declare.columns)
        case .changes(let changes):
            // Parts come in order under consecutive sequence numbers; a part that does not
            // continue the staged ones is a gap in all but name.
            guard changes.part == stagedParts else {
                broken = true
                return .gap(expected: UInt64(stagedParts), got: UInt64(changes.part))
            }
            staged += changes.updates
            stagedParts += 1
            guard changes.end != nil else { return .pending }
            defer {
                staged = []
                stagedParts = 0
            }
            return .changes(changes, updates: staged)
        }
    }
}

/// An app's grids as its changelog rebuilds them: what a restore ends with.
public struct ChangelogImage: Sendable {
    public var checkpoint = GridCheckpoint()
    public var records = 0
    /// The partition's bytes since the last snapshot began (what the next snapshot is due on).
    public var bytesSinceSnapshot = 0
    /// Whether any batch or snapshot counted: false for a new app, and for one whose
    /// records all went with the topic's retention.
    public var counted = false

    public init() {}

    public mutating func apply(_ outcome: ChangelogFold.Outcome, bytes: Int) {
        bytesSinceSnapshot += bytes
        guard case .changes(let changes, let updates) = outcome, let end = changes.end else { return }
        counted = true
        if changes.snapshot {
            checkpoint.grids = [:]
            checkpoint.versions = [:]
            checkpoint.offsets = [:]
            bytesSinceSnapshot = 0
            records = end.records
        } else {
            records += end.records
        }
        for update in updates {
            if let row = update.row {
                checkpoint.grids[update.grid, default: [:]][update.key] = row
            } else {
                checkpoint.grids[update.grid]?[update.key] = nil
            }
        }
        checkpoint.versions.merge(end.versions) { _, new in new }
        checkpoint.offsets.merge(end.offsets) { _, new in new }
    }
}
