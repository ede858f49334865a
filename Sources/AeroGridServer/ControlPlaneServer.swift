import AeroGridCluster
import AeroGridCore
import AeroGridFanout
import AeroGridKafka
public import AeroGridRuntime
import AeroGridSandbox
public import AeroGridStore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
public import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The control-plane server: the store, the bundles, every tenant's apps and the HTTP(S)
/// listeners, run together in one service group that SIGTERM and SIGINT stop in order
/// (the listeners first, then the apps, each with a last checkpoint).
public struct ControlPlaneServer: Sendable {
    public let configuration: ServerConfiguration
    /// Files that ship with the platform: the default seccomp profile and the Python SDK.
    public let defaultProfile: String
    public let defaultSDK: String
    public let logger: Logger
    /// `aerogrid dev` resets an app whose checkpoint the in-memory cluster no longer has.
    public var outOfRangePolicy: OutOfRangePolicy = .fail
    /// Static sites: the web console, the Excel add-in.
    public var sites: [StaticSite] = []

    public init(configuration: ServerConfiguration, defaultProfile: String, defaultSDK: String, logger: Logger) {
        self.configuration = configuration
        self.defaultProfile = defaultProfile
        self.defaultSDK = defaultSDK
        self.logger = logger
    }

    /// The operator token the first start creates, or `AEROGRID_OPERATOR_TOKEN`'s. Returns
    /// the secret when one was just made (to be shown once), nil otherwise.
    public static func bootstrapOperator(writes: ControlWrites, fromEnvironment: String?) async throws -> String? {
        let store = writes.store
        if let given = fromEnvironment {
            guard TokenSecret.isWellFormed(given) else {
                throw AeroGridError(.invalidConfiguration, "AEROGRID_OPERATOR_TOKEN must be 32 to 256 characters of letters, digits, '_' and '-'")
            }
            let hash = TokenSecret.sha256Hex(given)
            if try await store.authenticate(secretSHA256: hash) == nil {
                let token = ControlChange.TokenFields(
                    id: TokenSecret.newID(), tenant: nil, name: "operator (from the environment)", role: Role.operator.rawValue, secretSha256: hash)
                do {
                    try await writes.submit(.createToken(token))
                } catch let error as APIError where error.status == .conflict {
                    // Another node of the cluster, given the same token, made it first.
                }
            }
            return nil
        }
        guard try await !store.hasOperatorToken() else { return nil }
        let (row, secret) = TokenSecret.issue(tenant: nil, name: "operator", role: .operator)
        try await writes.submit(.createToken(.init(row)))
        return secret
    }

    /// Runs until SIGTERM or SIGINT. `onListening` gets each listener's URL once bound.
    public func run(writes: ControlWrites, onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        Self.raiseOpenFileLimit(logger: logger)
        let store = writes.store
        let data = configuration.dataDirectory
        // Tenants made before each had a host uid of its own get one now.
        let range = configuration.hostUIDs
        let without = try await store.tenants().filter { !($0.hostUID.map(range.contains) ?? false) }.count
        if without > 0 {
            try await writes.submit(.assignHostUIDs(.init(low: range.lowerBound, high: range.upperBound)))
            logger.info("gave \(without) tenants a host uid of their own from \(range)")
        }
        let bundles = try BundleStore(directory: "\(data)/bundles", keepsArchives: configuration.cluster != nil)
        try await bundles.adoptSharedBundles(store: store)
        let profile = try CompiledProfile.load(path: configuration.profile ?? defaultProfile)
        let quotas = profile.quotaDefaults
        let limits = CgroupLimits(
            memoryBytes: configuration.limits.memoryBytes ?? quotas.memoryBytes, cpus: configuration.limits.cpus ?? quotas.cpus,
            pids: configuration.limits.pids ?? quotas.pids)
        let kafka = KafkaConfiguration(bootstrapServers: configuration.kafkaBootstrap, properties: configuration.kafkaProperties)
        var defaults = RuntimeDefaults(kafka: kafka, profile: profile, sdkPath: configuration.sdk ?? defaultSDK, limits: limits)
        defaults.outOfRangePolicy = outOfRangePolicy
        defaults.appLimits = configuration.appLimits
        if let cluster = configuration.cluster {
            let placement = try Placement(settings: cluster, kafka: kafka, logger: logger)
            try await placement.join()
            defaults.cluster = ClusterApps(
                placement: placement, nodeID: cluster.nodeID, changelogTopic: cluster.topics.changelog,
                changelogRetentionBytes: cluster.changelogRetentionBytes,
                producer: try ClusterTopics.producer(kafka, logger: logger, extra: ["linger.ms": "2", "message.timeout.ms": "30000"]))
        }
        let supervisor = AppSupervisor(store: store, bundles: bundles, defaults: defaults, logger: logger)
        let planner = AppPlanner(
            store: store,
            appDefaults: AppQuota(
                memoryBytes: limits.memoryBytes ?? 256 << 20, cpus: limits.cpus ?? 1, pids: limits.pids ?? 64, gridRows: configuration.appLimits.gridRows))
        let sessions = Sessions()
        var fetcher: BundleFetcher?
        var auditTopic: AuditTopic?
        if let cluster = configuration.cluster {
            let log = try BundleLog(kafka: kafka, topic: cluster.topics.bundles, logger: logger)
            fetcher = BundleFetcher(bundles: bundles, log: log, store: store, nodeID: cluster.nodeID, logger: logger)
            auditTopic = try AuditTopic(kafka: kafka, topic: cluster.topics.audit, store: store, nodeID: cluster.nodeID, logger: logger)
        }
        // From here on every write applied to the view, taken here or by another node, acts
        // on the runners and sessions; then every app that should run, runs: from its checkpoint.
        writes.effects.attach(
            .init(supervisor: supervisor, sessions: sessions, bundles: bundles, planner: planner, fetcher: fetcher))
        if let cluster = configuration.cluster {
            // Where the other nodes reach this one, for the bundles it keeps.
            try await writes.submit(.nodeHello(.init(nodeId: cluster.nodeID, advertisedUrl: cluster.advertisedURL)))
            await fetcher?.ensureAll()
        }
        await supervisor.reconcile(store: store, planner: planner)
        let readiness = KafkaReadiness(configuration: kafka, logger: logger)
        let registry = supervisor.grids
        // On a node of a cluster, the grids of an app that runs elsewhere come from a replica
        // of its changelog, made when someone here asks for them.
        let replicas = defaults.cluster.map { cluster in
            GridReplicas(
                kafka: kafka, topic: cluster.changelogTopic, placement: cluster.placement, store: store, logger: logger
            ) { [changes = supervisor.changes] app in changes.announce(app, by: .runtime) }
        }
        let hub = FanoutHub { tenant, app in registry.grids(tenant: tenant, app: app) ?? replicas?.grids(tenant: tenant, app: app) }
        let gate = ConnectionGate(limits: configuration.connections)
        // Built in dependency order: the app service, discovery (which hears its changes),
        // the stream (which uses discovery), then the routes (whose metrics count the stream).
        // On a node of a cluster: what the others say of the apps they run, and what this
        // one says of its own.
        let nodeStatus = try configuration.cluster.map { cluster in
            NodeStatus(
                nodeID: cluster.nodeID, topic: cluster.topics.status, kafka: kafka, producer: try ClusterTopics.producer(kafka, logger: logger),
                logger: logger)
        }
        var apps = AppService(writes: writes, bundles: bundles, supervisor: supervisor, planner: planner, fetcher: fetcher, replicas: replicas)
        if let cluster = configuration.cluster, let nodeStatus { apps.cluster = (cluster.nodeID, nodeStatus) }
        // The feeds follow their app's runner as the supervisor and the API announce changes.
        supervisor.changes.listen { app, _ in
            hub.refresh(tenant: app.tenant, app: app.name)
            nodeStatus?.changed()
        }
        let watcher = AppWatcher(apps: apps)
        let gateway = StreamGateway(
            store: store, hub: hub, watcher: watcher, planner: planner, gate: gate, sessions: sessions,
            limits: configuration.stream, logger: logger)
        let routes = APIRouter(
            apps: apps, metrics: ServerMetrics(gate: gate, hub: hub), stream: { gateway.stats }, sites: sites, gate: gate,
            sessions: sessions, hostUIDs: configuration.hostUIDs, bodyTimeout: configuration.connections.bodyTimeout, auditTopic: auditTopic
        ) {
            // Anyone may ask: the answer names what is not ready, never an address or an error text.
            do { try await store.ping() } catch { return "the store does not answer" }
            return await readiness.isReady() ? nil : "Kafka does not answer"
        }
        let tls = try configuration.tls.map(Self.tlsConfiguration)

        // Shut down in reverse: the listeners first, then the apps.
        var services: [any Service] = [
            SupervisorService(
                supervisor: supervisor, store: store, planner: planner, watcher: watcher, placement: defaults.cluster?.placement, fetcher: fetcher,
                nodeStatus: nodeStatus,
                sweepReplicas: {
                    replicas?.sweep(
                        idle: .seconds(30), watched: { hub.watches(tenant: $0.tenant, app: $0.name) },
                        runsHere: { registry.grids(tenant: $0.tenant, app: $0.name) != nil })
                })
        ]
        // Stopped before the apps, after the listeners: no write applied once they are gone.
        if configuration.cluster != nil { services.append(ControlLogService(writes: writes, auditTopic: auditTopic)) }
        let listeners: [(ServerConfiguration.Listener, Bool)] =
            [(configuration.listen, configuration.tls != nil)] + (configuration.httpListen.map { [($0, false)] } ?? [])
        let http1 = HTTP1Channel.Configuration(idleTimeout: TimeAmount(configuration.connections.idleTimeout))
        for (listener, secure) in listeners {
            // HTTP/1 with the stream's WebSocket upgrade, behind the connection gate (after
            // TLS when configured, so the gate sees the first request's plaintext).
            let server = HTTPServerBuilder { responder in
                let http = HTTP1WebSocketUpgradeChannel(
                    responder: responder, configuration: .init(http1: http1, ws: gateway.webSocketConfiguration)
                ) { request, channel, _ in
                    gateway.shouldUpgrade(request, channel: channel)
                }
                let guarded = GuardedChannel(base: http, gate: gate)
                if secure, let tls { return try TLSChannel(guarded, tlsConfiguration: tls) }
                return guarded
            }
            let url = "\(secure ? "https" : "http")://\(listener.host):\(listener.port)"
            services.append(
                Application(
                    router: routes.makeRouter(), server: server,
                    configuration: ApplicationConfiguration(address: .hostname(listener.host, port: listener.port), serverName: "aerogrid"),
                    onServerRunning: { _ in onListening(url) }, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// TLS 1.2 and 1.3 only, with forward-secret AEAD ciphers (the "intermediate" set):
    /// BoringSSL would otherwise accept TLS 1.0 and 1.1.
    static func tlsConfiguration(_ tls: ServerConfiguration.TLS) throws -> TLSConfiguration {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            configuration.cipherSuites = [
                "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
            ].joined(separator: ":")
            return configuration
        } catch {
            throw AeroGridError(.invalidConfiguration, "cannot load the TLS certificate \(tls.certificate) and key \(tls.key): \(error)")
        }
    }

    /// Raises the soft limit on open files to the hard one: every client connection and
    /// every app (a socket, two pipes, a pidfd) takes descriptors, and the soft default
    /// (often 1,024) would be reached long before the connection caps are.
    static func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { limit.rlim_cur = before }
        }
        logger.info("open files limit: \(limit.rlim_cur) (was \(before); hard limit \(limit.rlim_max))")
    }
}

/// The reconcile loop: every few seconds the runners are driven toward the stored
/// desired states (what the API changes is applied at once; this catches the rest). On a
/// node of a cluster it also follows the placement: apps start as their slots come and
/// stop as they go. At shutdown it stops every app, each with a last checkpoint (or its
/// changelog's release), and then leaves the placement group at once.
struct SupervisorService: Service {
    let supervisor: AppSupervisor
    let store: Store
    let planner: AppPlanner
    let watcher: AppWatcher
    let placement: Placement?
    /// On a node of a cluster: the bundles of apps deployed through other nodes.
    let fetcher: BundleFetcher?
    /// On a node of a cluster: the status topic, written and read while the node runs.
    let nodeStatus: NodeStatus?
    /// Stops the grid replicas nobody watches any more.
    let sweepReplicas: @Sendable () -> Void

    func run() async throws {
        let watching = Task { await watcher.run() }
        let placing = Task { [supervisor, store, planner, fetcher] in
            await placement?.follow { change in
                switch change {
                case .gained:
                    await fetcher?.ensureAll()
                    await supervisor.reconcile(store: store, planner: planner)
                case .revoked(let slots): await supervisor.release(slots: slots)
                case .lost(let slots): await supervisor.abandon(slots: slots)
                }
            }
        }
        let publishing = Task { [supervisor] in await nodeStatus?.publish { await supervisor.runningApps() } }
        let hearing = Task { [supervisor] in await nodeStatus?.follow { app in supervisor.changes.announce(app, by: .runtime) } }
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(5))
                await fetcher?.ensureAll()
                await supervisor.reconcile(store: store, planner: planner)
                sweepReplicas()
            }
        }
        watching.cancel()
        placing.cancel()
        await placing.value
        await supervisor.stopAll()
        await placement?.leave()
        // The last status record says this node runs nothing.
        publishing.cancel()
        nodeStatus?.changed()
        await publishing.value
        hearing.cancel()
    }
}

/// On a node of a cluster: reads the cluster's audit topic, and stops reading it and the
/// config log at shutdown (reading the log began before the server, with the first write).
struct ControlLogService: Service {
    let writes: ControlWrites
    let auditTopic: AuditTopic?

    func run() async throws {
        let auditing = Task { await auditTopic?.follow() }
        try? await gracefulShutdown()
        auditing.cancel()
        await auditing.value
        await writes.stopFollowing()
    }
}

/// Whether Kafka answers, asked at most every few seconds (readiness probes are frequent)
/// and by one probe at a time: concurrent callers wait for the probe in flight, so a slow or
/// unreachable cluster never costs more than one admin client.
final class KafkaReadiness: Sendable {
    private let configuration: KafkaConfiguration
    private let logger: Logger
    private struct State {
        var last: (at: ContinuousClock.Instant, ready: Bool)?
        var probe: Task<Bool, Never>?
    }
    private let state = Mutex(State())

    init(configuration: KafkaConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func isReady() async -> Bool {
        // nil: the last answer is recent enough to give again.
        let probe: Task<Bool, Never>? = state.withLock { state in
            if let last = state.last, ContinuousClock.now - last.at < .seconds(5) { return nil }
            if let probe = state.probe { return probe }
            let probe = Task { await self.ask() }
            state.probe = probe
            return probe
        }
        guard let probe else { return state.withLock { $0.last?.ready ?? false } }
        return await probe.value
    }

    private func ask() async -> Bool {
        var ready = true
        do {
            let admin = try KafkaAdmin(configuration: configuration, logger: logger)
            _ = try await admin.listTopics(timeout: .seconds(2))
        } catch {
            ready = false
            // The details are for the operator's log, not for whoever asked.
            let was = state.withLock { $0.last?.ready }
            if was != false { logger.warning("not ready: Kafka at \(configuration.bootstrapServers) does not answer: \(error)") }
        }
        state.withLock { state in
            state.last = (.now, ready)
            state.probe = nil
        }
        return ready
    }
}
