import AeroGridStore
import Crypto
import Foundation
import Hummingbird

/// What the nodes of a cluster ask each other, outside the API: a bundle's zip by tenant id
/// and digest, for the cluster's own secret (from its first record) only. Not found on a
/// single node, or for a bundle this node does not keep.
struct PeerRoutes: Sendable {
    let store: Store
    let bundles: BundleStore

    func register(on router: Router<APIContext>) {
        router.get("internal/v1/bundles/:tenant/:digest") { request, context in
            guard bundles.keepsArchives, let secret = try await store.peerSecret() else {
                throw APIError.notFound("no such route: \(request.method) \(request.uri.path)")
            }
            let given = request.headers[.authorization].map { Array($0.utf8) } ?? []
            guard Self.constantTimeEqual(given, Array("Bearer \(secret)".utf8)) else {
                throw APIError.unauthorized("this route is for the cluster's nodes")
            }
            let tenant = try context.parameters.require("tenant")
            let digest = try context.parameters.require("digest")
            // Names from the request go into a path: their form is checked first.
            guard tenant.utf8.count == 20, tenant.hasPrefix("ten_"), tenant.dropFirst(4).allSatisfy(\.isHexDigit),
                digest.utf8.count == 64, digest.allSatisfy({ $0.isHexDigit && !$0.isUppercase })
            else { throw APIError.badRequest("a tenant id (ten_ and 16 hex digits) and a bundle digest (64 hex digits) are required") }
            guard let zip = FileManager.default.contents(atPath: bundles.archivePath(tenantID: tenant, digest: digest)) else {
                throw APIError.notFound("this node does not keep bundle \(digest) of tenant \(tenant)")
            }
            return Response(status: .ok, headers: [.contentType: "application/zip"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: zip)))
        }
    }

    private static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
