import AeroGridAPI
import AeroGridCore
import AeroGridStore
import Foundation
import Hummingbird

/// Tenants (operator): create, list, read, delete, and a new admin token for one.
struct TenantRoutes: Sendable {
    let apps: AppService
    let bodies: RequestBodies
    let auditor: Auditor
    /// Each new tenant gets a host uid of its own from this range.
    let hostUIDs: ClosedRange<UInt32>
    private var store: Store { apps.store }

    func register(on api: RouterGroup<APIContext>) {
        api.post("tenants", use: create)
        api.get("tenants") { _, context in
            _ = try context.requireOperator()
            return json(Schemas.TenantList(tenants: try await store.tenants().map(Schemas.Tenant.init)))
        }
        // A tenant whose admins lost their tokens gets a new admin token from an operator.
        api.post("tenants/:tenant/tokens") { _, context in
            let principal = try context.requireOperator()
            let tenant = try await tenant(context)
            let (token, secret) = TokenSecret.issue(tenant: tenant.name, name: "admin", role: .admin)
            try refuseRepeated(try await apps.writes.submit(.createToken(.init(token))), what: "the token")
            try await auditor.record(principal, tenant: tenant, "token.create", target: token.id, context)
            return json(Schemas.NewToken(token, secret: secret), status: .created)
        }
        api.get("tenants/:tenant") { _, context in
            _ = try context.requireOperator()
            return json(Schemas.Tenant(try await tenant(context)))
        }
        api.delete("tenants/:tenant", use: delete)
    }

    private func tenant(_ context: APIContext) async throws -> TenantRecord {
        let name = try context.parameters.require("tenant")
        guard let tenant = try await store.tenant(name) else { throw APIError.notFound("no tenant '\(name.cut(toBytes: 64))'") }
        return tenant
    }

    @Sendable private func create(_ request: Request, _ context: APIContext) async throws -> Response {
        let principal = try context.requireOperator()
        let body = try await bodies.decode(Schemas.CreateTenant.self, request)
        let name = try validName(body.name, kind: "tenant name")
        let topics = try body.topics.map { try TopicACL.validated($0) }
        let (token, secret) = TokenSecret.issue(tenant: name, name: "admin", role: .admin)
        let id = TenantRecord.newID()
        let outcome = try await apps.writes.submit(
            .createTenant(
                .init(
                    tenantId: id, name: name, topics: topics?.rules, hostUids: .init(low: hostUIDs.lowerBound, high: hostUIDs.upperBound), token: .init(token)))
        )
        try refuseRepeated(outcome, what: "the tenant and its admin token")
        // The tenant as this write made it: a later write may have deleted it already.
        guard let tenant = try await store.tenant(name), tenant.id == id else { throw APIError.notFound("tenant '\(name)' was deleted") }
        try await auditor.record(principal, tenant: tenant, "tenant.create", target: name, context)
        return json(Schemas.TenantCreated(tenant: Schemas.Tenant(tenant), adminToken: Schemas.NewToken(token, secret: secret)), status: .created)
    }

    @Sendable private func delete(_ request: Request, _ context: APIContext) async throws -> Response {
        let principal = try context.requireOperator()
        let tenant = try await tenant(context)
        // Its apps stop, and its streams and followed logs end, on every node.
        try await apps.writes.submit(.deleteTenant(.init(name: tenant.name)))
        try await auditor.record(principal, tenant: tenant, "tenant.delete", target: tenant.name, context)
        return Response(status: .noContent)
    }
}

extension Schemas.Tenant {
    init(_ tenant: TenantRecord) {
        self.init(id: tenant.id, name: tenant.name, createdAt: tenant.createdAt, apps: tenant.apps, hostUid: tenant.hostUID.map { Int($0) })
    }
}

extension Schemas.NewToken {
    init(_ token: Store.NewTokenRow, secret: String) {
        self.init(
            id: token.id, name: token.name, role: Schemas.TenantRole(rawValue: token.role) ?? .viewer, tenant: token.tenant ?? "",
            secret: secret, createdAt: Date())
    }
}
