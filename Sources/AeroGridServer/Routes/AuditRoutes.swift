import AeroGridAPI
import AeroGridStore
import Hummingbird

/// The audit log: an operator reads every tenant's entries, an admin its own tenant's, by
/// the tenant's id (never a namesake's).
struct AuditRoutes: Sendable {
    let store: Store

    func register(on api: RouterGroup<APIContext>) {
        api.get("audit") { request, context in
            let principal = try context.principal ?? { throw APIError.unauthorized("a bearer token is required") }()
            let limit = try request.queryInt("limit", default: 100, range: 1...1000)
            let tenantID: String?
            switch principal.role {
            case .operator: tenantID = nil
            case .admin: tenantID = principal.tenantID ?? "none"
            default: throw APIError.forbidden("role \(principal.role.rawValue) may not read the audit log; it needs admin or operator")
            }
            let entries = try await store.auditEntries(tenantID: tenantID, limit: limit).map { entry in
                Schemas.AuditEntry(
                    id: Int(entry.id), time: entry.time, tenant: entry.tenant, tenantId: entry.tenantID, actor: entry.actor,
                    action: entry.action, target: entry.target, source: entry.source, outcome: entry.outcome)
            }
            return json(Schemas.AuditLog(entries: entries, completeSince: try await store.auditPosition()?.completeSince))
        }
    }
}
