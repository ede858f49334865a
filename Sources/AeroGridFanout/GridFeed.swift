public import AeroGridCore
public import AeroGridRuntime
import Synchronization

/// Counters of the fan-out's work, for metrics and tests.
public final class FanoutStats: Sendable {
    let ticks = Atomic<Int>(0)

    public init() {}

    /// Ticks run so far: one per grid change at most, per (grid, rate, filter) group.
    public var tickCount: Int { ticks.load(ordering: .relaxed) }
}

/// What a client asks to watch: one grid of one app, optionally only some keys and some
/// columns, at most `maxRate` messages a second.
public struct SubscriptionFilter: Sendable, Hashable {
    public var keys: Set<GridKey>?
    /// Kept in the client's order: the order of the cells in each message.
    public var columns: [String]?

    public init(keys: Set<GridKey>? = nil, columns: [String]? = nil) {
        self.keys = keys
        self.columns = columns
    }
}

/// One grid as clients see it: its current source (the app's `GridState`, replaced when the
/// app's runner is), its version and epoch, and a bounded log of which cells changed at
/// which version. Subscriptions keep only a version cursor into it, never a queue: a slow
/// client costs nothing while it is slow, and reads the latest values when it drains.
public final class GridFeed: Sendable {
    /// The tenant's name: where the app's grids are looked up.
    public let tenant: String
    public let app: String
    public let grid: String

    struct LogEntry {
        let version: UInt64
        let key: GridKey
        /// Changed columns; nil when the whole row is new or deleted (or most of it changed).
        let columns: [String]?

        static func bytes(_ key: GridKey, _ columns: [String]?) -> Int {
            let keyBytes = if case .string(let text) = key { text.utf8.count } else { 8 }
            return 48 + keyBytes + (columns?.reduce(0) { $0 + $1.utf8.count + 16 } ?? 0)
        }
    }

    struct State {
        var source: GridState?
        var epoch: Int64 = 0
        var version: UInt64 = 0
        var rowCount = 0
        var log: [LogEntry] = []
        /// What the log's entries hold: their keys and column names, and a fixed part each.
        var logBytes = 0
        /// Versions after this one are all in the log; a cursor before it needs a snapshot.
        var logBase: UInt64 = 0
        var listener: Task<Void, Never>?
        var groups: [GroupKey: TickGroup] = [:]
        /// The source had no such grid when attached (its app was starting): the members
        /// take a snapshot once it has, whether or not a change follows.
        var waiting = false

        /// Starts over from `source`'s current grid: an empty log at its version and epoch,
        /// or `waiting` when it has no such grid yet.
        mutating func restart(from source: GridState?, grid: String) {
            log.removeAll()
            logBytes = 0
            if let source, let snapshot = source.snapshot(grid) {
                version = snapshot.grid.version
                epoch = snapshot.epoch
                rowCount = snapshot.grid.rows.count
                waiting = false
            } else {
                epoch = source?.epoch ?? epoch
                waiting = source != nil
            }
            logBase = version
        }

        var members: [Subscription] { groups.values.flatMap { $0.members.withLock { Array($0.values) } } }
    }

    struct GroupKey: Hashable {
        let rate: Int
        let filter: SubscriptionFilter
    }

    /// The log keeps at most this many cell-row changes, and this many bytes of them (an
    /// app chooses its keys and columns); older cursors get a snapshot.
    static let logCapacity = 50_000
    static let logByteCapacity = 2 << 20
    /// A row with more changed columns than this is logged as changed whole.
    static let columnsLogged = 16

    let state = Mutex(State())
    let stats: FanoutStats

    init(tenant: String, app: String, grid: String, stats: FanoutStats) {
        self.tenant = tenant
        self.app = app
        self.grid = grid
        self.stats = stats
    }

    /// Follows `source` (nil: the app has no runner now). A new source is a new epoch or a
    /// restart: every subscriber takes a fresh snapshot.
    func attach(_ source: GridState?) {
        let members: [Subscription] = state.withLock { state in
            if state.source === source {
                // Same source: only news if the grid it lacked has appeared (restored from
                // a checkpoint, it may have no change to announce it).
                guard state.waiting, source != nil else { return [] }
                state.restart(from: source, grid: grid)
                return state.waiting ? [] : state.members
            }
            state.listener?.cancel()
            state.listener = nil
            state.source = source
            state.restart(from: source, grid: grid)
            if let source {
                let changes = source.changes()
                state.listener = Task { [weak self] in
                    for await change in changes { self?.record(change) }
                }
            }
            return state.members
        }
        for member in members { member.needResync() }
    }

    private func record(_ change: GridState.Change) {
        guard change.grid == grid else { return }
        let (resync, groups): ([Subscription], [TickGroup]) = state.withLock { state in
            // Each applied batch bumps the version by one. A new epoch (the grids reset in
            // place) or a gap (changes dropped by a listener that fell behind) leaves the
            // log unable to describe what happened: everyone takes a snapshot.
            let broken = state.waiting || change.epoch != state.epoch || change.version != state.version + 1
            state.waiting = false
            if broken {
                state.log.removeAll()
                state.logBytes = 0
                state.logBase = change.version
                state.version = change.version
                state.epoch = change.epoch
                return (state.members, Array(state.groups.values))
            }
            for (index, (key, _)) in change.rows.enumerated() {
                let columns = index < change.changedColumns.count ? change.changedColumns[index] : nil
                let kept = (columns?.count ?? 0) > Self.columnsLogged ? nil : columns
                state.log.append(LogEntry(version: change.version, key: key, columns: kept))
                state.logBytes += LogEntry.bytes(key, kept)
            }
            state.version = change.version
            state.epoch = change.epoch
            if state.log.count > 2 * Self.logCapacity || state.logBytes > 2 * Self.logByteCapacity {
                var dropped = 0
                while state.log.count - dropped > Self.logCapacity || state.logBytes > Self.logByteCapacity {
                    state.logBytes -= LogEntry.bytes(state.log[dropped].key, state.log[dropped].columns)
                    dropped += 1
                }
                if dropped > 0 {
                    state.logBase = state.log[dropped - 1].version
                    state.log.removeFirst(dropped)
                }
            }
            return ([], Array(state.groups.values))
        }
        for member in resync { member.needResync() }
        for group in groups { group.changed() }
    }

    var current: (version: UInt64, epoch: Int64, source: GridState?) {
        state.withLock { ($0.version, $0.epoch, $0.source) }
    }

    /// The cells changed after `from` up to `to`, merged per key (nil columns: the whole
    /// row), or nil when the log no longer reaches back that far.
    func changes(after from: UInt64, upTo to: UInt64, filter: SubscriptionFilter) -> [GridKey: Set<String>?]? {
        state.withLock { state in
            guard from >= state.logBase else { return nil }
            var merged: [GridKey: Set<String>?] = [:]
            // Entries are in version order: find the first after `from`.
            var low = 0
            var high = state.log.count
            while low < high {
                let middle = (low + high) / 2
                if state.log[middle].version <= from { low = middle + 1 } else { high = middle }
            }
            for entry in state.log[low...] {
                if entry.version > to { break }
                if let keys = filter.keys, !keys.contains(entry.key) { continue }
                if let columns = entry.columns, case .some(.some(var known)) = merged[entry.key] {
                    known.formUnion(columns)
                    merged[entry.key] = .some(known)
                } else if let columns = entry.columns, merged[entry.key] == nil {
                    merged[entry.key] = .some(Set(columns))
                } else {
                    merged[entry.key] = .some(nil)
                }
            }
            return merged
        }
    }

    // MARK: Members and their ticks

    func add(_ subscription: Subscription) {
        let key = GroupKey(rate: subscription.rate, filter: subscription.filter)
        let group = state.withLock { state in
            if let group = state.groups[key] { return group }
            let group = TickGroup(feed: self, rate: key.rate, filter: key.filter, startVersion: state.version, stats: stats)
            state.groups[key] = group
            return group
        }
        group.add(subscription)
    }

    /// Removes the subscription; true when the feed has no members left.
    func remove(_ subscription: Subscription) -> Bool {
        let key = GroupKey(rate: subscription.rate, filter: subscription.filter)
        return state.withLock { state in
            if let group = state.groups[key], group.remove(subscription) {
                group.stop()
                state.groups[key] = nil
            }
            if state.groups.isEmpty {
                state.listener?.cancel()
                state.listener = nil
                return true
            }
            return false
        }
    }

    var memberCount: Int {
        state.withLock { $0.groups.values.reduce(0) { $0 + $1.members.withLock { $0.count } } }
    }
}

/// The subscriptions of one feed with the same rate and filter: one tick builds one message
/// body for all of them that are caught up. A tick runs only after the grid changed, and at
/// most `rate` times a second: a group whose grid does not change costs nothing (a viewer
/// can hold thousands of idle subscriptions without keeping a core busy).
final class TickGroup: Sendable {
    /// Strong: a tick may still run while the last member leaves. The feed lets go of the
    /// group when it empties, which ends the cycle.
    let feed: GridFeed
    let rate: Int
    let filter: SubscriptionFilter
    let members = Mutex<[ObjectIdentifier: Subscription]>([:])
    /// The version the last tick sent up to.
    private let lastVersion: Mutex<UInt64>
    private let ticker = Mutex<Task<Void, Never>?>(nil)
    /// Wakes the ticker: the grid changed (many changes between two ticks wake it once).
    private let changes: AsyncStream<Void>.Continuation
    private let stats: FanoutStats

    init(feed: GridFeed, rate: Int, filter: SubscriptionFilter, startVersion: UInt64, stats: FanoutStats) {
        self.feed = feed
        self.rate = rate
        self.filter = filter
        self.stats = stats
        lastVersion = Mutex(startVersion)
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(1, rate)))
        let (wakes, changes) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.changes = changes
        ticker.withLock {
            $0 = Task { [weak self] in
                var earliest = ContinuousClock.now
                for await _ in wakes {
                    // At most one tick per interval: a change soon after a tick waits for the
                    // next slot, and every change until then goes out with it.
                    if ContinuousClock.now < earliest { try? await Task.sleep(until: earliest) }
                    guard !Task.isCancelled, let self else { return }
                    earliest = .now + interval
                    self.tick()
                }
            }
        }
    }

    /// The grid changed: tick (now, or at the next slot of the rate).
    func changed() { changes.yield() }

    func stop() {
        changes.finish()
        ticker.withLock { $0?.cancel() }
    }

    func add(_ subscription: Subscription) {
        subscription.joined(group: self, at: lastVersion.withLock { $0 })
        members.withLock { $0[ObjectIdentifier(subscription)] = subscription }
    }

    /// True when the group is empty now.
    func remove(_ subscription: Subscription) -> Bool {
        members.withLock { members in
            members[ObjectIdentifier(subscription)] = nil
            return members.isEmpty
        }
    }

    var version: UInt64 { lastVersion.withLock { $0 } }

    private func tick() {
        stats.ticks.add(1, ordering: .relaxed)
        let (to, epoch, source) = feed.current
        let from = lastVersion.withLock { $0 }
        guard to != from, let source else { return }
        let offer: Subscription.Offer
        if let changes = feed.changes(after: from, upTo: to, filter: filter) {
            offer =
                changes.isEmpty
                ? .nothing
                : .body(Messages.deltaBody(feed: feed, source: source, changes: changes, filter: filter, epoch: epoch, version: to))
        } else {
            offer = .resync  // the log no longer reaches back
        }
        lastVersion.withLock { $0 = to }
        let current = members.withLock { Array($0.values) }
        for member in current { member.offer(offer, from: from, to: to) }
    }
}
