import AeroGridStore
import Hummingbird

/// Resolves `Authorization: Bearer <token>` to the caller. Every route behind it needs a
/// live token: none, a malformed, an unknown or a revoked one is 401, the same answer for
/// each so a guess learns nothing. The first authenticated request of a connection moves it
/// from the anonymous connections to its tenant's, within the tenant's `max_connections`.
struct AuthMiddleware: RouterMiddleware {
    let store: Store
    let gate: ConnectionGate?
    let planner: AppPlanner

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        var context = context
        let principal = try await TokenSecret.principal(authorization: request.headers[.authorization], store: store)
        if let gate, !gate.holds(context.connection, tenantID: principal.tenantID) {
            var limit = Int.max
            if let tenant = principal.tenant { limit = try await planner.tenantQuota(tenant).maxConnections }
            guard gate.authenticate(context.connection, tenantID: principal.tenantID, limit: limit) else {
                throw APIError(
                    .tooManyRequests, .tooManyConnections,
                    "tenant \(principal.tenant ?? "?") has \(limit) connections open, its quota (max_connections); close some or ask an operator to raise it")
            }
        }
        context.principal = principal
        return try await next(request, context)
    }
}
