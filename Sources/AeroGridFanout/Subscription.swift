public import AeroGridCore
import AeroGridRuntime
import Synchronization

/// One client subscription: where its messages stand, never the messages themselves. At
/// most one message waits for the client's connection; when the connection is still busy
/// with it at the next tick, that message is dropped for a catch-up computed when the
/// connection drains — from the log, or as a snapshot when the client is too far behind.
public final class Subscription: Sendable {
    public let id: String
    /// The tenant it counts against.
    let tenantID: String
    let feed: GridFeed
    let filter: SubscriptionFilter
    let rate: Int
    private let wake: @Sendable () -> Void

    enum Offer {
        case nothing
        case body([UInt8])
        case resync
    }

    enum Pending {
        case body([UInt8], version: UInt64)
        case resync
    }

    private struct State {
        /// The version the client will be at once what is pending is written; nil when it
        /// needs a catch-up.
        var cursor: UInt64?
        var pending: Pending?
        var group: TickGroup?
        var sentEpoch: Int64?
        var sentVersion: UInt64 = 0
        var closed = false
    }

    private let state = Mutex(State())

    init(id: String, tenantID: String, feed: GridFeed, filter: SubscriptionFilter, rate: Int, wake: @escaping @Sendable () -> Void) {
        self.id = id
        self.tenantID = tenantID
        self.feed = feed
        self.filter = filter
        self.rate = rate
        self.wake = wake
    }

    func joined(group: TickGroup, at version: UInt64) {
        state.withLock {
            $0.group = group
            $0.cursor = nil
            $0.pending = .resync  // the snapshot
        }
        wake()
    }

    /// A tick's message for the members that were at `from`.
    func offer(_ offer: Offer, from: UInt64, to: UInt64) {
        let woke: Bool = state.withLock { state in
            guard !state.closed else { return false }
            switch offer {
            case .nothing where state.cursor == from:
                state.cursor = to
                return false
            case .body(let body) where state.cursor == from && state.pending == nil:
                state.pending = .body(body, version: to)
                state.cursor = to
                return true
            default:
                // Behind, or still busy with the last message: catch up when drained.
                let wasResync = if case .resync? = state.pending { true } else { false }
                state.pending = .resync
                state.cursor = nil
                return !wasResync
            }
        }
        if woke { wake() }
    }

    /// The source changed (the app restarted): a fresh snapshot.
    func needResync() {
        state.withLock {
            $0.pending = .resync
            $0.cursor = nil
        }
        wake()
    }

    /// What to write now, if anything; taken off the subscription.
    func take() -> [UInt8]? {
        guard
            let pending = state.withLock({ state -> Pending? in
                defer { state.pending = nil }
                return state.closed ? nil : state.pending
            })
        else { return nil }
        switch pending {
        case .body(let body, let version):
            state.withLock { $0.sentVersion = version }
            return Messages.message(type: "delta", id: id, body: body)
        case .resync:
            return catchUp()
        }
    }

    /// A delta from what the client has to where its group is, or a snapshot when the log
    /// no longer reaches back, the epoch changed, or most of the grid changed anyway.
    private func catchUp() -> [UInt8]? {
        let (version, epoch, source) = feed.current
        guard let source else {
            state.withLock { $0.cursor = nil }
            return nil  // the app does not run: resynced when it does
        }
        let target = state.withLock { $0.group?.version } ?? version
        let (sentEpoch, sentVersion) = state.withLock { ($0.sentEpoch, $0.sentVersion) }
        if sentEpoch == epoch, target >= sentVersion,
            let changes = feed.changes(after: sentVersion, upTo: target, filter: filter),
            changes.count <= max(16, feed.state.withLock { $0.rowCount } / 2)
        {
            state.withLock { state in
                state.sentVersion = target
                if state.pending == nil { state.cursor = target }
            }
            guard !changes.isEmpty else { return nil }
            let body = Messages.deltaBody(feed: feed, source: source, changes: changes, filter: filter, epoch: epoch, version: target)
            return Messages.message(type: "delta", id: id, body: body)
        }
        guard let (message, snapshotVersion) = Messages.snapshot(id: id, feed: feed, source: source, filter: filter) else {
            // An app that has not declared its grids yet (starting, or in backoff) may still
            // make this one: the snapshot comes with its first change. One that has, has not.
            state.withLock { $0.cursor = nil }
            guard !source.gridNames.isEmpty else { return nil }
            return Messages.error(id: id, code: "not_found", message: "app '\(feed.app)' has no grid '\(feed.grid)'")
        }
        state.withLock { state in
            state.sentEpoch = epoch
            state.sentVersion = snapshotVersion
            // Rejoin the group's stream where it is: the next tick's delta may repeat a few
            // cells the snapshot already had, never miss one.
            if state.pending == nil { state.cursor = state.group?.version }
        }
        return message
    }

    func close() {
        state.withLock {
            $0.closed = true
            $0.pending = nil
        }
    }
}
