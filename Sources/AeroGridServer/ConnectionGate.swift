import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// What one listener lets clients hold before they have shown a token, and for how long.
public struct ConnectionLimits: Sendable, Equatable {
    /// Connections that have not yet authenticated a request, in all and per client network
    /// (an IPv4 /24, an IPv6 /64: one client easily has many addresses of one network).
    /// Behind a proxy or a Kubernetes Service every client has the proxy's address: raise the
    /// per-network cap there (authenticated connections count against their tenant's
    /// `max_connections` instead).
    public var anonymous: Int = 1_024
    public var anonymousPerNetwork: Int = 64
    /// A new connection must send a whole request header within this time.
    public var headerTimeout: Duration = .seconds(10)
    /// A connection still anonymous this long after it opened is closed, whatever it sends
    /// (requests that need no token, such as /healthz, do not keep it).
    public var anonymousTimeout: Duration = .seconds(30)
    /// A connection with no request in progress is closed after this long without a request
    /// (this also bounds a later request's header).
    public var idleTimeout: Duration = .seconds(60)
    /// A request body (a bundle upload, a JSON body) must arrive within this time.
    public var bodyTimeout: Duration = .seconds(120)

    public init() {}
}

/// Counts the open connections of every listener: anonymous ones per client address until
/// a request on them authenticates, then against the tenant's quota. A connection over a
/// cap is closed as it opens (an anonymous one) or refused its request (an authenticated
/// one); neither can use up the descriptors the apps' sandboxes need.
final class ConnectionGate: Sendable {
    enum Holder: Equatable {
        case anonymous(network: String)
        case tenant(id: String)
        case `operator`
    }

    private struct State {
        var anonymous = 0
        var perNetwork: [String: Int] = [:]
        var perTenant: [String: Int] = [:]
        var holders: [ObjectIdentifier: Holder] = [:]
        /// What to do when a connection closes (a slot it holds goes back).
        var closers: [ObjectIdentifier: [@Sendable () -> Void]] = [:]
        var refused = 0
    }

    let limits: ConnectionLimits
    private let state = Mutex(State())

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    /// A new connection from `network` (see `network(of:)`): false when the anonymous caps
    /// are reached.
    func admit(_ connection: ObjectIdentifier, network: String) -> Bool {
        state.withLock { state in
            guard state.anonymous < limits.anonymous, state.perNetwork[network, default: 0] < limits.anonymousPerNetwork else {
                state.refused += 1
                return false
            }
            state.anonymous += 1
            state.perNetwork[network, default: 0] += 1
            state.holders[connection] = .anonymous(network: network)
            return true
        }
    }

    /// Whether the connection has not authenticated a request yet.
    func isAnonymous(_ connection: ObjectIdentifier) -> Bool {
        state.withLock { state in
            if case .anonymous? = state.holders[connection] { return true }
            return false
        }
    }

    /// The network an address counts in: its /24 for IPv4 (an IPv4 address mapped into IPv6
    /// too), its /64 for IPv6.
    static func network(of address: SocketAddress?) -> String {
        switch address {
        case .v4(let v4)?:
            return "v4 \(UInt32(bigEndian: v4.address.sin_addr.s_addr) >> 8)"
        case .v6(let v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return "v4 \(UInt32(bytes[12]) << 16 | UInt32(bytes[13]) << 8 | UInt32(bytes[14]))"
            }
            return "v6 " + bytes[0..<8].map { String($0, radix: 16) }.joined(separator: ":")
        default:
            return "other"
        }
    }

    /// Whether the connection already counts for this tenant (nil: an operator).
    func holds(_ connection: ObjectIdentifier, tenantID: String?) -> Bool {
        state.withLock { $0.holders[connection] == (tenantID.map { .tenant(id: $0) } ?? .operator) }
    }

    /// A request on the connection authenticated for `tenantID` (nil: an operator, who has
    /// no cap). False when the tenant holds `limit` connections already; the connection
    /// then stays as it was.
    func authenticate(_ connection: ObjectIdentifier, tenantID: String?, limit: Int) -> Bool {
        state.withLock { state in
            let holder: Holder = tenantID.map { .tenant(id: $0) } ?? .operator
            guard let current = state.holders[connection] else { return true }  // not a counted connection
            if current == holder { return true }
            if let tenantID, state.perTenant[tenantID, default: 0] >= limit { return false }
            Self.release(current, in: &state)
            if let tenantID { state.perTenant[tenantID, default: 0] += 1 }
            state.holders[connection] = holder
            return true
        }
    }

    func closed(_ connection: ObjectIdentifier) {
        let closers = state.withLock { state -> [@Sendable () -> Void] in
            if let holder = state.holders.removeValue(forKey: connection) { Self.release(holder, in: &state) }
            return state.closers.removeValue(forKey: connection) ?? []
        }
        for closer in closers { closer() }
    }

    /// Runs `action` when the connection closes; false (and nothing kept) when the gate
    /// does not know it: it has closed already.
    func whenClosed(_ connection: ObjectIdentifier, _ action: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard state.holders[connection] != nil else { return false }
            state.closers[connection, default: []].append(action)
            return true
        }
    }

    private static func release(_ holder: Holder, in state: inout State) {
        switch holder {
        case .anonymous(let network):
            state.anonymous -= 1
            state.perNetwork[network, default: 1] -= 1
            if state.perNetwork[network] == 0 { state.perNetwork[network] = nil }
        case .tenant(let id):
            state.perTenant[id, default: 1] -= 1
            if state.perTenant[id] == 0 { state.perTenant[id] = nil }
        case .operator:
            break
        }
    }

    /// Open connections: anonymous, and authenticated per tenant id; refused so far.
    var counts: (anonymous: Int, perTenant: [String: Int], refused: Int) {
        state.withLock { ($0.anonymous, $0.perTenant, $0.refused) }
    }
}

/// Puts a `ConnectionGuard` in front of a listener's HTTP (or WebSocket) pipeline, after
/// TLS when there is TLS, so it sees the plaintext of the first request.
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let gate: ConnectionGate

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionGuard(gate: gate, logger: logger))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Admits a connection through the gate as it opens (closing it when over a cap), closes
/// it when its first request header has not arrived within the header timeout, or when it
/// is still anonymous at the anonymous timeout, and tells the gate when it closes. Later
/// requests are bounded by the HTTP handler's idle timeout.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let gate: ConnectionGate
    private let logger: Logger
    private var admitted = false
    private var headerComplete = false
    /// The last bytes seen, to find "\r\n\r\n" across reads.
    private var tail: [UInt8] = []
    private var deadline: Scheduled<Void>?
    private var anonymousDeadline: Scheduled<Void>?

    init(gate: ConnectionGate, logger: Logger) {
        self.gate = gate
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !admitted else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        let connection = ObjectIdentifier(context.channel)
        guard gate.admit(connection, network: ConnectionGate.network(of: context.channel.remoteAddress)) else {
            logger.debug("connection from \(address) refused: over the cap of anonymous connections")
            context.close(promise: nil)
            return
        }
        admitted = true
        deadline = close(
            context, after: gate.limits.headerTimeout, unless: { [self] in headerComplete },
            "no whole request header within", address)
        anonymousDeadline = close(
            context, after: gate.limits.anonymousTimeout, unless: { [gate] in !gate.isAnonymous(connection) },
            "still anonymous after", address)
    }

    /// Closes the connection after `timeout` unless `done` says it has met the deadline.
    private func close(
        _ context: ChannelHandlerContext, after timeout: Duration, unless done: @escaping () -> Bool,
        _ why: String, _ address: String
    ) -> Scheduled<Void> {
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: TimeAmount(timeout)) { [logger] in
            guard !done() else { return }
            logger.debug("connection from \(address) closed: \(why) \(timeout)")
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !headerComplete {
            let buffer = unwrapInboundIn(data)
            scan(buffer.readableBytesView)
        }
        context.fireChannelRead(data)
    }

    /// Looks for the end of the first request header.
    private func scan(_ bytes: ByteBufferView) {
        let marker: [UInt8] = [13, 10, 13, 10]
        for byte in bytes {
            tail.append(byte)
            if tail.count > 4 { tail.removeFirst() }
            if tail == marker {
                headerComplete = true
                deadline?.cancel()
                deadline = nil
                return
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(context)
    }

    /// The connection is gone (or no longer watched): its deadlines and its count go.
    private func finish(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        anonymousDeadline?.cancel()
        anonymousDeadline = nil
        if admitted {
            admitted = false
            gate.closed(ObjectIdentifier(context.channel))
        }
    }
}
