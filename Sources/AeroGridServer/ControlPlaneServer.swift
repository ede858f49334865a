import AeroGridCore
import AeroGridKafka
import AeroGridSandbox
public import AeroGridRuntime
public import AeroGridStore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import AeroGridFanout
import NIOSSL
public import Logging
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
    public static func bootstrapOperator(store: Store, fromEnvironment: String?) async throws -> String? {
        if let given = fromEnvironment {
            guard TokenSecret.isWellFormed(given) else {
                throw AeroGridError(.invalidConfiguration, "AEROGRID_OPERATOR_TOKEN must be 32 to 256 characters of letters, digits, '_' and '-'")
            }
            let hash = TokenSecret.sha256Hex(given)
            if try await store.authenticate(secretSHA256: hash) == nil {
                try await store.createToken(Store.NewTokenRow(id: TokenSecret.newID(), tenant: nil, name: "operator (from the environment)",
                                                              role: Role.operator.rawValue, secretSHA256: hash))
            }
            return nil
        }
        guard try await !store.hasOperatorToken() else { return nil }
        let (row, secret) = TokenSecret.issue(tenant: nil, name: "operator", role: .operator)
        try await store.createToken(row)
        return secret
    }

    /// Runs until SIGTERM or SIGINT. `onListening` gets each listener's URL once bound.
    public func run(store: Store, onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let data = configuration.dataDirectory
        let bundles = try BundleStore(directory: "\(data)/bundles")
        let profile = try CompiledProfile.load(path: configuration.profile ?? defaultProfile)
        let quotas = profile.quotaDefaults
        let limits = CgroupLimits(
            memoryBytes: configuration.limits.memoryBytes ?? quotas.memoryBytes, cpus: configuration.limits.cpus ?? quotas.cpus,
            pids: configuration.limits.pids ?? quotas.pids)
        let kafka = KafkaConfiguration(bootstrapServers: configuration.kafkaBootstrap, properties: configuration.kafkaProperties)
        var defaults = RuntimeDefaults(kafka: kafka, profile: profile, sdkPath: configuration.sdk ?? defaultSDK, limits: limits)
        defaults.outOfRangePolicy = outOfRangePolicy
        let supervisor = AppSupervisor(store: store, bundles: bundles, defaults: defaults, logger: logger)
        let planner = AppPlanner(store: store, appDefaults: AppQuota(
            memoryBytes: limits.memoryBytes ?? 256 << 20, cpus: limits.cpus ?? 1, pids: limits.pids ?? 64, gridRows: AppLimits().gridRows))
        // Every app that should run, runs: from its checkpoint.
        await supervisor.reconcile(store: store, planner: planner)
        let readiness = KafkaReadiness(configuration: kafka, logger: logger)
        let registry = supervisor.grids
        let hub = FanoutHub { tenant, app in registry.grids(tenant: tenant, app: app) }
        let gatewayBox = Mutex<StreamGateway?>(nil)
        let watcherBox = Mutex<AppWatcher?>(nil)
        let api = ControlPlaneAPI(
            store: store, bundles: bundles, supervisor: supervisor, planner: planner, metrics: ServerMetrics(),
            stream: { gatewayBox.withLock { $0 }?.stats ?? (0, 0, 0) }, sites: sites,
            changed: { tenant, app in watcherBox.withLock { $0 }?.touch(tenant: tenant, app: app) }
        ) {
            do { try await store.ping() } catch { return "the store does not answer: \(error)" }
            return await readiness.problem()
        }
        let watcher = AppWatcher(store: store, hub: hub) { app in await api.appJSON(app) }
        watcherBox.withLock { $0 = watcher }
        let gateway = StreamGateway(store: store, hub: hub, watcher: watcher, planner: planner, logger: logger)
        gatewayBox.withLock { $0 = gateway }

        // Shut down in reverse: the listeners first, then the apps.
        var services: [any Service] = [SupervisorService(supervisor: supervisor, store: store, planner: planner, watcher: watcher)]
        let listeners: [(ServerConfiguration.Listener, Bool)] =
            [(configuration.listen, configuration.tls != nil)] + (configuration.httpListen.map { [($0, false)] } ?? [])
        for (listener, secure) in listeners {
            // HTTP/1 with the stream's WebSocket upgrade, in TLS when configured.
            let http = HTTPServerBuilder.http1WebSocketUpgrade(configuration: gateway.upgradeConfiguration) { request, channel, _ in
                gateway.shouldUpgrade(request, channel: channel)
            }
            let server: HTTPServerBuilder
            if secure, let tls = configuration.tls {
                server = try .tls(http, tlsConfiguration: try Self.tlsConfiguration(tls))
            } else {
                server = http
            }
            let url = "\(secure ? "https" : "http")://\(listener.host):\(listener.port)"
            services.append(Application(
                router: api.makeRouter(), server: server,
                configuration: ApplicationConfiguration(address: .hostname(listener.host, port: listener.port), serverName: "aerogrid"),
                onServerRunning: { _ in onListening(url) }, logger: logger))
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    static func tlsConfiguration(_ tls: ServerConfiguration.TLS) throws -> TLSConfiguration {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        } catch {
            throw AeroGridError(.invalidConfiguration, "cannot load the TLS certificate \(tls.certificate) and key \(tls.key): \(error)")
        }
    }
}

/// The reconcile loop: every few seconds the runners are driven toward the stored
/// desired states (what the API changes is applied at once; this catches the rest). At
/// shutdown it stops every app, each with a last checkpoint.
struct SupervisorService: Service {
    let supervisor: AppSupervisor
    let store: Store
    let planner: AppPlanner
    let watcher: AppWatcher

    func run() async throws {
        let watching = Task { await watcher.run() }
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(5))
                await supervisor.reconcile(store: store, planner: planner)
            }
        }
        watching.cancel()
        await supervisor.stopAll()
    }
}

/// Whether Kafka answers, asked at most every few seconds (readiness probes are frequent).
final class KafkaReadiness: Sendable {
    private let configuration: KafkaConfiguration
    private let logger: Logger
    private let last = Mutex<(at: ContinuousClock.Instant, problem: String?)?>(nil)

    init(configuration: KafkaConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func problem() async -> String? {
        if let last = last.withLock({ $0 }), ContinuousClock.now - last.at < .seconds(5) { return last.problem }
        var problem: String?
        do {
            let admin = try KafkaAdmin(configuration: configuration, logger: logger)
            _ = try await admin.listTopics(timeout: .seconds(2))
        } catch {
            problem = "Kafka at \(configuration.bootstrapServers) does not answer: \(error)"
        }
        last.withLock { $0 = (.now, problem) }
        return problem
    }
}
