import AeroGridStore
import Crypto
import Foundation
import Hummingbird

/// What the nodes of a cluster ask each other, outside the API, for the cluster's own
/// secret (from its first record) only: a bundle's zip by tenant id and digest, and the log
/// of an app this node runs (`AppLogs`). Not found on a single node.
struct PeerRoutes: Sendable {
    let store: Store
    let bundles: BundleStore
    let supervisor: AppSupervisor

    func register(on router: Router<APIContext>) {
        router.get("internal/v1/apps/:tenant/:app/logs") { request, context in
            try await authorize(request)
            let tenantID = try context.parameters.require("tenant")
            let name = try context.parameters.require("app")
            guard let tenant = try await store.tenants().first(where: { $0.id == tenantID }),
                let log = await supervisor.runner(tenant: tenant.name, name: name)?.log
            else { throw APIError.notFound("this node has no log of that app") }
            let after: Int? = try request.uri.queryParameters["after"] == nil ? nil : request.queryInt("after", default: 0, range: 0...Int.max)
            let page = AppLogs.page(of: log, after: after, tail: try request.queryInt("tail", default: 100, range: 1...10_000))
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: AppLogs.ndjson(page))))
        }
        router.get("internal/v1/bundles/:tenant/:digest") { request, context in
            try await authorize(request)
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

    /// The cluster's secret in the Authorization header, or 401; on a single node, 404.
    private func authorize(_ request: Request) async throws {
        guard bundles.keepsArchives, let secret = try await store.peerSecret() else {
            throw APIError.notFound("no such route: \(request.method) \(request.uri.path)")
        }
        let given = request.headers[.authorization].map { Array($0.utf8) } ?? []
        guard Self.constantTimeEqual(given, Array("Bearer \(secret)".utf8)) else {
            throw APIError.unauthorized("this route is for the cluster's nodes")
        }
    }

    private static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
