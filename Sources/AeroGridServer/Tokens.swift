import AeroGridCore
public import AeroGridStore
import Crypto
import Foundation

/// What a token may do. `operator` runs the platform; the others act within one tenant,
/// each role able to do everything the ones below it can.
public enum Role: String, Sendable, CaseIterable, Comparable {
    case `operator`, admin, developer, viewer

    /// Tenant roles, by rank: viewer < developer < admin.
    var rank: Int {
        switch self {
        case .viewer: 1
        case .developer: 2
        case .admin: 3
        case .operator: 0
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }

    static let tenantRoles: [Role] = [.admin, .developer, .viewer]
}

/// Token secrets: 32 random bytes shown once as `agt_` + base64url; only their SHA-256 is
/// stored, so a copy of the database grants nothing.
enum TokenSecret {
    static let prefix = "agt_"

    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return prefix + base64URL(bytes)
    }

    static func newID() -> String {
        RandomID.make(prefix: "tok_")
    }

    /// A new token: the row to store (its secret only as a hash) and the secret to show once.
    static func issue(tenant: String?, name: String, role: Role) -> (row: Store.NewTokenRow, secret: String) {
        let secret = generate()
        return (
            Store.NewTokenRow(id: newID(), tenant: tenant, name: name, role: role.rawValue, secretSHA256: sha256Hex(secret), createdAt: Date()), secret
        )
    }

    /// The caller behind an `Authorization` value. None, a malformed, an unknown or a revoked
    /// token are all the same 401, so a guess learns nothing.
    static func principal(authorization header: String?, store: Store) async throws -> Principal {
        guard let header else { throw APIError.unauthorized("a bearer token is required: Authorization: Bearer agt_…") }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", isWellFormed(String(parts[1])) else {
            throw APIError.unauthorized("the Authorization header must be 'Bearer <token>' with a token this server issued")
        }
        guard let token = try await store.authenticate(secretSHA256: sha256Hex(String(parts[1]))),
            let role = Role(rawValue: token.role)
        else {
            throw APIError.unauthorized("the token is not valid (unknown or revoked)")
        }
        return Principal(tokenID: token.id, role: role, tenant: token.tenant, tenantID: token.tenantID)
    }

    static func sha256Hex(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `text` looks like a token at all (so garbage is refused without a lookup).
    static func isWellFormed(_ text: String) -> Bool {
        text.count >= 32 && text.count <= 256 && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// A new token secret (`agt_…`), for callers that choose one before the server starts.
public func newTokenSecret() -> String { TokenSecret.generate() }

extension ControlWrites {
    /// Creates a tenant with its first admin token and returns the token's secret. `topics`
    /// is its topic ACL (nil: the default, its own prefix).
    public func createTenant(_ name: String, topics: [String]? = nil, hostUIDs: ClosedRange<UInt32>) async throws -> String {
        let (row, secret) = TokenSecret.issue(tenant: name, name: "admin", role: .admin)
        try await submit(
            .createTenant(
                .init(
                    tenantId: TenantRecord.newID(), name: name, topics: topics, hostUids: .init(low: hostUIDs.lowerBound, high: hostUIDs.upperBound),
                    token: .init(row))))
        return secret
    }

    /// Creates a token of `role` in `tenant` and returns its secret.
    public func createToken(tenant: String, name: String, role: Role) async throws -> String {
        let (row, secret) = TokenSecret.issue(tenant: tenant, name: name, role: role)
        try await submit(.createToken(.init(row)))
        return secret
    }
}

extension ControlChange.TokenFields {
    init(_ row: Store.NewTokenRow) {
        self.init(id: row.id, tenant: row.tenant, name: row.name, role: row.role, secretSha256: row.secretSHA256)
    }
}
