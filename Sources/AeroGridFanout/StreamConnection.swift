public import AeroGridCore
public import AeroGridRuntime
import Synchronization

/// One client connection's outgoing side: its subscriptions and a writer that sends, in
/// turn, the control messages (answers, errors, app events) and whatever each subscription
/// has pending. Writes wait for the client (the transport's backpressure); meanwhile
/// nothing piles up but one pending message per subscription and the control messages,
/// bounded in bytes: a client that lets more than `replyBytes` of them wait is disconnected
/// (it asked for them and does not read them).
public final class StreamConnection: Sendable {
    /// The tenant's name (what the store's queries take) and its immutable id (what the
    /// connection is counted and found by: a revoked token or a deleted tenant closes it).
    public let tenant: String
    public let tenantID: String
    private let send: @Sendable ([UInt8]) async throws -> Void
    /// Drops the transport at once, without waiting for the client (which may not read).
    private let disconnect: @Sendable (String) -> Void
    private let signal: AsyncStream<Void>.Continuation
    private let signals: AsyncStream<Void>
    private let subscriptions = Mutex<[String: Subscription]>([:])
    private let control = Mutex<(messages: [[UInt8]], bytes: Int, closed: Bool)>(([], 0, false))
    /// When the write in progress started: a client that does not read shows here.
    private let writing = Mutex<ContinuousClock.Instant?>(nil)

    /// Control messages (answers, errors, app events) that may wait for the client, in bytes.
    public let replyBytes: Int

    public init(
        tenant: String, tenantID: String, replyBytes: Int = 1 << 20,
        send: @escaping @Sendable ([UInt8]) async throws -> Void,
        disconnect: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.tenant = tenant
        self.replyBytes = replyBytes
        self.tenantID = tenantID
        self.send = send
        self.disconnect = disconnect
        (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    public func wake() { signal.yield() }

    /// Queues an answer, an error or an app event. Past `replyBytes` waiting (queued, or
    /// taken by the writer and not yet written), the client is not reading what it asked
    /// for: the connection is closed.
    public func enqueue(_ message: [UInt8]) {
        let overflow = control.withLock { control -> Bool in
            guard !control.closed else { return false }
            control.messages.append(message)
            control.bytes += message.count
            return control.bytes > replyBytes
        }
        if overflow {
            close(reason: "over \(replyBytes) bytes of replies and events waited for the client to read them")
        } else {
            wake()
        }
    }

    /// Closes the connection now (a token revoked, a tenant deleted, replies unread): the
    /// writer stops and the transport is dropped.
    public func close(reason: String) {
        let first = control.withLock { control -> Bool in
            defer { control.closed = true }
            control.messages.removeAll()
            control.bytes = 0
            return !control.closed
        }
        guard first else { return }
        signal.finish()
        disconnect(reason)
    }

    public var isClosed: Bool { control.withLock { $0.closed } }

    /// Writes until `finish()` or the client goes away.
    public func run() async {
        for await _ in signals {
            do {
                while true {
                    var wrote = false
                    let messages = control.withLock { control in
                        defer { control.messages.removeAll() }
                        return control.messages
                    }
                    for message in messages {
                        try await write(message)
                        // Counted until written, not until taken: the batch in hand waits
                        // for the client as much as the queue does.
                        control.withLock { control in
                            if !control.closed { control.bytes -= message.count }
                        }
                        wrote = true
                    }
                    for subscription in subscriptions.withLock({ Array($0.values) }) {
                        if let message = subscription.take() {
                            try await write(message)
                            wrote = true
                        }
                    }
                    if !wrote { break }
                }
            } catch {
                break
            }
        }
    }

    private func write(_ message: [UInt8]) async throws {
        writing.withLock { $0 = .now }
        defer { writing.withLock { $0 = nil } }
        try await send(message)
    }

    /// How long the write in progress has waited for the client (nil: none waiting).
    public var blockedFor: Duration? {
        writing.withLock { $0.map { ContinuousClock.now - $0 } }
    }

    public var subscriptionCount: Int { subscriptions.withLock { $0.count } }

    func add(_ subscription: Subscription) -> Bool {
        subscriptions.withLock { subscriptions in
            guard subscriptions[subscription.id] == nil else { return false }
            subscriptions[subscription.id] = subscription
            return true
        }
    }

    func remove(id: String) -> Subscription? {
        subscriptions.withLock { $0.removeValue(forKey: id) }
    }

    func removeAll() -> [Subscription] {
        subscriptions.withLock { subscriptions in
            defer { subscriptions.removeAll() }
            return Array(subscriptions.values)
        }
    }

    public func has(id: String) -> Bool { subscriptions.withLock { $0[id] != nil } }

    func subscription(_ id: String) -> Subscription? { subscriptions.withLock { $0[id] } }

    /// Stops the writer.
    public func finish() { signal.finish() }
}

/// Every grid feed of the server, made on the first subscription and dropped with the last.
/// Feeds are keyed by the tenant's id, never its name.
public final class FanoutHub: Sendable {
    private let feeds = Mutex<[String: GridFeed]>([:])
    /// Subscriptions per tenant id, against the tenant's quota.
    private let perTenant = Mutex<[String: Int]>([:])
    private let source: @Sendable (_ tenant: String, _ app: String) -> GridState?
    public let stats = FanoutStats()

    /// Default and highest rate a subscription may ask for, in messages a second.
    public static let defaultRate = 4
    public static let maxRate = 50

    /// `source` answers the current grids of an app (nil when it has no runner), by the
    /// tenant's name.
    public init(source: @escaping @Sendable (_ tenant: String, _ app: String) -> GridState?) {
        self.source = source
    }

    public enum SubscribeError: Error, Equatable {
        case duplicateID
        /// The tenant holds `limit` subscriptions already.
        case overQuota(limit: Int)
    }

    /// Subscribes: `admitted` runs once the subscription is allowed, before anything of it
    /// can be sent; the snapshot follows on the connection, then deltas. `tenantLimit` is the
    /// tenant's quota of subscriptions over all its connections.
    public func subscribe(
        _ connection: StreamConnection, id: String, app: String, grid: String,
        filter: SubscriptionFilter, rate: Int, tenantLimit: Int = .max,
        admitted: () -> Void = {}
    ) throws(SubscribeError) {
        guard !connection.has(id: id) else { throw .duplicateID }
        let allowed = perTenant.withLock { counts in
            guard counts[connection.tenantID, default: 0] < tenantLimit else { return false }
            counts[connection.tenantID, default: 0] += 1
            return true
        }
        guard allowed else { throw .overQuota(limit: tenantLimit) }
        admitted()
        let key = "\(connection.tenantID)/\(app)/\(grid)"
        let feed = feeds.withLock { feeds in
            if let feed = feeds[key] { return feed }
            let feed = GridFeed(tenant: connection.tenant, app: app, grid: grid, stats: stats)
            feeds[key] = feed
            return feed
        }
        feed.attach(source(connection.tenant, app))
        let subscription = Subscription(
            id: id, tenantID: connection.tenantID, feed: feed, filter: filter,
            rate: min(max(rate, 1), Self.maxRate)
        ) { [weak connection] in
            connection?.wake()
        }
        guard connection.add(subscription) else {
            release(tenantID: connection.tenantID)
            throw .duplicateID
        }
        feed.add(subscription)
    }

    private func release(tenantID: String) {
        perTenant.withLock { counts in
            counts[tenantID, default: 1] -= 1
            if counts[tenantID] == 0 { counts[tenantID] = nil }
        }
    }

    /// Subscriptions the tenant holds over all its connections.
    public func subscriptionCount(tenantID: String) -> Int { perTenant.withLock { $0[tenantID] ?? 0 } }

    /// True when there was such a subscription.
    public func unsubscribe(_ connection: StreamConnection, id: String) -> Bool {
        guard let subscription = connection.remove(id: id) else { return false }
        drop(subscription)
        return true
    }

    public func disconnect(_ connection: StreamConnection) {
        for subscription in connection.removeAll() { drop(subscription) }
        connection.finish()
    }

    private func drop(_ subscription: Subscription) {
        subscription.close()
        release(tenantID: subscription.tenantID)
        if subscription.feed.remove(subscription) {
            feeds.withLock { feeds in
                let key = "\(subscription.tenantID)/\(subscription.feed.app)/\(subscription.feed.grid)"
                if feeds[key] === subscription.feed, subscription.feed.memberCount == 0 { feeds[key] = nil }
            }
        }
    }

    /// Points the feeds of one app at its current grids, told when the app changed: after a
    /// start, a stop or a restart (and once a starting app has declared the grid) their
    /// subscribers resync, and stay subscribed.
    public func refresh(tenant: String, app: String) {
        let affected = feeds.withLock { $0.values.filter { $0.tenant == tenant && $0.app == app } }
        for feed in affected { feed.attach(source(tenant, app)) }
    }

    /// Whether anyone here subscribes to one of the app's grids.
    public func watches(tenant: String, app: String) -> Bool {
        feeds.withLock { $0.values.contains { $0.tenant == tenant && $0.app == app && $0.memberCount > 0 } }
    }

    public var subscriptionCount: Int { feeds.withLock { $0.values.reduce(0) { $0 + $1.memberCount } } }
}
