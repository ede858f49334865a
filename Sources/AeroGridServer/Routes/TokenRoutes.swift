import AeroGridAPI
import AeroGridCore
import AeroGridStore
import Foundation
import Hummingbird

/// A tenant's tokens (admin): issue, list, revoke. A revoked token's open streams and
/// followed logs end at once.
struct TokenRoutes: Sendable {
    let writes: ControlWrites
    private var store: Store { writes.store }
    let bodies: RequestBodies
    let auditor: Auditor

    func register(on api: RouterGroup<APIContext>) {
        api.post("tokens") { request, context in
            let (tenant, principal) = try context.requireTenant(.admin)
            let body = try await bodies.decode(Schemas.CreateToken.self, request)
            guard (1...64).contains(body.name.utf8.count) else {
                throw APIError.badRequest("\"name\" must be a string of 1 to 64 bytes naming the token")
            }
            guard let role = Role(rawValue: body.role.rawValue), role != .operator else {
                throw APIError.badRequest("\"role\" must be one of admin, developer, viewer")
            }
            let (token, secret) = TokenSecret.issue(tenant: tenant, name: body.name, role: role)
            try refuseRepeated(try await writes.submit(.createToken(.init(token))), what: "the token")
            try await auditor.record(principal, "token.create", target: token.id, context)
            return json(Schemas.NewToken(token, secret: secret), status: .created)
        }
        api.get("tokens") { _, context in
            let (tenant, _) = try context.requireTenant(.admin)
            return json(Schemas.TokenList(tokens: try await store.tokens(tenant: tenant).map(Schemas.Token.init)))
        }
        api.delete("tokens/:id") { _, context in
            let (tenant, principal) = try context.requireTenant(.admin)
            let id = try context.parameters.require("id")
            // Its open streams end on every node as the revocation reaches it.
            try await writes.submit(.revokeToken(.init(tenant: tenant, id: id)))
            try await auditor.record(principal, "token.revoke", target: id, context)
            return Response(status: .noContent)
        }
    }
}

extension Schemas.Token {
    init(_ token: TokenRecord) {
        self.init(
            id: token.id, name: token.name, role: Schemas.TenantRole(rawValue: token.role) ?? .viewer, tenant: token.tenant ?? "",
            createdAt: token.createdAt, lastUsedAt: token.lastUsedAt, revokedAt: token.revokedAt)
    }
}
