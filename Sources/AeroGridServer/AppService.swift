import AeroGridAPI
import AeroGridCore
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import Foundation
import Synchronization

/// What the API does to apps, apart from HTTP: deploy, start, stop, restart and delete,
/// each admitted against the tenant's quota; the app as the API describes it; its grids.
/// Every change is announced on the supervisor's `changes`, so discovery tells the clients.
struct AppService: Sendable {
    let writes: ControlWrites
    let bundles: BundleStore
    let supervisor: AppSupervisor
    let planner: AppPlanner
    /// On a node of a cluster: bundles into the cluster's bundles topic, and from it.
    var fetcher: BundleFetcher? = nil
    /// On a node of a cluster: the grids of apps that run on other nodes.
    var replicas: GridReplicas? = nil
    /// On a node of a cluster: this node's id, and what the others say of the apps they run.
    var cluster: (nodeID: String, status: NodeStatus)? = nil
    var store: Store { writes.store }

    /// The app, or "not found" (also for another tenant's app of that name).
    func app(_ tenant: String, _ name: String) async throws -> AppRecord {
        guard let app = try await store.app(tenant: tenant, name: name) else { throw APIError.notFound("no app '\(name.cut(toBytes: 64))'") }
        return app
    }

    /// Stores a bundle and deploys it as a new version (or the app's first); a running app
    /// moves to it at once. Throws `BundleRefused` for a bundle that is not valid.
    func deploy(_ bundle: Data, tenant: TenantRecord) async throws -> (app: AppRecord, created: Bool) {
        guard let uid = tenant.hostUID else { throw APIError(.serviceUnavailable, .noHostUid, "tenant \(tenant.name) has no host uid yet; try again") }
        let stored = try bundles.store(bundle, owner: BundleOwner(tenantID: tenant.id, uid: uid))
        // Kept from the bundle clean-up until the app's record names it.
        defer { bundles.release(stored) }
        let manifest = stored.manifest
        if let fetcher {
            // A new app past max_apps is refused where the deploy is applied; refused here too,
            // so it does not take room in the bundles topic first.
            let apps = try await store.apps(tenant: tenant.name)
            let limit = QuotaJSON.tenant(tenant.quota).maxApps
            if !apps.contains(where: { $0.name == manifest.name }), apps.count >= limit {
                throw APIError.overQuota("tenant \(tenant.name) has \(apps.count) apps, its quota (max_apps \(limit)); delete one first")
            }
            // In the topic before the deploy is in the log: a node that reads the deploy can get it.
            try await fetcher.publish(bundle, digest: stored.digest)
        }
        // Counted against max_apps where it is applied: concurrent deploys cannot pass it together.
        let outcome = try await writes.submit(
            .deployApp(
                .init(
                    tenant: tenant.name, name: manifest.name, tenantId: tenant.id, bundleDigest: stored.digest, entrypoint: manifest.entrypoint,
                    runtime: manifest.runtime, appId: AppRecord.newID())))
        return (try await app(tenant.name, manifest.name), outcome.created ?? false)
    }

    /// Starts (or restarts) the app: admitted within the tenant's quota, its desired state
    /// `running`.
    func start(_ tenant: String, _ name: String, restart: Bool) async throws -> AppRecord {
        // Admitted where it is applied, against the tenant's quota and apps as they are
        // then: concurrent starts or quota changes cannot pass the quota together.
        try await writes.submit(.startApp(.init(tenant: tenant, name: name, restart: restart, appDefaults: .init(planner.appDefaults))))
        return try await app(tenant, name)
    }

    func stop(_ tenant: String, _ name: String) async throws -> AppRecord {
        try await writes.submit(.stopApp(.init(tenant: tenant, name: name)))
        return try await app(tenant, name)
    }

    func delete(_ tenant: String, _ name: String) async throws {
        try await writes.submit(.deleteApp(.init(tenant: tenant, name: name)))
    }

    /// The app as the API shows it.
    func describe(_ app: AppRecord) async -> Schemas.App {
        let view = await supervisor.view(app)
        if !view.runsHere, let (node, remote) = cluster?.status.elsewhere(tenant: app.tenant, app: app.name), remote.id == app.id {
            return describe(app, runningOn: node, remote)
        }
        let state: Schemas.App.StatePayload
        if let status = view.status {
            state = view.failure != nil ? .crashed : Schemas.App.StatePayload(rawValue: status.lifecycle.state.name) ?? .stopped
        } else {
            state = .created
        }
        let crash = view.status?.lifecycle.lastCrash
        let quota = planner.appQuota(app)
        return Schemas.App(
            name: app.name, version: app.version, bundleDigest: app.bundleDigest, entrypoint: app.entrypoint, runtime: app.runtime,
            desiredState: app.desiredState == "running" ? .running : .stopped, state: state,
            crashReason: crash.flatMap { Schemas.App.CrashReasonPayload(rawValue: $0.code) },
            lastCrash: view.failure ?? crash?.description, restarts: view.status?.lifecycle.restarts ?? 0, records: view.records,
            lag: view.lag.map { Int(clamping: $0) },
            usage: view.usage.map(Schemas.Usage.init),
            quota: Schemas.AppQuota(quota), createdAt: app.createdAt, updatedAt: app.updatedAt, node: view.runsHere ? cluster?.nodeID : nil)
    }

    /// The app as the node that runs it described it in the cluster's status topic.
    private func describe(_ app: AppRecord, runningOn node: String, _ remote: NodeStatus.App) -> Schemas.App {
        Schemas.App(
            name: app.name, version: app.version, bundleDigest: app.bundleDigest, entrypoint: app.entrypoint, runtime: app.runtime,
            desiredState: app.desiredState == "running" ? .running : .stopped, state: Schemas.App.StatePayload(rawValue: remote.state) ?? .running,
            crashReason: remote.crashReason.flatMap { Schemas.App.CrashReasonPayload(rawValue: $0) }, lastCrash: remote.lastCrash,
            restarts: max(0, remote.restarts), records: max(0, remote.records), lag: remote.lag.map { max(0, $0) },
            usage: remote.usage,
            quota: Schemas.AppQuota(planner.appQuota(app)), createdAt: app.createdAt, updatedAt: app.updatedAt, node: node)
    }

    /// The app's grids (or only the one named `only`): live from its runner, or from its
    /// last checkpoint when it has not run since the server started.
    func grids(_ app: AppRecord, only: String? = nil) async throws -> [String: GridSnapshotView] {
        var views: [String: GridSnapshotView] = [:]
        if let runner = await supervisor.runner(tenant: app.tenant, name: app.name) {
            for name in only.map({ [$0] }) ?? runner.grids.gridNames {
                guard let snapshot = runner.grids.snapshot(name) else { continue }
                // Restored from a checkpoint and not yet declared by the app's hello: the
                // columns are those the rows have.
                let columns = snapshot.grid.columns.isEmpty ? Self.columns(of: snapshot.grid.rows) : snapshot.grid.columns
                views[name] = GridSnapshotView(version: snapshot.grid.version, epoch: runner.grids.epoch, columns: columns, rows: snapshot.grid.rows)
            }
            return views
        }
        if let replicas {
            // On a node of a cluster: the app's changelog, through a replica (made now when
            // nobody here watched the app; waited for while it catches up).
            guard let grids = await replicas.caughtUpGrids(tenant: app.tenant, app: app.name, timeout: .seconds(10)) else {
                throw APIError(.serviceUnavailable, .notReady, "the app's grids are still being read from the changelog; try again in a moment")
            }
            for name in only.map({ [$0] }) ?? grids.gridNames {
                guard let snapshot = grids.snapshot(name) else { continue }
                let columns = snapshot.grid.columns.isEmpty ? Self.columns(of: snapshot.grid.rows) : snapshot.grid.columns
                views[name] = GridSnapshotView(version: snapshot.grid.version, epoch: snapshot.epoch, columns: columns, rows: snapshot.grid.rows)
            }
            return views
        }
        let checkpoint = try await store.loadCheckpoint(app: AppID(tenant: app.tenant, name: app.name).description)
        for (name, rows) in checkpoint.grids where only == nil || only == name {
            views[name] = GridSnapshotView(version: checkpoint.versions[name] ?? 0, epoch: checkpoint.epoch, columns: Self.columns(of: rows), rows: rows)
        }
        return views
    }

    private static func columns(of rows: [GridKey: GridRow]) -> [String] {
        var columns = Set<String>()
        for row in rows.values { columns.formUnion(row.keys) }
        return columns.sorted()
    }
}

extension Schemas.Usage {
    /// A sandbox's cgroup reading as the API shows it.
    init(_ usage: CgroupUsage) {
        self.init(cpuSeconds: Double(usage.cpuNanoseconds) / 1e9, memoryBytes: Int(clamping: usage.memoryBytes), pids: usage.pids)
    }
}

extension Schemas.AppQuota {
    init(_ quota: AppQuota) {
        self.init(memoryBytes: Int(clamping: quota.memoryBytes), cpus: quota.cpus, pids: quota.pids, gridRows: quota.gridRows)
    }
}
