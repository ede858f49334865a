import AeroGridAPI
import AeroGridCore
import AeroGridStore
import Foundation
import Hummingbird

/// Quotas and topic ACLs: an operator reads and changes a tenant's and each app's; a
/// tenant reads its own.
struct QuotaRoutes: Sendable {
    let apps: AppService
    let bodies: RequestBodies
    let auditor: Auditor
    private var store: Store { apps.store }
    private var planner: AppPlanner { apps.planner }
    private var supervisor: AppSupervisor { apps.supervisor }

    func register(on api: RouterGroup<APIContext>) {
        api.get("tenants/:tenant/quota") { _, context in
            _ = try context.requireOperator()
            return json(try await tenantQuota(try context.parameters.require("tenant")))
        }
        api.put("tenants/:tenant/quota") { request, context in
            let principal = try context.requireOperator()
            let tenant = try await planner.tenant(try context.parameters.require("tenant"))
            let (update, reset) = try await change(Schemas.TenantQuotaUpdate.self, request)
            let change = QuotaJSON.Change(
                numbers: [
                    "max_apps": update.maxApps, "memory_bytes": update.memoryBytes, "max_connections": update.maxConnections,
                    "max_subscriptions": update.maxSubscriptions,
                ].compactMapValues { $0 },
                cpus: update.cpus, reset: reset)
            let merged = try QuotaJSON.merge(change, into: tenant.quota)
            try await store.setTenantQuota(tenant.name, json: merged)
            try await auditor.record(principal, tenant: tenant, "quota.set", target: tenant.name, context, outcome: "ok: \(merged)")
            return json(try await tenantQuota(tenant.name))
        }
        api.get("tenants/:tenant/apps/:app/quota") { _, context in
            _ = try context.requireOperator()
            let app = try await apps.app(try context.parameters.require("tenant"), try context.parameters.require("app"))
            return json(Schemas.AppQuota(planner.appQuota(app)))
        }
        api.put("tenants/:tenant/apps/:app/quota", use: setAppQuota)
        api.get("tenants/:tenant/acl") { _, context in
            _ = try context.requireOperator()
            let tenant = try await planner.tenant(try context.parameters.require("tenant"))
            return json(Schemas.TopicRules(topics: TopicACL.stored(tenant.topics, tenant: tenant.name).rules))
        }
        api.put("tenants/:tenant/acl") { request, context in
            let principal = try context.requireOperator()
            let tenant = try await planner.tenant(try context.parameters.require("tenant"))
            let acl = try TopicACL.validated(try await bodies.decode(Schemas.TopicRules.self, request).topics)
            try await store.setTenantTopics(tenant.name, json: acl.json)
            supervisor.topicRules.set(tenant.name, acl)
            try await auditor.record(principal, tenant: tenant, "acl.set", target: tenant.name, context, outcome: "ok: \(acl.rules.joined(separator: " "))")
            return json(Schemas.TopicRules(topics: acl.rules))
        }
        api.get("quota") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            let record = try await planner.tenant(tenant)
            return json(Schemas.OwnQuota(quota: try await tenantQuota(tenant), topics: TopicACL.stored(record.topics, tenant: tenant).rules))
        }
    }

    @Sendable private func setAppQuota(_ request: Request, _ context: APIContext) async throws -> Response {
        let principal = try context.requireOperator()
        let tenant = try context.parameters.require("tenant")
        let record = try await planner.tenant(tenant)
        let stored = try await apps.app(tenant, try context.parameters.require("app"))
        let (update, reset) = try await change(Schemas.AppQuotaUpdate.self, request)
        let change = QuotaJSON.Change(
            numbers: ["memory_bytes": update.memoryBytes, "pids": update.pids, "grid_rows": update.gridRows].compactMapValues { $0 },
            cpus: update.cpus, reset: reset)
        // Merged, checked and written in one transaction with the tenant's quota and other apps
        // as they are then: two changes at once cannot pass the tenant's quota together.
        let changed = try await store.changeApp(tenant: tenant, name: stored.name, at: Date()) { [planner] app, all, owner in
            let limits = QuotaJSON.tenant(owner.quota)
            let merged = try QuotaJSON.merge(change, into: app.quota)
            let quota = QuotaJSON.app(merged, defaults: planner.appDefaults)
            try planner.check(quota, within: limits, tenant: tenant)
            if app.desiredState == "running" { try planner.admit(app, quota: quota, within: limits, apps: all) }
            return (app.desiredState, merged)
        }
        guard let app = changed else { throw APIError.notFound("no app '\(stored.name)'") }
        // The app's quota is part of it as discovery describes it.
        supervisor.changes.announce(AppID(tenant: tenant, name: app.name), by: .api)
        let quota = planner.appQuota(app)
        // A running app gets its new cgroup limits now; grid rows count from its next start.
        do {
            try await supervisor.updateLimits(tenant: tenant, name: app.name, quota.cgroupLimits)
        } catch {
            // updateLimits throws only SandboxError.
            throw APIError(.internalServerError, ._internal, "the quota is stored but the running app's cgroup refused it: \(error.message)")
        }
        try await auditor.record(principal, tenant: record, "quota.set", target: app.name, context, outcome: "ok: \(app.quota)")
        return json(Schemas.AppQuota(quota))
    }

    /// A quota change as its schema, with the keys sent as `null` (reset to the default):
    /// the generated type cannot tell a null from a value left out.
    private func change<Update: Decodable>(_ type: Update.Type, _ request: Request) async throws -> (Update, Set<String>) {
        let body = try await bodies.collect(request, upTo: RequestBodies.jsonLimit, what: "the body")
        do {
            let update = try APIJSON.decode(type, from: body.readableBytesView)
            let sent = try APIJSON.decode([String: Sent?].self, from: body.readableBytesView)
            return (update, Set(sent.filter { $0.value == nil }.keys))
        } catch {
            throw APIError.badRequest(error.message)
        }
    }

    private func tenantQuota(_ tenant: String) async throws -> Schemas.TenantQuota {
        let quota = try await planner.tenantQuota(tenant)
        let used = try await planner.used(tenant: tenant)
        return Schemas.TenantQuota(
            maxApps: quota.maxApps, memoryBytes: Int(clamping: quota.memoryBytes), cpus: quota.cpus, maxConnections: quota.maxConnections,
            maxSubscriptions: quota.maxSubscriptions,
            used: .init(apps: used.apps, runningApps: used.running, memoryBytes: Int(clamping: used.memoryBytes), cpus: used.cpus))
    }
}

/// Any JSON value, of which only its presence counts.
private struct Sent: Decodable, Equatable {
    init(from decoder: any Decoder) throws {}
}
