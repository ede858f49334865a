import AeroGridStore
import Foundation
import HTTPTypes
import Hummingbird

extension HTTPField.Name {
    /// A client's key for one request it may send more than once (a retry after no answer).
    static let idempotencyKey = Self("Idempotency-Key")!
}

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
        guard let key = request.headers[.idempotencyKey] else { return try await next(request, context) }
        guard (1...64).contains(key.utf8.count),
            key.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.:".unicodeScalars.contains($0)) })
        else {
            throw APIError.badRequest("Idempotency-Key must be 1 to 64 letters, digits, '-', '_', '.' or ':' (a UUID will do)")
        }
        // The key is the caller's own, for this route: another token's request, or another
        // route's, with the same key is another write.
        return try await ControlWrites.$callerKey.withValue("\(principal.tokenID)\n\(request.method) \(request.uri.path)\n\(key)") {
            try await next(request, context)
        }
    }
}
