import AeroGridCore
import AeroGridFanout
import AeroGridRuntime
import AeroGridStore
import Foundation
import HTTPTypes
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Synchronization

/// What one stream connection may ask of the server (`[stream]` in aerogrid.toml).
public struct StreamLimits: Sendable, Equatable {
    /// A client message larger than this is refused (the connection stays).
    public var messageBytes = 64 << 10
    /// Subscriptions one connection may hold (a tenant's over all of them: its quota).
    public var subscriptionsPerConnection = 100
    /// Answers, errors and app events that may wait for a client that does not read; past
    /// this the connection is closed.
    public var replyBytes = 1 << 20
    /// Operations a connection may send a second; past it, its next message is read later.
    public var operationsPerSecond = 100
    /// How long a connection may wait before its `auth` message.
    public var authTimeout: Duration = .seconds(10)

    public init() {}
}

/// `/api/v1/stream`: the WebSocket every client (the Excel add-in, the console, scripts)
/// uses to watch grids and apps. JSON messages per docs/protocol.md. One connection
/// multiplexes many subscriptions; errors are per subscription and never close it.
public final class StreamGateway: Sendable {
    let store: Store
    let hub: FanoutHub
    let watcher: AppWatcher
    let planner: AppPlanner
    let gate: ConnectionGate
    let sessions: Sessions
    let limits: StreamLimits
    let logger: Logger
    private let open = Mutex<[ObjectIdentifier: StreamConnection]>([:])

    /// Where the WebSocket is: an upgrade, not a route of the router.
    static let path = "/api/v1/stream"
    /// Client-chosen text echoed in answers (ids, ops), at most: longer is not echoed.
    static let maxEchoBytes = 64

    init(
        store: Store, hub: FanoutHub, watcher: AppWatcher, planner: AppPlanner, gate: ConnectionGate, sessions: Sessions,
        limits: StreamLimits = StreamLimits(), logger: Logger
    ) {
        self.store = store
        self.hub = hub
        self.watcher = watcher
        self.planner = planner
        self.gate = gate
        self.sessions = sessions
        self.limits = limits
        self.logger = logger
    }

    /// Frames above this close the connection (the transport's own limit): 1 MiB, or a
    /// whole message if that is larger.
    var maxFrameBytes: Int { max(1 << 20, limits.messageBytes) }

    /// The WebSocket's frame limit and pings (an unanswered ping closes the connection).
    var webSocketConfiguration: WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: maxFrameBytes, autoPing: .enabled(timePeriod: .seconds(30)))
    }

    func shouldUpgrade(_ request: HTTPRequest, channel: any Channel) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let path = request.path?.split(separator: "?", maxSplits: 1).first.map(String.init)
        guard path == Self.path else { return .dontUpgrade }
        let header = request.headerFields[.authorization]
        let remote = channel.remoteAddress?.ipAddress ?? "unknown"
        return .upgrade([:]) { [self] inbound, outbound, _ in
            await serve(inbound: inbound, outbound: outbound, channel: channel, authorization: header, remote: remote)
        }
    }

    var stats: (connections: Int, subscriptions: Int, blocked: Int) {
        let all = open.withLock { Array($0.values) }
        return (all.count, hub.subscriptionCount, all.filter { ($0.blockedFor ?? .zero) > .seconds(5) }.count)
    }

    // MARK: One connection

    private func serve(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel, authorization: String?,
        remote: String
    ) async {
        var frames = inbound.makeAsyncIterator()
        let chunk = maxFrameBytes / 2
        let reply: @Sendable ([UInt8]) async throws -> Void = { message in
            try await outbound.withTextMessageWriter { writer in
                var start = 0
                while start < message.count {
                    let end = min(start + chunk, message.count)
                    try await writer(ByteBuffer(bytes: message[start..<end]))
                    start = end
                }
            }
        }
        // Who: the Authorization header, or a first `auth` message (browsers cannot set headers).
        var principal: Principal?
        do {
            if let authorization {
                principal = try await TokenSecret.principal(authorization: authorization, store: store)
            } else {
                // A client that never authenticates does not hold the connection.
                let deadline = Task {
                    try await Task.sleep(for: limits.authTimeout)
                    try? await reply(Messages.error(id: nil, code: "unauthorized", message: "no auth message within \(limits.authTimeout)"))
                    try? await outbound.close(.policyViolation, reason: "not authenticated")
                }
                defer { deadline.cancel() }
                guard let first = try await nextMessage(&frames) else { return }
                guard case .message(let bytes) = first, let request = StreamRequest.read(bytes),
                    request.op.value == "auth", let token = request.token.value, token.utf8.count <= 256
                else {
                    try? await reply(Messages.error(id: nil, code: "unauthorized", message: "the first message must be {\"op\":\"auth\",\"token\":\"agt_…\"}"))
                    try? await outbound.close(.policyViolation, reason: "not authenticated")
                    return
                }
                principal = try await TokenSecret.principal(authorization: "Bearer \(token)", store: store)
            }
        } catch {
            try? await reply(Messages.error(id: nil, code: "unauthorized", message: (error as? APIError)?.message ?? "the token is not valid"))
            try? await outbound.close(.policyViolation, reason: "not authenticated")
            return
        }
        guard let principal, let tenant = principal.tenant, let tenantID = principal.tenantID else {
            try? await reply(Messages.error(id: nil, code: "forbidden", message: "the stream acts within a tenant; use a tenant token, not an operator token"))
            try? await outbound.close(.policyViolation, reason: "no tenant")
            return
        }
        // The connection now counts against its tenant's max_connections, not the anonymous caps.
        let quota = (try? await planner.tenantQuota(tenant)) ?? TenantQuota.defaults
        guard gate.authenticate(ObjectIdentifier(channel), tenantID: tenantID, limit: quota.maxConnections) else {
            try? await reply(
                Messages.error(
                    id: nil, code: "over_quota",
                    message: "tenant \(tenant) has \(quota.maxConnections) connections open, its quota (max_connections)"))
            try? await outbound.close(.policyViolation, reason: "over quota")
            return
        }
        let connection = StreamConnection(
            tenant: tenant, tenantID: tenantID, replyBytes: limits.replyBytes,
            send: reply
        ) { [logger] reason in
            // At once, without a close handshake: the client may not be reading.
            logger.info("stream from \(remote) closed: \(reason)")
            channel.close(promise: nil)
        }
        // Revoking the token or deleting the tenant closes the connection now.
        let session = sessions.open(tokenID: principal.tokenID, tenantID: tenantID) { reason in connection.close(reason: reason) }
        open.withLock { $0[ObjectIdentifier(connection)] = connection }
        defer {
            sessions.close(session)
            hub.disconnect(connection)
            watcher.unwatch(connection)
            open.withLock { $0[ObjectIdentifier(connection)] = nil }
        }
        connection.enqueue(Self.ready(tenant: tenant, role: principal.role.rawValue))
        let writer = Task { await connection.run() }
        defer { writer.cancel() }
        var window = (start: ContinuousClock.now, operations: 0)
        do {
            while !connection.isClosed, let message = try await nextMessage(&frames) {
                guard !connection.isClosed else { break }
                // Paced, not refused: a client sending faster than the cap waits for the next second.
                if ContinuousClock.now - window.start >= .seconds(1) { window = (.now, 0) }
                window.operations += 1
                if window.operations > limits.operationsPerSecond {
                    try await Task.sleep(until: window.start + .seconds(1))
                    window = (.now, 1)
                }
                switch message {
                case .message(let bytes): await handle(bytes, on: connection, quota: quota)
                case .tooLarge(let size):
                    connection.enqueue(
                        Messages.error(id: nil, code: "bad_request", message: "a message of \(size)+ bytes; the limit is \(limits.messageBytes)"))
                }
            }
        } catch {
            logger.debug("stream from \(remote) ended: \(error)")
        }
        connection.finish()
    }

    private enum Incoming {
        case message([UInt8])
        case tooLarge(Int)
    }

    /// The next whole message; one over the size limit is read to its end and reported.
    private func nextMessage(_ frames: inout WebSocketInboundStream.AsyncIterator) async throws -> Incoming? {
        var bytes: [UInt8] = []
        var size = 0
        while let frame = try await frames.next() {
            // Counted only up to the limit: a message that never ends cannot overflow it.
            if size <= limits.messageBytes {
                size += frame.data.readableBytes
                if size <= limits.messageBytes { bytes += frame.data.readableBytesView }
            }
            guard frame.fin else { continue }
            return size > limits.messageBytes ? .tooLarge(size) : .message(bytes)
        }
        return nil
    }

    // MARK: Operations

    private func handle(_ bytes: [UInt8], on connection: StreamConnection, quota: TenantQuota) async {
        guard let request = StreamRequest.read(bytes) else {
            return connection.enqueue(Messages.error(id: nil, code: "bad_request", message: "a message must be a JSON object with an \"op\""))
        }
        // Echoed in the answer only when short: a client's 64 KiB id is never copied back.
        let id = request.id.value.flatMap { $0.utf8.count <= Self.maxEchoBytes ? $0 : nil }
        switch request.op.value {
        case "subscribe": await subscribe(request, id: id, on: connection, quota: quota)
        case "unsubscribe":
            guard let id else {
                return connection.enqueue(Messages.error(id: nil, code: "bad_request", message: "unsubscribe needs the subscription's \"id\""))
            }
            if hub.unsubscribe(connection, id: id) {
                connection.enqueue(Self.simple(type: "unsubscribed", id: id))
            } else {
                connection.enqueue(Messages.error(id: id, code: "not_found", message: "no subscription '\(id)' on this connection"))
            }
        case "watch_apps":
            watcher.watch(connection)
        case "ping":
            connection.enqueue(Self.simple(type: "pong", id: id))
        case "auth":
            connection.enqueue(Messages.error(id: id, code: "bad_request", message: "already authenticated"))
        case let op?:
            let shown = op.utf8.count <= Self.maxEchoBytes ? "'\(op)'" : "of \(op.utf8.count) bytes"
            connection.enqueue(Messages.error(id: id, code: "bad_request", message: "unknown op \(shown) (known: subscribe, unsubscribe, watch_apps, ping)"))
        case nil:
            connection.enqueue(Messages.error(id: id, code: "bad_request", message: "a message needs an \"op\""))
        }
    }

    private func subscribe(_ request: StreamRequest, id: String?, on connection: StreamConnection, quota: TenantQuota) async {
        guard let id, !id.isEmpty else {
            return connection.enqueue(Messages.error(id: nil, code: "bad_request", message: "subscribe needs an \"id\" of 1 to 64 bytes, chosen by the client"))
        }
        guard let app = request.app.value, let grid = request.grid.value else {
            return connection.enqueue(Messages.error(id: id, code: "bad_request", message: "subscribe needs \"app\" and \"grid\""))
        }
        for (kind, name) in [("app", app), ("grid", grid)] {
            if let problem = ResourceName.problem(with: name) {
                let shown = name.utf8.count <= Self.maxEchoBytes ? "'\(name)'" : "of \(name.utf8.count) bytes"
                return connection.enqueue(Messages.error(id: id, code: "bad_request", message: "\(kind) name \(shown) is not valid: \(problem)"))
            }
        }
        var filter = SubscriptionFilter()
        switch request.keys {
        case .absent: break
        case .invalid: return connection.enqueue(Messages.error(id: id, code: "bad_request", message: "\"keys\" must be a list of strings or integers"))
        case .value(let list):
            guard list.count <= 10_000 else {
                return connection.enqueue(Messages.error(id: id, code: "bad_request", message: "\"keys\" must be a list of up to 10,000 strings or integers"))
            }
            filter.keys = Set(list)
        }
        if request.columns.isPresent {
            // Each name once: a repeated one would repeat its cells in every message.
            guard let list = request.columns.value, list.count <= 1024, list.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 256 }),
                Set(list).count == list.count
            else {
                return connection.enqueue(
                    Messages.error(
                        id: id, code: "bad_request",
                        message: "\"columns\" must be a list of up to 1,024 different column names of 1 to 256 bytes"))
            }
            filter.columns = list
        }
        var rate = FanoutHub.defaultRate
        if request.maxRate.isPresent {
            guard let number = request.maxRate.value, number >= 1 else {
                return connection.enqueue(
                    Messages.error(id: id, code: "bad_request", message: "\"max_rate\" must be a whole number of messages a second, 1 to \(FanoutHub.maxRate)"))
            }
            rate = min(number, FanoutHub.maxRate)
        }
        guard connection.subscriptionCount < limits.subscriptionsPerConnection else {
            return connection.enqueue(
                Messages.error(id: id, code: "over_quota", message: "a connection may hold \(limits.subscriptionsPerConnection) subscriptions"))
        }
        guard (try? await store.app(tenant: connection.tenant, name: app)) != nil else {
            return connection.enqueue(Messages.error(id: id, code: "not_found", message: "no app '\(app)'"))
        }
        // Operations of one connection are handled in turn: the id is still free below.
        guard !connection.has(id: id) else {
            return connection.enqueue(Messages.error(id: id, code: "bad_request", message: "subscription '\(id)' already exists on this connection"))
        }
        do {
            // "subscribed" goes out before anything of the subscription.
            try hub.subscribe(connection, id: id, app: app, grid: grid, filter: filter, rate: rate, tenantLimit: quota.maxSubscriptions) {
                connection.enqueue(Self.subscribed(id: id, app: app, grid: grid, rate: rate))
            }
        } catch .overQuota(let limit) {
            connection.enqueue(
                Messages.error(
                    id: id, code: "over_quota",
                    message: "tenant \(connection.tenant) holds \(limit) subscriptions over its connections, its quota (max_subscriptions)"))
        } catch {
            connection.enqueue(Messages.error(id: id, code: "bad_request", message: "subscription '\(id)' already exists on this connection"))
        }
    }

    // MARK: Small messages

    static func ready(tenant: String, role: String) -> [UInt8] {
        var json = JSONWriter()
        json.raw("{\"type\":\"ready\",\"tenant\":")
        json.string(tenant)
        json.raw(",\"role\":")
        json.string(role)
        json.raw(",\"protocol\":1}")
        return json.bytes
    }

    static func simple(type: String, id: String?) -> [UInt8] {
        var json = JSONWriter()
        json.raw("{\"type\":")
        json.string(type)
        if let id {
            json.raw(",\"id\":")
            json.string(id)
        }
        json.raw("}")
        return json.bytes
    }

    static func subscribed(id: String, app: String, grid: String, rate: Int) -> [UInt8] {
        var json = JSONWriter()
        json.raw("{\"type\":\"subscribed\",\"id\":")
        json.string(id)
        json.raw(",\"app\":")
        json.string(app)
        json.raw(",\"grid\":")
        json.string(grid)
        json.raw(",\"max_rate\":")
        json.number(Int64(rate))
        json.raw("}")
        return json.bytes
    }
}
