import AeroGridStore
import Hummingbird

/// The HTTP routes: the REST API under `/api/v1` (docs/api.md, and the OpenAPI document it
/// is checked against), health, metrics and the static sites, each resource's routes in a
/// collection of its own (Routes/). Every tenant route acts only on the caller's tenant.
struct APIRouter: Sendable {
    let apps: AppService
    let metrics: ServerMetrics
    /// The stream's counts, for the metrics.
    var stream: @Sendable () -> (connections: Int, subscriptions: Int, blocked: Int) = { (0, 0, 0) }
    var sites: [StaticSite] = []
    /// Open connections (anonymous, and per tenant); nil in tests without listeners.
    var gate: ConnectionGate?
    /// The long-lived sessions that a revoked token or a deleted tenant ends.
    var sessions = Sessions()
    var hostUIDs: ClosedRange<UInt32> = ServerConfiguration.defaultHostUIDs
    var bodyTimeout: Duration = .seconds(120)
    /// On a node of a cluster: the cluster's audit topic.
    var auditTopic: AuditTopic? = nil
    /// Whole-grid reads in progress per tenant, over every listener.
    let gridReads = GridReads()
    /// nil when ready, else what is not.
    let readiness: @Sendable () async -> String?

    func makeRouter() -> Router<APIContext> {
        let store = apps.store
        let bodies = RequestBodies(timeout: bodyTimeout)
        let auditor = Auditor(store: store, topic: auditTopic)
        let router = Router(context: APIContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: RequestCountingMiddleware(metrics: metrics))
        router.add(middleware: StaticSitesMiddleware(sites: sites))
        let auth = AuthMiddleware(store: store, gate: gate, planner: apps.planner)
        SystemRoutes(readiness: readiness, metrics: metrics, supervisor: apps.supervisor, stream: stream).register(on: router, auth: auth)
        PeerRoutes(store: store, bundles: apps.bundles, supervisor: apps.supervisor).register(on: router)
        let api = router.group("api/v1").add(middleware: auth)
        TenantRoutes(apps: apps, bodies: bodies, auditor: auditor, hostUIDs: hostUIDs).register(on: api)
        QuotaRoutes(apps: apps, bodies: bodies, auditor: auditor).register(on: api)
        TokenRoutes(writes: apps.writes, bodies: bodies, auditor: auditor).register(on: api)
        AppRoutes(apps: apps, bodies: bodies, auditor: auditor).register(on: api)
        LogRoutes(apps: apps, sessions: sessions).register(on: api)
        GridRoutes(apps: apps, gate: gate, gridReads: gridReads).register(on: api)
        AuditRoutes(store: store).register(on: api)
        return router
    }
}
