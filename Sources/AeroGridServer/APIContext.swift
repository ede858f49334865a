import AeroGridStore
import Foundation
public import Hummingbird
public import NIOCore

/// Who is calling: a token's id, role and (for tenant roles) tenant, by name and by its
/// immutable id.
public struct Principal: Sendable {
    public let tokenID: String
    public let role: Role
    public let tenant: String?
    public let tenantID: String?
}

/// The request context of the API: the client's address (for the audit) and, once the
/// auth middleware has run, the caller.
public struct APIContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The connection the request came on: what the connection caps count.
    public let connection: ObjectIdentifier
    public var principal: Principal?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        connection = ObjectIdentifier(source.channel)
    }

    /// Bundles are up to 16 MiB; a little more is read so the refusal can say by how much.
    public var maxUploadSize: Int { 17 << 20 }

    /// The client's address as the audit records it.
    var source: String {
        switch remoteAddress {
        case .some(.v4(let address)): address.host
        case .some(.v6(let address)): address.host
        case .some(let other): other.description
        case .none: "unknown"
        }
    }

    /// The caller, who must be an operator.
    func requireOperator() throws -> Principal {
        guard let principal else { throw APIError.unauthorized("a bearer token is required") }
        guard principal.role == .operator else {
            throw APIError.forbidden("this route is for operators; a tenant token (role \(principal.role.rawValue)) cannot use it")
        }
        return principal
    }

    /// The caller's tenant, when its role is at least `role`.
    func requireTenant(_ role: Role) throws -> (tenant: String, principal: Principal) {
        guard let principal else { throw APIError.unauthorized("a bearer token is required") }
        guard let tenant = principal.tenant else {
            throw APIError.forbidden("this route acts within a tenant; use a tenant token, not an operator token")
        }
        guard principal.role >= role else {
            throw APIError.forbidden("role \(principal.role.rawValue) may not do this; it needs \(role.rawValue) or above")
        }
        return (tenant, principal)
    }
}
