import AeroGridCore
import AeroGridStore
import Foundation
import Logging
import Synchronization

/// What a node does when a control write is applied to its view, whichever node took the
/// call: runners started and stopped (of the apps placed on this node), streams of a revoked token
/// or a deleted tenant ended, a new topic ACL used at the apps' next start, discovery told.
/// Until the server is running there is nothing to do (no runners, no streams).
final class ControlEffects: Sendable {
    struct Node: Sendable {
        let supervisor: AppSupervisor
        let sessions: Sessions
        let bundles: BundleStore
        let planner: AppPlanner
        /// On a node of a cluster: gets the bundles of apps deployed through other nodes.
        var fetcher: BundleFetcher? = nil
    }

    /// What `prepare` learned before the write, for `settle`.
    struct Prepared: Sendable {
        var tenant: TenantRecord?
    }

    private let store: Store
    private let node = Mutex<Node?>(nil)

    init(store: Store) {
        self.store = store
    }

    func attach(_ node: Node) {
        self.node.withLock { $0 = node }
    }

    /// Before a write that removes apps: their runners stop first (each with a last
    /// checkpoint), so nothing writes an app's checkpoint after the app is gone.
    func prepare(_ change: ControlChange) async throws -> Prepared {
        guard let node = node.withLock({ $0 }) else { return Prepared() }
        switch change {
        case .deleteTenant(let body):
            let tenant = try await store.tenant(body.name)
            if tenant != nil {
                let apps = try await store.apps(tenant: body.name).map(\.name)
                await node.supervisor.removeTenant(body.name, apps: apps)
            }
            return Prepared(tenant: tenant)
        case .deleteApp(let body):
            await node.supervisor.remove(tenant: body.tenant, name: body.name)
        default:
            break
        }
        return Prepared()
    }

    /// After the write, with what it came to. Throws only what the caller on this node must
    /// hear (a running app's cgroup refusing its new quota).
    func settle(_ change: ControlChange, outcome: ControlOutcome, prepared: Prepared) async throws {
        guard let node = node.withLock({ $0 }) else { return }
        let applied = outcome.refusal == nil
        switch change {
        case .setTenantACL(let body) where applied:
            node.supervisor.topicRules.set(body.name, TopicACL(rules: body.topics))
        case .revokeToken(let body) where applied:
            // Its streams and followed logs end now, not at their next request.
            node.sessions.endToken(body.id)
        case .deleteTenant where applied:
            if let tenant = prepared.tenant { node.sessions.endTenant(tenant.id) }
            try await removeUnusedBundles(node)
        case .deployApp(let body):
            if applied, let app = try await store.app(tenant: body.tenant, name: body.name) {
                // Every node keeps every live bundle; one that runs the app waits for it.
                let tenant = try await store.tenant(body.tenant)
                if let fetcher = node.fetcher, let uid = tenant?.hostUID {
                    if node.supervisor.placedHere(app) && app.desiredState == "running" {
                        await fetcher.ensure(tenantID: body.tenantId, uid: uid, digest: body.bundleDigest)
                    } else {
                        Task { await fetcher.ensure(tenantID: body.tenantId, uid: uid, digest: body.bundleDigest) }
                    }
                }
                // A running app moves to the new version at once.
                if node.supervisor.placedHere(app), app.desiredState == "running", let tenant {
                    await node.supervisor.stop(tenant: body.tenant, name: body.name)
                    await node.supervisor.start(app, plan: node.planner.plan(app, tenant: tenant))
                }
                announce(node, body.tenant, body.name)
            }
            try await removeUnusedBundles(node)
        case .startApp(let body) where applied:
            if let app = try await store.app(tenant: body.tenant, name: body.name), node.supervisor.placedHere(app),
                let tenant = try await store.tenant(body.tenant)
            {
                if let fetcher = node.fetcher, let uid = tenant.hostUID {
                    await fetcher.ensure(tenantID: tenant.id, uid: uid, digest: app.bundleDigest)
                }
                if body.restart { await node.supervisor.stop(tenant: body.tenant, name: body.name) }
                await node.supervisor.start(app, plan: node.planner.plan(app, tenant: tenant))
            }
            announce(node, body.tenant, body.name)
        case .stopApp(let body) where applied:
            await node.supervisor.stop(tenant: body.tenant, name: body.name)
            announce(node, body.tenant, body.name)
        case .setAppQuota(let body) where applied:
            // The app's quota is part of it as discovery describes it.
            announce(node, body.tenant, body.name)
            guard let app = try await store.app(tenant: body.tenant, name: body.name) else { return }
            // A running app gets its new cgroup limits now; grid rows count from its next start.
            do {
                try await node.supervisor.updateLimits(tenant: body.tenant, name: body.name, node.planner.appQuota(app).cgroupLimits)
            } catch {
                // updateLimits throws only SandboxError.
                throw APIError(.internalServerError, ._internal, "the quota is stored but the running app's cgroup refused it: \(error.message)")
            }
        case .deleteApp(let body) where applied:
            try await removeUnusedBundles(node)
            announce(node, body.tenant, body.name)
        default:
            break
        }
    }

    private func announce(_ node: Node, _ tenant: String, _ name: String) {
        node.supervisor.changes.announce(AppID(tenant: tenant, name: name), by: .api)
    }

    private func removeUnusedBundles(_ node: Node) async throws {
        try await node.bundles.removeUnused { [store] in try await store.bundlesInUse() }
    }
}
