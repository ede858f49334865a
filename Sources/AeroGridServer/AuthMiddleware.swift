import AeroGridStore
import Hummingbird

/// Resolves `Authorization: Bearer <token>` to the caller. Every route behind it needs a
/// live token: none, a malformed, an unknown or a revoked one is 401, the same answer for
/// each so a guess learns nothing.
struct AuthMiddleware: RouterMiddleware {
    let store: Store

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        var context = context
        context.principal = try await TokenSecret.principal(authorization: request.headers[.authorization], store: store)
        return try await next(request, context)
    }
}
