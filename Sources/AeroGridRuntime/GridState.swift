public import AeroGridCore
public import AeroGridStore
import Synchronization

/// One app's grids as the supervisor holds them: the authoritative state. A batch's
/// changes are applied here only when the app confirms the batch (`batch-done`), together
/// with the source offsets after it, so rows and offsets always describe the same point in
/// the input. Checkpoints copy that pair to the store in one transaction.
public final class GridState: Sendable {
    public struct Grid: Sendable, Equatable {
        public var columns: [String]
        public var rows: [GridKey: GridRow]
        /// Bumped by every applied batch that changed the grid.
        public var version: UInt64
    }

    /// A batch's effect, applied at once.
    public struct Batch: Sendable {
        public var updates: [(grid: String, key: GridKey, row: GridRow?)] = []
        /// The next offset of each source partition after this batch.
        public var offsets: [SourcePartition: Int64] = [:]
        public var records: Int = 0
        /// The versions the changed grids have after it, when known (a replica applying its
        /// owner's batch): set as given instead of counted up.
        public var versions: [String: UInt64]?

        public init() {}
    }

    /// Changed rows of one grid, for clients watching it.
    public struct Change: Sendable {
        public let grid: String
        public let version: UInt64
        public let epoch: Int64
        public let rows: [(GridKey, GridRow?)]
        /// Per row, in the same order: the columns whose value changed, or nil when the
        /// whole row is new or deleted.
        public let changedColumns: [[String]?]
    }

    private struct State {
        var grids: [String: Grid] = [:]
        var offsets: [SourcePartition: Int64] = [:]
        var epoch: Int64 = 0
        var dirtyRows: [String: [GridKey: GridRow?]] = [:]
        var dirtyVersions: Set<String> = []
        var dirtyOffsets: Set<SourcePartition> = []
        var appliedRecords = 0
        /// Rows over all grids and their approximate size, for quotas.
        var totalRows = 0
        var totalBytes = 0
        var listeners: [Int: AsyncStream<Change>.Continuation] = [:]
        var nextListener = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Starts from a checkpoint, in a new epoch (with the records applied up to it, when known).
    public func restore(_ checkpoint: GridCheckpoint, epoch: Int64, records: Int? = nil) {
        state.withLock { state in
            if let records { state.appliedRecords = records }
            state.grids = checkpoint.grids.mapValues { Grid(columns: [], rows: $0, version: 0) }
            for (grid, version) in checkpoint.versions {
                state.grids[grid, default: Grid(columns: [], rows: [:], version: 0)].version = version
            }
            state.offsets = checkpoint.offsets
            state.epoch = epoch
            state.totalRows = checkpoint.grids.values.reduce(0) { $0 + $1.count }
            state.totalBytes = checkpoint.grids.values.reduce(0) { total, rows in
                total + rows.reduce(0) { $0 + Self.size($1.key, $1.value) }
            }
            state.dirtyRows = [:]
            state.dirtyVersions = []
            state.dirtyOffsets = []
        }
    }

    /// Makes sure the declared grids exist with their columns (an app's hello). Grids an
    /// earlier process declared and this one does not are dropped when they hold no rows:
    /// otherwise each restart with other names would add to what the supervisor keeps (grids
    /// with rows stay, within the row quota, as the checkpoint has them).
    public func declare(_ grids: [(name: String, columns: [String])]) {
        state.withLock { state in
            let declared = Set(grids.map(\.name))
            for (name, grid) in state.grids where !declared.contains(name) && grid.rows.isEmpty {
                state.grids[name] = nil
            }
            for grid in grids {
                state.grids[grid.name, default: Grid(columns: grid.columns, rows: [:], version: 0)].columns = grid.columns
            }
        }
    }

    /// Applies a batch, unless it would take the grids past `maxRows` rows or `maxBytes`
    /// bytes in all: then nothing changes and the answer says by how much.
    @discardableResult
    public func apply(_ batch: Batch, maxRows: Int = .max, maxBytes: Int = .max) -> String? {
        let result: (changes: [Change], over: String?) = state.withLock { state in
            // The quota is checked on the batch's net effect before anything is applied.
            var rows = state.totalRows
            var bytes = state.totalBytes
            var seen: [String: [GridKey: GridRow?]] = [:]
            for update in batch.updates {
                let previous = seen[update.grid]?[update.key] ?? state.grids[update.grid]?.rows[update.key]
                if let previous {
                    rows -= 1
                    bytes -= Self.size(update.key, previous)
                }
                if let row = update.row {
                    rows += 1
                    bytes += Self.size(update.key, row)
                }
                seen[update.grid, default: [:]][update.key] = .some(update.row)
            }
            // A batch that shrinks grids already over a lowered quota still applies: only
            // growth past the quota is refused.
            if rows > maxRows && rows > state.totalRows {
                return ([], "the grids would hold \(rows) rows; the quota is \(maxRows)")
            }
            if bytes > maxBytes && bytes > state.totalBytes {
                return ([], "the grids would hold about \(bytes) bytes; the quota is \(maxBytes)")
            }
            state.totalRows = rows
            state.totalBytes = bytes

            var touched: [String: [(GridKey, GridRow?)]] = [:]
            var changedColumns: [String: [[String]?]] = [:]
            let watched = !state.listeners.isEmpty
            for update in batch.updates {
                if watched {
                    let previous = state.grids[update.grid]?.rows[update.key]
                    changedColumns[update.grid, default: []].append(Self.changedColumns(from: previous, to: update.row))
                }
                if let row = update.row {
                    state.grids[update.grid, default: Grid(columns: [], rows: [:], version: 0)].rows[update.key] = row
                } else {
                    state.grids[update.grid]?.rows[update.key] = nil
                }
                state.dirtyRows[update.grid, default: [:]][update.key] = update.row
                touched[update.grid, default: []].append((update.key, update.row))
            }
            for (grid, _) in touched {
                if let version = batch.versions?[grid] {
                    state.grids[grid]?.version = version
                } else {
                    state.grids[grid]?.version += 1
                }
                state.dirtyVersions.insert(grid)
            }
            for (source, offset) in batch.offsets {
                state.offsets[source] = offset
                state.dirtyOffsets.insert(source)
            }
            state.appliedRecords += batch.records
            guard !state.listeners.isEmpty else { return ([], nil) }
            return (
                touched.map { grid, rows in
                    Change(
                        grid: grid, version: state.grids[grid]?.version ?? 0, epoch: state.epoch, rows: rows,
                        changedColumns: changedColumns[grid] ?? [])
                }, nil
            )
        }
        if !result.changes.isEmpty {
            let listeners = state.withLock { Array($0.listeners.values) }
            for listener in listeners { for change in result.changes { listener.yield(change) } }
        }
        return result.over
    }

    /// The columns that differ between two versions of a row; nil when the row is new or gone.
    static func changedColumns(from old: GridRow?, to new: GridRow?) -> [String]? {
        guard let old, let new else { return nil }
        var changed: [String] = []
        for (column, value) in new where old[column] != value { changed.append(column) }
        for column in old.keys where new[column] == nil { changed.append(column) }
        return changed
    }

    /// The current rows of `keys` in `grid` (nil for a key with no row), with the grid's
    /// version and epoch, read together.
    public func rows(_ grid: String, keys: some Sequence<GridKey>) -> (rows: [(GridKey, GridRow?)], version: UInt64, epoch: Int64) {
        state.withLock { state in
            let stored = state.grids[grid]
            return (keys.map { ($0, stored?.rows[$0]) }, stored?.version ?? 0, state.epoch)
        }
    }

    /// A row's size as the messages and the REST answer write it: its key, column names and
    /// values in JSON, escapes included (a grid of control characters is six times its
    /// text), plus the punctuation. The grid quota is counted in these bytes, so it bounds
    /// what one snapshot of the grid can take.
    static func size(_ key: GridKey, _ row: GridRow) -> Int {
        row.reduce(length(key) + 16) { total, cell in total + JSONWriter.length(of: cell.key) + length(cell.value) + 8 }
    }

    private static func length(_ key: GridKey) -> Int {
        switch key {
        case .string(let text): JSONWriter.length(of: text)
        case .int(let number): String(number).utf8.count
        }
    }

    private static func length(_ value: GridValue) -> Int {
        if case .string(let text) = value { return JSONWriter.length(of: text) }
        return value.description.utf8.count
    }

    /// Rows over all grids and their approximate size in bytes.
    public var footprint: (rows: Int, bytes: Int) { state.withLock { ($0.totalRows, $0.totalBytes) } }

    /// Everything changed since the last call, consistent with the offsets: for a
    /// checkpoint. If writing it fails, hand it back with `reinstate`.
    public func takeCheckpointDelta() -> CheckpointDelta {
        state.withLock { state in
            var delta = CheckpointDelta()
            delta.rows = state.dirtyRows
            for grid in state.dirtyVersions { delta.versions[grid] = state.grids[grid]?.version ?? 0 }
            for source in state.dirtyOffsets { delta.offsets[source] = state.offsets[source] }
            state.dirtyRows = [:]
            state.dirtyVersions = []
            state.dirtyOffsets = []
            return delta
        }
    }

    /// Puts back a delta that could not be written; newer changes win.
    public func reinstate(_ delta: CheckpointDelta) {
        state.withLock { state in
            for (grid, rows) in delta.rows {
                for (key, row) in rows where state.dirtyRows[grid]?[key] == nil {
                    state.dirtyRows[grid, default: [:]][key] = .some(row)
                }
            }
            state.dirtyVersions.formUnion(delta.versions.keys)
            state.dirtyOffsets.formUnion(delta.offsets.keys)
        }
    }

    /// The versions of these grids now.
    public func versions(of grids: Set<String>) -> [String: UInt64] {
        state.withLock { state in
            var versions: [String: UInt64] = [:]
            for grid in grids { versions[grid] = state.grids[grid]?.version ?? 0 }
            return versions
        }
    }

    /// Every row, version and offset, with the records applied, read together: what a
    /// changelog snapshot holds.
    public func image() -> (checkpoint: GridCheckpoint, records: Int) {
        state.withLock { state in
            var checkpoint = GridCheckpoint()
            for (name, grid) in state.grids {
                if !grid.rows.isEmpty { checkpoint.grids[name] = grid.rows }
                checkpoint.versions[name] = grid.version
            }
            checkpoint.offsets = state.offsets
            checkpoint.epoch = state.epoch
            return (checkpoint, state.appliedRecords)
        }
    }

    public var offsets: [SourcePartition: Int64] { state.withLock { $0.offsets } }
    /// The applied offsets and the records applied up to them, read together.
    public var progress: (offsets: [SourcePartition: Int64], appliedRecords: Int) {
        state.withLock { ($0.offsets, $0.appliedRecords) }
    }
    public var epoch: Int64 { state.withLock { $0.epoch } }
    public var appliedRecords: Int { state.withLock { $0.appliedRecords } }
    public var gridNames: [String] { state.withLock { $0.grids.keys.sorted() } }
    /// The grids' declared columns, by name (grids nothing declared are left out).
    public var columns: [(name: String, columns: [String])] {
        state.withLock { state in state.grids.filter { !$0.value.columns.isEmpty }.map { ($0.key, $0.value.columns) }.sorted { $0.name < $1.name } }
    }

    public func snapshot(_ grid: String) -> (grid: Grid, epoch: Int64)? {
        state.withLock { state in state.grids[grid].map { ($0, state.epoch) } }
    }

    /// Every change applied from now on, per grid.
    public func changes() -> AsyncStream<Change> {
        let (stream, continuation) = AsyncStream<Change>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = state.withLock { state in
            defer { state.nextListener += 1 }
            state.listeners[state.nextListener] = continuation
            return state.nextListener
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }
}
