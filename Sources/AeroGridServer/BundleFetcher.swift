import AeroGridCluster
import AeroGridCore
import AeroGridStore
import Crypto
import Foundation
import Logging
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// On a node of a cluster: puts each deployed bundle into the cluster's bundles topic, and
/// gets the bundles of the view's apps that this node does not have — from the topic, else
/// from a peer node that has it — each verified against its digest, then stored as an
/// upload is. Every node keeps every live bundle, so an app can run wherever it is placed.
final class BundleFetcher: Sendable {
    let bundles: BundleStore
    let log: BundleLog
    let store: Store
    let nodeID: String
    let logger: Logger
    /// Bundles no source had, with when: asked again a minute later, not at every reconcile.
    private let misses = Mutex<[String: ContinuousClock.Instant]>([:])

    init(bundles: BundleStore, log: BundleLog, store: Store, nodeID: String, logger: Logger) {
        self.bundles = bundles
        self.log = log
        self.store = store
        self.nodeID = nodeID
        self.logger = logger
    }

    /// Writes a deployed bundle's bytes to the bundles topic, before its deploy is written.
    func publish(_ zip: Data, digest: String) async throws {
        do {
            try await log.publish(digest: digest, bytes: Array(zip))
        } catch {
            throw APIError(.serviceUnavailable, .notReady, "the cluster's bundles topic did not take the bundle: \(error)")
        }
    }

    /// Gets every bundle an app of the view uses that this node lacks; true when it has
    /// them all afterwards.
    @discardableResult
    func ensureAll() async -> Bool {
        guard let apps = try? await store.apps(), let tenants = try? await store.tenants() else { return false }
        let byName = Dictionary(tenants.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var all = true
        for app in apps {
            guard let tenant = byName[app.tenant], let uid = tenant.hostUID else { continue }
            if await !ensure(tenantID: tenant.id, uid: uid, digest: app.bundleDigest) { all = false }
        }
        return all
    }

    /// Has the bundle on this node, getting it if needed; false when no source had it.
    @discardableResult
    func ensure(tenantID: String, uid: UInt32, digest: String) async -> Bool {
        if FileManager.default.fileExists(atPath: bundles.path(tenantID: tenantID, digest: digest)) { return true }
        let key = "\(tenantID)/\(digest)"
        if let missed = misses.withLock({ $0[key] }), ContinuousClock.now - missed < .seconds(60) { return false }
        let verified: ([UInt8]) -> Bool = { Self.sha256Hex($0) == digest }
        var zip: [UInt8]?
        do {
            zip = try await log.fetch(digest: digest, maxBytes: 2 * bundles.limits.maxUploadBytes, accept: verified)
        } catch {
            logger.warning("reading bundle \(digest) from \(log.topic): \(error)")
        }
        if zip == nil { zip = await fromPeers(tenantID: tenantID, digest: digest, verified: verified) }
        guard let zip else {
            logger.error("bundle \(digest) of tenant \(tenantID) is neither in \(log.topic) nor on a peer node; asking again in a minute")
            misses.withLock { $0[key] = .now }
            return false
        }
        misses.withLock { $0[key] = nil }
        do {
            let stored = try bundles.store(Data(zip), owner: BundleOwner(tenantID: tenantID, uid: uid))
            bundles.release(stored)
            logger.info("got bundle \(digest) of tenant \(tenantID) (\(zip.count) bytes), verified")
            return true
        } catch {
            logger.error("bundle \(digest) of tenant \(tenantID) was fetched but refused: \(error.message)")
            return false
        }
    }

    /// From the first peer that has it, verified.
    private func fromPeers(tenantID: String, digest: String, verified: ([UInt8]) -> Bool) async -> [UInt8]? {
        guard let secret = try? await store.peerSecret(), let peers = try? await store.clusterNodes() else { return nil }
        for peer in peers where peer.id != nodeID {
            guard let url = URL(string: "\(peer.url)/internal/v1/bundles/\(tenantID)/\(digest)") else { continue }
            var request = URLRequest(url: url, timeoutInterval: 30)
            request.setValue("Bearer \(secret)", forHTTPHeaderField: "Authorization")
            do {
                let (data, response) = try await URLSession.shared.data(for: request)
                guard (response as? HTTPURLResponse)?.statusCode == 200, data.count <= bundles.limits.maxUploadBytes else { continue }
                let bytes = Array(data)
                if verified(bytes) { return bytes }
                logger.warning("node \(peer.id) sent bundle \(digest) with another digest: ignored")
            } catch {
                logger.info("node \(peer.id) at \(peer.url) did not give bundle \(digest): \(error)")
            }
        }
        return nil
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
