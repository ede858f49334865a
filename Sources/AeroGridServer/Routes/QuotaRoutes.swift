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
            // Checked here, so a bad value is refused before it is written; merged where it is
            // applied, so two changes to different values both hold.
            _ = try QuotaJSON.merge(change, into: tenant.quota)
            try await apps.writes.submit(.setTenantQuota(.init(name: tenant.name, quota: .init(change))))
            let quota = try await tenantQuota(tenant.name)
            let stored = try await planner.tenant(tenant.name).quota
            try await auditor.record(principal, tenant: tenant, "quota.set", target: tenant.name, context, outcome: "ok: \(stored)")
            return json(quota)
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
            try await apps.writes.submit(.setTenantACL(.init(name: tenant.name, topics: acl.rules)))
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
        // Merged, checked and written where it is applied, with the tenant's quota and other
        // apps as they are then: two changes at once cannot pass the tenant's quota together.
        // A running app gets its new cgroup limits as it is applied.
        try await apps.writes.submit(
            .setAppQuota(.init(tenant: tenant, name: stored.name, quota: .init(change), appDefaults: .init(planner.appDefaults))))
        let app = try await apps.app(tenant, stored.name)
        let quota = planner.appQuota(app)
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
