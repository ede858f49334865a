public import AeroGridCore
public import AeroGridRuntime
import Synchronization

/// One client connection's outgoing side: its subscriptions and a writer that sends, in
/// turn, the control messages (answers, errors, app events) and whatever each subscription
/// has pending. Writes wait for the client (the transport's backpressure); meanwhile
/// nothing piles up but one pending message per subscription and a bounded control queue.
public final class StreamConnection: Sendable {
    public let tenant: String
    private let send: @Sendable ([UInt8]) async throws -> Void
    private let signal: AsyncStream<Void>.Continuation
    private let signals: AsyncStream<Void>
    private let subscriptions = Mutex<[String: Subscription]>([:])
    private let control = Mutex<[[UInt8]]>([])
    /// When the write in progress started: a client that does not read shows here.
    private let writing = Mutex<ContinuousClock.Instant?>(nil)

    /// Control messages kept for a client that does not read; past this the oldest go.
    static let controlCapacity = 256

    public init(tenant: String, send: @escaping @Sendable ([UInt8]) async throws -> Void) {
        self.tenant = tenant
        self.send = send
        (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    public func wake() { signal.yield() }

    /// Queues an answer, an error or an app event.
    public func enqueue(_ message: [UInt8]) {
        control.withLock { messages in
            messages.append(message)
            if messages.count > Self.controlCapacity { messages.removeFirst() }
        }
        wake()
    }

    /// Writes until `finish()` or the client goes away.
    public func run() async {
        for await _ in signals {
            do {
                while true {
                    var wrote = false
                    let messages = control.withLock { messages in
                        defer { messages.removeAll() }
                        return messages
                    }
                    for message in messages {
                        try await write(message)
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

    /// Stops the writer.
    public func finish() { signal.finish() }
}

/// Every grid feed of the server, made on the first subscription and dropped with the last.
public final class FanoutHub: Sendable {
    private let feeds = Mutex<[String: GridFeed]>([:])
    private let source: @Sendable (_ tenant: String, _ app: String) -> GridState?

    /// Default and highest rate a subscription may ask for, in messages a second.
    public static let defaultRate = 4
    public static let maxRate = 50

    /// `source` answers the current grids of an app (nil when it has no runner).
    public init(source: @escaping @Sendable (_ tenant: String, _ app: String) -> GridState?) {
        self.source = source
    }

    public enum SubscribeError: Error, Equatable {
        case duplicateID
    }

    /// Subscribes: the snapshot follows on the connection, then deltas.
    public func subscribe(_ connection: StreamConnection, id: String, app: String, grid: String,
                          filter: SubscriptionFilter, rate: Int) throws(SubscribeError) {
        guard !connection.has(id: id) else { throw .duplicateID }
        let key = "\(connection.tenant)/\(app)/\(grid)"
        let feed = feeds.withLock { feeds in
            if let feed = feeds[key] { return feed }
            let feed = GridFeed(app: app, grid: grid)
            feeds[key] = feed
            return feed
        }
        feed.attach(source(connection.tenant, app))
        let subscription = Subscription(id: id, feed: feed, filter: filter, rate: min(max(rate, 1), Self.maxRate)) { [weak connection] in
            connection?.wake()
        }
        guard connection.add(subscription) else { throw .duplicateID }
        feed.add(subscription)
    }

    /// True when there was such a subscription.
    public func unsubscribe(_ connection: StreamConnection, id: String) -> Bool {
        guard let subscription = connection.remove(id: id) else { return false }
        drop(subscription, tenant: connection.tenant)
        return true
    }

    public func disconnect(_ connection: StreamConnection) {
        for subscription in connection.removeAll() { drop(subscription, tenant: connection.tenant) }
        connection.finish()
    }

    private func drop(_ subscription: Subscription, tenant: String) {
        subscription.close()
        if subscription.feed.remove(subscription) {
            feeds.withLock { feeds in
                let key = "\(tenant)/\(subscription.feed.app)/\(subscription.feed.grid)"
                if feeds[key] === subscription.feed, subscription.feed.memberCount == 0 { feeds[key] = nil }
            }
        }
    }

    /// Points every feed at its app's current grids: after a start, a stop or a restart
    /// (and once a starting app has declared the grid) the subscribers resync, and stay
    /// subscribed.
    public func refresh() {
        for (key, feed) in feeds.withLock({ $0 }) {
            let tenant = String(key.prefix { $0 != "/" })
            feed.attach(source(tenant, feed.app))
        }
    }

    public var subscriptionCount: Int { feeds.withLock { $0.values.reduce(0) { $0 + $1.memberCount } } }
}
