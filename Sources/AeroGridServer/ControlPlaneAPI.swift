import AeroGridCore
import AeroGridRuntime
import AeroGridSandbox
public import AeroGridStore
import Foundation
public import Hummingbird
import Logging
import Synchronization
import ServiceLifecycle

/// The REST API under `/api/v1` (see docs/api.md and Resources/openapi.json): tenants,
/// tokens, apps and their logs and grids, the audit, health. Every tenant route acts only
/// on the caller's tenant: another tenant's app is "not found", never "forbidden".
public struct ControlPlaneAPI: Sendable {
    let store: Store
    let bundles: BundleStore
    let supervisor: AppSupervisor
    let planner: AppPlanner
    let metrics: ServerMetrics
    let stream: @Sendable () -> (connections: Int, subscriptions: Int, blocked: Int)
    let sites: [StaticSite]
    /// Open connections (anonymous, and per tenant), and the long-lived sessions that a
    /// revoked token or a deleted tenant ends.
    let gate: ConnectionGate?
    let sessions: Sessions
    /// Each new tenant gets a host uid of its own from this range.
    let hostUIDs: ClosedRange<UInt32>
    /// How long a request body may take to arrive.
    let bodyTimeout: Duration
    /// Whole-grid reads in progress per tenant.
    let gridReads = GridReads()
    let readiness: @Sendable () async -> String?
    /// Told (tenant, app) after a deploy, start, stop or restart, so the stream's discovery
    /// has an event for it even when the app ends as it was (a stop and a start between
    /// two of its comparisons).
    let changed: @Sendable (String, String) -> Void

    /// `readiness` answers nil when ready, else what is not.
    init(store: Store, bundles: BundleStore, supervisor: AppSupervisor, planner: AppPlanner, metrics: ServerMetrics,
         stream: @escaping @Sendable () -> (connections: Int, subscriptions: Int, blocked: Int) = { (0, 0, 0) },
         sites: [StaticSite] = [], gate: ConnectionGate? = nil, sessions: Sessions = Sessions(),
         hostUIDs: ClosedRange<UInt32> = ServerConfiguration.defaultHostUIDs, bodyTimeout: Duration = .seconds(120),
         changed: @escaping @Sendable (String, String) -> Void = { _, _ in },
         readiness: @escaping @Sendable () async -> String?) {
        self.stream = stream
        self.gate = gate
        self.sessions = sessions
        self.hostUIDs = hostUIDs
        self.bodyTimeout = bodyTimeout
        self.changed = changed
        self.sites = sites
        self.store = store
        self.bundles = bundles
        self.supervisor = supervisor
        self.planner = planner
        self.metrics = metrics
        self.readiness = readiness
    }

    public func makeRouter() -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: RequestCountingMiddleware(metrics: metrics))
        router.add(middleware: StaticSitesMiddleware(sites: sites))
        router.get("healthz") { _, _ in JSONResponse.make(["status": "ok"]) }
        router.get("readyz") { _, _ in
            if let problem = await readiness() { throw APIError(.serviceUnavailable, "not_ready", problem) }
            return JSONResponse.make(["status": "ready"])
        }
        router.get("api/v1/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
        router.group("metrics").add(middleware: AuthMiddleware(store: store, gate: gate, planner: planner)).get { _, context in
            _ = try context.requireOperator()
            let text = await metrics.scrape(supervisor, stream: stream())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        let api = router.group("api/v1").add(middleware: AuthMiddleware(store: store, gate: gate, planner: planner))
        addTenantRoutes(api)
        addQuotaRoutes(api)
        addTokenRoutes(api)
        addAppRoutes(api)
        api.get("audit") { request, context in
            let principal = try context.principal ?? { throw APIError.unauthorized("a bearer token is required") }()
            let limit = try queryInt(request, "limit", default: 100, range: 1...1000)
            let tenantID: String?
            switch principal.role {
            case .operator: tenantID = nil
            case .admin: tenantID = principal.tenantID ?? "none"
            default: throw APIError.forbidden("role \(principal.role.rawValue) may not read the audit log; it needs admin or operator")
            }
            // By the tenant's id: a tenant reads what happened to it, never to a namesake.
            let entries = try await store.auditEntries(tenantID: tenantID, limit: limit).map { entry -> [String: Any] in
                ["id": entry.id, "time": JSONResponse.time(entry.time), "tenant": entry.tenant ?? NSNull(), "tenant_id": entry.tenantID ?? NSNull(), "actor": entry.actor,
                 "action": entry.action, "target": entry.target, "source": entry.source, "outcome": entry.outcome]
            }
            return JSONResponse.make(["entries": entries])
        }
        return router
    }

    // MARK: Tenants

    private func addTenantRoutes(_ api: RouterGroup<APIContext>) {
        api.post("tenants") { request, context in
            let principal = try context.requireOperator()
            let body = try await jsonObject(request, context: context, timeout: bodyTimeout)
            let name = try validName(body["name"], kind: "tenant name")
            let topics = try body["topics"].map { try TopicACL.validated($0) }
            let (token, secret) = TokenSecret.issue(tenant: name, name: "admin", role: .admin)
            let tenant: TenantRecord
            do {
                tenant = try await store.createTenant(name, firstToken: token, topics: topics?.json, hostUIDs: hostUIDs)
            } catch StoreConflict.tenantExists {
                throw APIError.conflict("tenant '\(name)' already exists")
            } catch StoreConflict.nameRetired {
                throw APIError(.conflict, "name_retired",
                               "tenant name '\(name)' belonged to a deleted tenant; names are never given out again (its topics and audit stay its own): choose another")
            } catch StoreConflict.noHostUID(let range) {
                throw APIError(.serviceUnavailable, "no_host_uid",
                               "every host uid of [sandbox] host_uids (\(range.lowerBound)-\(range.upperBound)) is taken; an operator must widen the range")
            }
            try await audit(principal, tenant: tenant, "tenant.create", target: name, context)
            return JSONResponse.make(
                ["tenant": tenantJSON(tenant), "admin_token": newTokenJSON(token, secret: secret)], status: .created)
        }
        api.get("tenants") { _, context in
            _ = try context.requireOperator()
            return JSONResponse.make(["tenants": try await store.tenants().map(tenantJSON)])
        }
        // A tenant whose admins lost their tokens gets a new admin token from an operator.
        api.post("tenants/:tenant/tokens") { _, context in
            let principal = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            guard let tenant = try await store.tenant(name) else { throw APIError.notFound("no tenant '\(name)'") }
            let (token, secret) = TokenSecret.issue(tenant: name, name: "admin", role: .admin)
            try await store.createToken(token)
            try await audit(principal, tenant: tenant, "token.create", target: token.id, context)
            return JSONResponse.make(newTokenJSON(token, secret: secret), status: .created)
        }
        api.get("tenants/:tenant") { _, context in
            _ = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            guard let tenant = try await store.tenant(name) else { throw APIError.notFound("no tenant '\(name)'") }
            return JSONResponse.make(tenantJSON(tenant))
        }
        api.delete("tenants/:tenant") { _, context in
            let principal = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            guard let tenant = try await store.tenant(name) else { throw APIError.notFound("no tenant '\(name)'") }
            let apps = try await store.apps(tenant: name).map(\.name)
            for app in apps {
                await supervisor.remove(tenant: name, name: app)
            }
            try await store.deleteTenant(name)
            // Its streams and followed logs end now, not at their next request.
            sessions.endTenant(tenant.id)
            // Its apps' cgroups are gone (any leaf left, empty, goes now); its own directory too.
            if let hierarchy = Sandbox.cgroups.hierarchy {
                for app in apps { if let leaf = try? hierarchy.group([name, app]) { try? leaf.remove() } }
                if let group = try? hierarchy.group([name]) { try? group.remove() }
            }
            bundles.removeUnused(keeping: try await store.bundlesInUse())
            try await audit(principal, tenant: tenant, "tenant.delete", target: name, context)
            return Response(status: .noContent)
        }
    }

    // MARK: Quotas and topic ACLs (operator)

    private func addQuotaRoutes(_ api: RouterGroup<APIContext>) {
        api.get("tenants/:tenant/quota") { _, context in
            _ = try context.requireOperator()
            return JSONResponse.make(try await tenantQuotaJSON(try context.parameters.require("tenant")))
        }
        api.put("tenants/:tenant/quota") { request, context in
            let principal = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            let tenant = try await planner.tenant(name)
            let merged = try QuotaJSON.merge(try await jsonObject(request, context: context, timeout: bodyTimeout), into: tenant.quota, keys: QuotaJSON.tenantKeys)
            try await store.setTenantQuota(name, json: merged)
            try await audit(principal, tenant: tenant, "quota.set", target: name, context, outcome: "ok: \(merged)")
            return JSONResponse.make(try await tenantQuotaJSON(name))
        }
        api.get("tenants/:tenant/apps/:app/quota") { _, context in
            _ = try context.requireOperator()
            let app = try await app(try context.parameters.require("tenant"), context)
            return JSONResponse.make(appQuotaJSON(planner.appQuota(app)))
        }
        api.put("tenants/:tenant/apps/:app/quota") { request, context in
            let principal = try context.requireOperator()
            let tenant = try context.parameters.require("tenant")
            let record = try await planner.tenant(tenant)
            let stored = try await app(tenant, context)
            // As text: the transaction below runs it, and a dictionary of Any cannot be sent there.
            let body = QuotaJSON.encode(try await jsonObject(request, context: context, timeout: bodyTimeout))
            let limits = QuotaJSON.tenant(record.quota)
            // Merged, checked and written in one transaction with the tenant's other apps as
            // they are then: two changes at once cannot pass the tenant's quota together.
            let changed = try await store.changeApp(tenant: tenant, name: stored.name) { [planner] app, all in
                let merged = try QuotaJSON.merge(QuotaJSON.decode(body), into: app.quota, keys: QuotaJSON.appKeys)
                let quota = QuotaJSON.app(merged, defaults: planner.appDefaults)
                try planner.check(quota, within: limits, tenant: tenant)
                if app.desiredState == "running" { try planner.admit(app, quota: quota, within: limits, apps: all) }
                return (app.desiredState, merged)
            }
            guard let app = changed else { throw APIError.notFound("no app '\(stored.name)'") }
            let merged = app.quota
            let quota = planner.appQuota(app)
            // A running app gets its new cgroup limits now; grid rows count from its next start.
            do {
                try await supervisor.updateLimits(tenant: tenant, name: app.name, quota.cgroupLimits)
            } catch let error as SandboxError {
                throw APIError(.internalServerError, "internal", "the quota is stored but the running app's cgroup refused it: \(error.message)")
            }
            try await audit(principal, tenant: record, "quota.set", target: app.name, context, outcome: "ok: \(merged)")
            return JSONResponse.make(appQuotaJSON(quota))
        }
        api.get("tenants/:tenant/acl") { _, context in
            _ = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            let tenant = try await planner.tenant(name)
            return JSONResponse.make(["topics": TopicACL.stored(tenant.topics, tenant: name).rules])
        }
        api.put("tenants/:tenant/acl") { request, context in
            let principal = try context.requireOperator()
            let name = try context.parameters.require("tenant")
            let tenant = try await planner.tenant(name)
            let acl = try TopicACL.validated(try await jsonObject(request, context: context, timeout: bodyTimeout)["topics"])
            try await store.setTenantTopics(name, json: acl.json)
            supervisor.topicRules.set(name, acl)
            try await audit(principal, tenant: tenant, "acl.set", target: name, context, outcome: "ok: \(acl.rules.joined(separator: " "))")
            return JSONResponse.make(["topics": acl.rules])
        }
        api.get("quota") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            let record = try await planner.tenant(tenant)
            return JSONResponse.make(["quota": try await tenantQuotaJSON(tenant), "topics": TopicACL.stored(record.topics, tenant: tenant).rules])
        }
    }

    private func tenantQuotaJSON(_ tenant: String) async throws -> [String: Any] {
        let quota = try await planner.tenantQuota(tenant)
        let used = try await planner.used(tenant: tenant)
        return ["max_apps": quota.maxApps, "memory_bytes": quota.memoryBytes, "cpus": quota.cpus, "max_connections": quota.maxConnections, "max_subscriptions": quota.maxSubscriptions,
                "used": ["apps": used.apps, "running_apps": used.running, "memory_bytes": used.memoryBytes, "cpus": used.cpus]]
    }

    // MARK: Tokens

    private func addTokenRoutes(_ api: RouterGroup<APIContext>) {
        api.post("tokens") { request, context in
            let (tenant, principal) = try context.requireTenant(.admin)
            let body = try await jsonObject(request, context: context, timeout: bodyTimeout)
            guard let name = body["name"] as? String, (1...64).contains(name.utf8.count) else {
                throw APIError.badRequest("\"name\" must be a string of 1 to 64 bytes naming the token")
            }
            guard let roleText = body["role"] as? String, let role = Role(rawValue: roleText), role != .operator else {
                throw APIError.badRequest("\"role\" must be one of admin, developer, viewer")
            }
            let (token, secret) = TokenSecret.issue(tenant: tenant, name: name, role: role)
            try await store.createToken(token)
            try await audit(principal, "token.create", target: token.id, context)
            return JSONResponse.make(newTokenJSON(token, secret: secret), status: .created)
        }
        api.get("tokens") { _, context in
            let (tenant, _) = try context.requireTenant(.admin)
            return JSONResponse.make(["tokens": try await store.tokens(tenant: tenant).map(tokenJSON)])
        }
        api.delete("tokens/:id") { _, context in
            let (tenant, principal) = try context.requireTenant(.admin)
            let id = try context.parameters.require("id")
            guard try await store.revokeToken(id: id, tenant: tenant) else { throw APIError.notFound("no token '\(id.prefix(64))' in this tenant") }
            // Its open streams and followed logs end now, not at their next request.
            sessions.endToken(id)
            try await audit(principal, "token.revoke", target: id, context)
            return Response(status: .noContent)
        }
    }

    // MARK: Apps

    private func addAppRoutes(_ api: RouterGroup<APIContext>) {
        api.post("apps") { request, context in
            let (tenant, principal) = try context.requireTenant(.developer)
            let body: ByteBuffer
            do {
                body = try await collect(request, upTo: context.maxUploadSize, what: "the bundle")
            } catch let error as APIError where error.status == .contentTooLarge {
                throw APIError.tooLarge("the bundle is larger than \(bundles.limits.maxUploadBytes >> 20) MiB, the limit")
            }
            let record = try await planner.tenant(tenant)
            guard let uid = record.hostUID else { throw APIError(.serviceUnavailable, "no_host_uid", "tenant \(tenant) has no host uid yet; try again") }
            let stored: StoredBundle
            do {
                stored = try bundles.store(Data(buffer: body), owner: BundleOwner(tenantID: record.id, uid: uid))
            } catch let error as BundleRefused {
                try await audit(principal, "app.deploy", target: "?", context, outcome: "refused: \(error.message)")
                throw error.tooLarge ? APIError.tooLarge(error.message) : APIError.invalidBundle(error.message)
            }
            // Kept from the bundle clean-up until the app's record names it.
            defer { bundles.release(stored) }
            let manifest = stored.manifest
            let quota = QuotaJSON.tenant(record.quota)
            let app: AppRecord
            let created: Bool
            do {
                // Counted and inserted in one transaction: concurrent deploys cannot pass max_apps together.
                (app, created) = try await store.deployApp(
                    tenant: tenant, name: manifest.name, bundleDigest: stored.digest, entrypoint: manifest.entrypoint, runtime: manifest.runtime,
                    maxApps: quota.maxApps)
            } catch StoreConflict.tooManyApps(let count, let limit) {
                bundles.removeUnused(keeping: try await store.bundlesInUse())
                throw APIError.overQuota("tenant \(tenant) has \(count) apps, its quota (max_apps \(limit)); delete one first")
            }
            // A running app moves to the new version at once.
            if app.desiredState == "running" {
                let plan = try await planner.plan(app)
                await supervisor.stop(tenant: tenant, name: app.name)
                await supervisor.start(app, plan: plan)
            }
            changed(tenant, app.name)
            bundles.removeUnused(keeping: try await store.bundlesInUse())
            try await audit(principal, "app.deploy", target: app.name, context, outcome: "ok: version \(app.version)")
            return JSONResponse.make(await appJSON(app), status: created ? .created : .ok)
        }
        api.get("apps") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            var apps: [[String: Any]] = []
            for app in try await store.apps(tenant: tenant) { apps.append(await appJSON(app)) }
            return JSONResponse.make(["apps": apps])
        }
        api.get("apps/:app") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            return JSONResponse.make(await appJSON(try await app(tenant, context)))
        }
        api.post("apps/:app/start") { _, context in
            try await run(context, action: "start", restart: false)
        }
        api.post("apps/:app/stop") { _, context in
            let (tenant, principal) = try context.requireTenant(.developer)
            let app = try await app(tenant, context)
            try await store.setDesiredState(tenant: tenant, name: app.name, "stopped")
            await supervisor.stop(tenant: tenant, name: app.name)
            changed(tenant, app.name)
            try await audit(principal, "app.stop", target: app.name, context)
            return JSONResponse.make(await appJSON(try await self.app(tenant, context)))
        }
        api.post("apps/:app/restart") { _, context in
            try await run(context, action: "restart", restart: true)
        }
        api.delete("apps/:app") { _, context in
            let (tenant, principal) = try context.requireTenant(.developer)
            let app = try await app(tenant, context)
            await supervisor.remove(tenant: tenant, name: app.name)
            try await store.deleteApp(tenant: tenant, name: app.name)
            bundles.removeUnused(keeping: try await store.bundlesInUse())
            try await audit(principal, "app.delete", target: app.name, context)
            return Response(status: .noContent)
        }
        api.get("apps/:app/logs") { request, context in
            let (tenant, principal) = try context.requireTenant(.viewer)
            let app = try await app(tenant, context)
            let tail = try queryInt(request, "tail", default: 100, range: 1...10_000)
            let follow = try queryBool(request, "follow")
            let current = await supervisor.runner(tenant: tenant, name: app.name)?.log
            guard follow else { return JSONResponse.make(["lines": (current?.tail(tail) ?? []).map(logLineJSON)]) }
            let first = current?.tail(tail) ?? []
            let seen = current?.totalLines ?? 0
            // A session: revoking the token or deleting the tenant ends the follow at once.
            let ended = Mutex(false)
            let session = sessions.open(tokenID: principal.tokenID, tenantID: principal.tenantID) { _ in ended.withLock { $0 = true } }
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson"],
                body: ResponseBody { [sessions] writer in
                    defer { sessions.close(session) }
                    for line in first { try await writer.write(ndjson(logLineJSON(line))) }
                    var log = current
                    var seen = seen
                    // Ends when the client goes away (the write throws), the server stops, or
                    // the app is deleted. A start, restart or new version brings a new run
                    // with a log of its own: followed from its first line.
                    var checked = ContinuousClock.now
                    while !Task.isCancelled && !Task.isShuttingDownGracefully && !ended.withLock({ $0 }) {
                        if ContinuousClock.now - checked > .milliseconds(500) {
                            checked = .now
                            guard try await store.app(tenant: tenant, name: app.name) != nil else { break }
                            let now = await supervisor.runner(tenant: tenant, name: app.name)?.log
                            if now !== log {
                                log = now
                                seen = 0
                            }
                        }
                        if let log {
                            let (lines, total) = log.lines(after: seen)
                            seen = total
                            for line in lines { try await writer.write(ndjson(logLineJSON(line))) }
                        }
                        try await Task.sleep(for: .milliseconds(250))
                    }
                    try await writer.finish(nil)
                })
        }
        api.get("apps/:app/grids") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            let app = try await app(tenant, context)
            let grids = try await gridSnapshots(app)
            return JSONResponse.make(["grids": grids.keys.sorted().map { name -> [String: Any] in
                let grid = grids[name]!
                return ["name": name, "version": grid.version, "rows": grid.rows.count, "columns": grid.columns]
            }])
        }
        api.get("apps/:app/grids/:grid") { request, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            let app = try await app(tenant, context)
            let name = try context.parameters.require("grid")
            let format = request.uri.queryParameters["format"].map(String.init)
            guard format == nil || format == "json" || format == "csv" else {
                throw APIError.badRequest("format must be json or csv, not '\(format!)'")
            }
            // A slot per connection, held until it closes: the server holds the answer until the
            // client reads it, and nothing tells when that was short of the connection going.
            let tenantID = context.principal?.tenantID ?? tenant
            if let gate {
                guard gridReads.take(tenantID, connection: context.connection, gate: gate) else {
                    throw APIError(.tooManyRequests, "too_many_requests",
                                   "tenant \(tenant) has \(gridReads.limit) connections reading whole grids; close one, or try again later")
                }
            }
            let grids = try await gridSnapshots(app)
            guard let grid = grids[name] else { throw APIError.notFound("app '\(app.name)' has no grid '\(name)'") }
            let wantsCSV = format == "csv" || (format == nil && request.headers[.accept]?.contains("text/csv") == true)
            let answer = { (type: String, body: ByteBuffer) in
                Response(status: .ok, headers: [.contentType: type], body: ResponseBody(byteBuffer: body))
            }
            if wantsCSV { return answer("text/csv; charset=utf-8", ByteBuffer(string: grid.csv)) }
            // Written directly: JSONSerialization would turn a cell's 4.0 into 4.
            var json = JSONWriter(capacity: 128 + grid.rows.count * 64)
            json.raw("{\"columns\":")
            json.strings(grid.columns)
            json.raw(",\"epoch\":")
            json.number(grid.epoch)
            json.raw(",\"name\":")
            json.string(name)
            json.raw(",\"rows\":")
            json.rowsByKey(grid.rows)
            json.raw(",\"version\":")
            json.number(grid.version)
            json.raw("}")
            return answer("application/json; charset=utf-8", ByteBuffer(bytes: json.bytes))
        }
    }

    // MARK: Helpers

    /// Start (or restart) the app: within the tenant's quota, its desired state `running`.
    private func run(_ context: APIContext, action: String, restart: Bool) async throws -> Response {
        let (tenant, principal) = try context.requireTenant(.developer)
        let stored = try await app(tenant, context)
        let record = try await planner.tenant(tenant)
        let limits = QuotaJSON.tenant(record.quota)
        // Admitted and marked running in one transaction, against the tenant's apps as they
        // are then: concurrent starts cannot pass the tenant's memory or CPU together.
        let admitted = try await store.changeApp(tenant: tenant, name: stored.name) { [planner] app, all in
            try planner.admit(app, quota: planner.appQuota(app), within: limits, apps: all)
            return ("running", app.quota)
        }
        guard let app = admitted else { throw APIError.notFound("no app '\(stored.name)'") }
        let plan = planner.plan(app, tenant: record)
        if restart { await supervisor.stop(tenant: tenant, name: app.name) }
        await supervisor.start(app, plan: plan)
        changed(tenant, app.name)
        try await audit(principal, "app.\(action)", target: app.name, context)
        return JSONResponse.make(await appJSON(try await self.app(tenant, context)))
    }

    private func app(_ tenant: String, _ context: APIContext) async throws -> AppRecord {
        let name = try context.parameters.require("app")
        guard let app = try await store.app(tenant: tenant, name: name) else { throw APIError.notFound("no app '\(name.prefix(64))'") }
        return app
    }

    /// The app's grids: live from its runner, or from its last checkpoint when it has not
    /// run since the server started.
    private func gridSnapshots(_ app: AppRecord) async throws -> [String: GridSnapshotView] {
        var views: [String: GridSnapshotView] = [:]
        if let runner = await supervisor.runner(tenant: app.tenant, name: app.name) {
            for name in runner.grids.gridNames {
                guard let snapshot = runner.grids.snapshot(name) else { continue }
                // Restored from a checkpoint and not yet declared by the app's hello: the
                // columns are those the rows have.
                let columns = snapshot.grid.columns.isEmpty ? Self.columns(of: snapshot.grid.rows) : snapshot.grid.columns
                views[name] = GridSnapshotView(version: snapshot.grid.version, epoch: runner.grids.epoch, columns: columns, rows: snapshot.grid.rows)
            }
            return views
        }
        let checkpoint = try await store.loadCheckpoint(app: "\(app.tenant)/\(app.name)")
        for (name, rows) in checkpoint.grids {
            views[name] = GridSnapshotView(version: checkpoint.versions[name] ?? 0, epoch: checkpoint.epoch, columns: Self.columns(of: rows), rows: rows)
        }
        return views
    }

    private static func columns(of rows: [GridKey: GridRow]) -> [String] {
        var columns = Set<String>()
        for row in rows.values { columns.formUnion(row.keys) }
        return columns.sorted()
    }

    func appJSON(_ app: AppRecord) async -> [String: Any] {
        let view = await supervisor.view(app)
        let state: String
        if let status = view.status {
            state = view.failure != nil ? "crashed" : status.lifecycle.state.name
        } else {
            state = "created"
        }
        let crash = view.status?.lifecycle.lastCrash
        var usage: Any = NSNull()
        if let reading = view.usage {
            usage = ["cpu_seconds": Double(reading.cpuNanoseconds) / 1e9, "memory_bytes": reading.memoryBytes, "pids": reading.pids]
        }
        let quota = planner.appQuota(app)
        return [
            "quota": ["memory_bytes": quota.memoryBytes, "cpus": quota.cpus, "pids": quota.pids, "grid_rows": quota.gridRows],
            "name": app.name, "version": app.version, "bundle_digest": app.bundleDigest, "entrypoint": app.entrypoint,
            "runtime": app.runtime, "desired_state": app.desiredState, "state": state,
            "crash_reason": crash.map(\.code) ?? NSNull(), "last_crash": view.failure ?? crash?.description ?? NSNull(),
            "restarts": view.status?.lifecycle.restarts ?? 0, "records": view.records,
            "lag": view.lag.map { $0 as Any } ?? NSNull(), "usage": usage,
            "created_at": JSONResponse.time(app.createdAt), "updated_at": JSONResponse.time(app.updatedAt),
        ]
    }

    /// An entry for the caller's own tenant.
    private func audit(_ principal: Principal, _ action: String, target: String, _ context: APIContext, outcome: String = "ok") async throws {
        try await store.audit(tenant: principal.tenant, tenantID: principal.tenantID, actor: principal.tokenID, action: action, target: target,
                              source: context.source, outcome: outcome)
    }

    /// An entry about `tenant` (an operator's action on it).
    private func audit(_ principal: Principal, tenant: TenantRecord, _ action: String, target: String, _ context: APIContext,
                       outcome: String = "ok") async throws {
        try await store.audit(tenant: tenant.name, tenantID: tenant.id, actor: principal.tokenID, action: action, target: target,
                              source: context.source, outcome: outcome)
    }

    /// The request's body, at most `limit` bytes and within the body timeout.
    private func collect(_ request: Request, upTo limit: Int, what: String) async throws -> ByteBuffer {
        let timeout = bodyTimeout
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { [request] in
                var request = request
                do {
                    return try await request.collectBody(upTo: limit)
                } catch {
                    throw APIError.tooLarge("\(what) is larger than \(limit) bytes, the limit")
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let body = first else {
                throw APIError(.requestTimeout, "timeout", "\(what) did not arrive within \(timeout)")
            }
            return body
        }
    }

    private func jsonObject(_ request: Request, context: APIContext, timeout: Duration) async throws -> [String: Any] {
        let body = try await collect(request, upTo: 64 << 10, what: "the body")
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw APIError.badRequest("the body must be a JSON object")
        }
        return object
    }
}

/// A grid as the API shows it.
struct GridSnapshotView {
    let version: UInt64
    let epoch: Int64
    let columns: [String]
    let rows: [GridKey: GridRow]

    /// `key,<columns…>`, then one line per row in key order; RFC 4180 quoting. Our users
    /// open these in Excel, which runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a
    /// carriage return as a formula: such text (an app writes it, a record carries it) gets
    /// a leading `'`, which Excel shows as text. Numbers are written as numbers.
    var csv: String {
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        func text(_ value: String) -> String {
            guard let first = value.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) else { return value }
            return "'" + value
        }
        func cell(_ value: GridValue?) -> String {
            switch value {
            case .string(let string)?: text(string)
            case let other?: other.description
            case nil: ""
            }
        }
        func keyText(_ key: GridKey) -> String {
            switch key {
            case .string(let string): text(string)
            case .int(let number): String(number)
            }
        }
        var lines = [(["key"] + columns.map(text)).map(field).joined(separator: ",")]
        for key in rows.keys.sorted() {
            let row = rows[key]!
            lines.append(([keyText(key)] + columns.map { cell(row[$0]) }).map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}

private func appQuotaJSON(_ quota: AppQuota) -> [String: Any] {
    ["memory_bytes": quota.memoryBytes, "cpus": quota.cpus, "pids": quota.pids, "grid_rows": quota.gridRows]
}

private func tenantJSON(_ tenant: TenantRecord) -> [String: Any] {
    ["id": tenant.id, "name": tenant.name, "created_at": JSONResponse.time(tenant.createdAt), "apps": tenant.apps,
     "host_uid": tenant.hostUID.map { Int($0) as Any } ?? NSNull()]
}

private func newTokenJSON(_ token: Store.NewTokenRow, secret: String) -> [String: Any] {
    ["id": token.id, "name": token.name, "role": token.role, "tenant": token.tenant ?? NSNull(), "secret": secret,
     "created_at": JSONResponse.time(Date())]
}

private func tokenJSON(_ token: TokenRecord) -> [String: Any] {
    ["id": token.id, "name": token.name, "role": token.role, "tenant": token.tenant ?? NSNull(),
     "created_at": JSONResponse.time(token.createdAt), "last_used_at": JSONResponse.time(token.lastUsedAt),
     "revoked_at": JSONResponse.time(token.revokedAt)]
}

private func logLineJSON(_ line: AppLog.Line) -> [String: Any] {
    ["time": JSONResponse.time(line.time), "source": line.source, "level": line.level, "message": line.text]
}

private func ndjson(_ object: [String: Any]) -> ByteBuffer {
    var data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    data.append(UInt8(ascii: "\n"))
    return ByteBuffer(bytes: data)
}

private func validName(_ value: Any?, kind: String) throws -> String {
    guard let name = value as? String else { throw APIError.badRequest("\"name\" is required: the \(kind)") }
    if let problem = ResourceName.problem(with: name) { throw APIError.badRequest("\(kind) '\(name)' is not valid: \(problem)") }
    return name
}

private func queryInt(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
    guard let text = request.uri.queryParameters[Substring(name)] else { return value }
    guard let number = Int(text), range.contains(number) else {
        throw APIError.badRequest("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
    }
    return number
}

private func queryBool(_ request: Request, _ name: String) throws -> Bool {
    guard let text = request.uri.queryParameters[Substring(name)] else { return false }
    switch text {
    case "true", "1": return true
    case "false", "0": return false
    default: throw APIError.badRequest("\(name) must be true or false, not '\(text)'")
    }
}
