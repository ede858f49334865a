import AeroGridStore
import Hummingbird

/// Resolves `Authorization: Bearer <token>` to the caller. Every route behind it needs a
/// live token: none, a malformed, an unknown or a revoked one is 401, the same answer for
/// each so a guess learns nothing.
struct AuthMiddleware: RouterMiddleware {
    let store: Store

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("a bearer token is required: Authorization: Bearer agt_…")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", TokenSecret.isWellFormed(String(parts[1])) else {
            throw APIError.unauthorized("the Authorization header must be 'Bearer <token>' with a token this server issued")
        }
        guard let token = try await store.authenticate(secretSHA256: TokenSecret.sha256Hex(String(parts[1]))),
              let role = Role(rawValue: token.role) else {
            throw APIError.unauthorized("the token is not valid (unknown or revoked)")
        }
        var context = context
        context.principal = Principal(tokenID: token.id, role: role, tenant: token.tenant)
        return try await next(request, context)
    }
}
