import AeroGridAPI
public import AeroGridCore
public import AeroGridKafka
public import AeroGridRuntime
public import AeroGridSandbox
public import AeroGridStore
import Foundation
public import Logging
import Synchronization

/// What every app of this server runs with, unless its record says otherwise.
public struct RuntimeDefaults: Sendable {
    public var kafka: KafkaConfiguration
    public var profile: CompiledProfile
    public var sdkPath: String
    public var limits: CgroupLimits?
    public var checkpointInterval: Duration = .seconds(1)
    /// What an app does when its checkpoint is no longer in Kafka (see `OutOfRangePolicy`).
    public var outOfRangePolicy: OutOfRangePolicy = .fail
    /// What one app may cost the supervisor (its grid rows come from its quota).
    public var appLimits = AppLimits()
    /// On a node of a cluster: where its apps keep their grids (`ClusterApps`).
    public var cluster: ClusterApps?

    public init(kafka: KafkaConfiguration, profile: CompiledProfile, sdkPath: String, limits: CgroupLimits? = nil) {
        self.kafka = kafka
        self.profile = profile
        self.sdkPath = sdkPath
        self.limits = limits
    }
}

/// What a node of a cluster runs its apps with: the placement that says which apps are
/// its, and the changelog their grids go to.
public struct ClusterApps: Sendable {
    public let placement: Placement
    public let nodeID: String
    public let changelogTopic: String
    public let changelogRetentionBytes: Int
    public let producer: KafkaProducer
    public let ledger = SlotLedger()

    public init(placement: Placement, nodeID: String, changelogTopic: String, changelogRetentionBytes: Int, producer: KafkaProducer) {
        self.placement = placement
        self.nodeID = nodeID
        self.changelogTopic = changelogTopic
        self.changelogRetentionBytes = changelogRetentionBytes
        self.producer = producer
    }
}

/// One app as the API shows it: its record and, if a runner exists, how it runs.
public struct AppView: Sendable {
    public let record: AppRecord
    public let status: AppRunner.Status?
    public let records: Int
    public let lag: Int64?
    public let usage: CgroupUsage?
    /// Why the runner itself gave up (Kafka refused its settings, say), if it did.
    public let failure: String?
    /// Whether its runner runs here now.
    public let runsHere: Bool
}

/// Keeps the runners of every tenant's apps: starts them from their bundles, stops them
/// with a last checkpoint, and keeps a stopped app's runner so its grids and log stay
/// readable. One actor, so a start and a stop of the same app never interleave.
public actor AppSupervisor {
    private struct Entry {
        let runner: AppRunner
        let bundleDigest: String
        var task: Task<Void, Never>?
        /// The run being stopped: whoever else stops the app meanwhile waits for it too.
        var stopping: Task<Void, Never>?
        var failure: String?
        var failedAt: ContinuousClock.Instant?
    }

    private let store: Store
    private let bundles: BundleStore
    private let defaults: RuntimeDefaults
    private let logger: Logger
    private var entries: [AppID: Entry] = [:]
    /// Every app running here, as the cluster's status topic describes it.
    func runningApps() async -> [NodeStatus.App] {
        var apps: [NodeStatus.App] = []
        for (key, entry) in entries.sorted(by: { $0.key < $1.key }) where entry.task != nil {
            guard let record = placedApps[key] else { continue }
            let view = await self.view(record)
            let crash = view.status?.lifecycle.lastCrash
            apps.append(
                NodeStatus.App(
                    tenant: key.tenant, app: key.name, id: record.id,
                    state: view.failure != nil ? "crashed" : view.status?.lifecycle.state.name ?? "starting", crashReason: crash?.code,
                    lastCrash: view.failure ?? crash?.description, restarts: view.status?.lifecycle.restarts ?? 0, records: view.records,
                    lag: view.lag.map { Int(clamping: $0) },
                    usage: view.usage.map(Schemas.Usage.init)))
        }
        return apps
    }

    /// The record each runner was started from (its slot, in a cluster).
    private var placedApps: [AppID: AppRecord] = [:]
    /// Each app's current grids, readable without waiting for the actor (the stream's feeds).
    public nonisolated let grids = GridRegistry()
    /// Where what the runners do, and what the API changes, is announced.
    nonisolated let changes = AppChanges()
    /// Each tenant's topic ACL as its apps' processes are checked against it.
    public nonisolated let topicRules = TopicRulesRegistry()

    public init(store: Store, bundles: BundleStore, defaults: RuntimeDefaults, logger: Logger) {
        self.store = store
        self.bundles = bundles
        self.defaults = defaults
        self.logger = logger
    }

    /// Whether this node runs the app: always on a single node; on a node of a cluster, when
    /// it holds the app's slot.
    public nonisolated func placedHere(_ app: AppRecord) -> Bool {
        defaults.cluster?.placement.holds(app) ?? true
    }

    /// Starts the app's runner on its current bundle (a no-op when it already runs it, or
    /// when the app is placed on another node).
    public func start(_ app: AppRecord, plan: AppPlan) {
        guard placedHere(app) else { return }
        let key = AppID(tenant: app.tenant, name: app.name)
        if let entry = entries[key], entry.task != nil, entry.bundleDigest == app.bundleDigest { return }
        var spec = AppSpec(
            tenant: app.tenant, name: app.name, bundle: bundles.path(tenantID: plan.tenantID, digest: app.bundleDigest), entrypoint: app.entrypoint,
            sdkPath: defaults.sdkPath, profile: defaults.profile, limits: plan.quota.cgroupLimits, kafka: defaults.kafka,
            checkpointInterval: defaults.checkpointInterval, outOfRangePolicy: defaults.outOfRangePolicy)
        spec.shutdownGrace = .seconds(10)
        spec.appLimits = defaults.appLimits
        spec.appLimits.gridRows = plan.quota.gridRows
        if let cluster = defaults.cluster {
            spec.changelog = ChangelogBinding(
                appID: app.id, node: cluster.nodeID, topic: cluster.changelogTopic, slot: cluster.placement.slot(of: app),
                producer: cluster.producer, kafka: defaults.kafka, retentionBytes: cluster.changelogRetentionBytes, ledger: cluster.ledger)
            spec.changelog?.holdsSlot = { [placement = cluster.placement] in placement.holds(app) }
            // A grid over a quarter of what the changelog keeps could not have a whole
            // snapshot in it beside the records that follow: the app ends with `quota`.
            spec.appLimits.gridBytes = min(spec.appLimits.gridBytes, cluster.changelogRetentionBytes / 4)
            spec.cgroupPrefix = [cluster.nodeID]
        }
        // The tenant's own host uid: no two tenants' apps share one (or its process count).
        if let uid = plan.hostUID { spec.hostUID = uid }
        // Read at each process start, so a changed ACL applies to the next restart.
        topicRules.set(app.tenant, plan.topics)
        spec.topicPolicy = { [topicRules, tenant = app.tenant] topic in
            (topicRules.rules(tenant) ?? TopicACL.defaults(tenant: tenant)).refusal(topic, tenant: tenant)
        }
        let runner = AppRunner(spec: spec, store: store, logger: logger) { [changes] in changes.announce(key, by: .runtime) }
        placedApps[key] = app
        let task = Task { [logger] in
            do {
                try await runner.run()
            } catch {
                logger.error("app \(key) stopped on an error: \(error)")
                self.runnerFailed(key, runner: runner, error: "\(error)")
            }
        }
        entries[key] = Entry(runner: runner, bundleDigest: app.bundleDigest, task: task, failedAt: nil)
        grids.set(key, runner.grids)
        changes.announce(key, by: .runtime)
    }

    /// Drives the runners toward the stored desired states: starts what should run and
    /// does not (a runner that gave up is tried again after a minute), stops what should
    /// not, forgets what was deleted.
    public func reconcile(store: Store, planner: AppPlanner) async {
        guard let apps = try? await store.apps() else { return }
        let known = Set(apps.map { AppID(tenant: $0.tenant, name: $0.name) })
        for key in entries.keys where !known.contains(key) {
            await remove(tenant: key.tenant, name: key.name)
        }
        for app in apps {
            let entry = entries[AppID(tenant: app.tenant, name: app.name)]
            if app.desiredState == "running" && placedHere(app) {
                guard entry?.task == nil else { continue }
                if let failedAt = entry?.failedAt, ContinuousClock.now - failedAt < .seconds(60) { continue }
                guard let plan = try? await planner.plan(app) else { continue }
                logger.info("starting app \(app.tenant)/\(app.name): it should run and does not")
                start(app, plan: plan)
            } else if entry?.task != nil {
                await stop(tenant: app.tenant, name: app.name)
            }
        }
    }

    /// Applies new cgroup limits to a running app at once.
    public func updateLimits(tenant: String, name: String, _ limits: CgroupLimits) throws(SandboxError) {
        try entries[AppID(tenant: tenant, name: name)]?.runner.updateLimits(limits)
    }

    private func runnerFailed(_ key: AppID, runner: AppRunner, error: String) {
        guard entries[key]?.runner === runner else { return }
        entries[key]?.failure = error
        entries[key]?.failedAt = .now
        entries[key]?.task = nil
        changes.announce(key, by: .runtime)
    }

    /// Stops the app (its batch finishes and a last checkpoint is written) and waits.
    public func stop(tenant: String, name: String) async {
        let key = AppID(tenant: tenant, name: name)
        guard let entry = entries[key] else { return }
        guard let task = entry.task else {
            // Another caller is stopping it: this one returns when that stop is done (a
            // revocation hands the slot on only after the app's release is written).
            await entry.stopping?.value
            return
        }
        entry.runner.stop()
        entries[key]?.task = nil
        entries[key]?.stopping = task
        await task.value
        if entries[key]?.stopping == task { entries[key]?.stopping = nil }
    }

    /// Stops the apps of these slots, each writing its release, and forgets them here: the
    /// group has asked for the slots back.
    public func release(slots: [Int32]) async {
        for key in apps(in: slots) { await remove(tenant: key.tenant, name: key.name) }
    }

    /// Stops the apps of these slots without writing anything more to the changelog: the
    /// slots are someone else's already, and whatever this node writes now is fenced.
    public func abandon(slots: [Int32]) async {
        let keys = apps(in: slots)
        for key in keys { entries[key]?.runner.fenceChangelog() }
        for key in keys { await remove(tenant: key.tenant, name: key.name) }
    }

    private func apps(in slots: [Int32]) -> [AppID] {
        guard let placement = defaults.cluster?.placement else { return [] }
        let wanted = Set(slots)
        return placedApps.filter { wanted.contains(placement.slot(of: $0.value)) }.keys.sorted()
    }

    /// Stops and forgets the app.
    public func remove(tenant: String, name: String) async {
        await stop(tenant: tenant, name: name)
        let key = AppID(tenant: tenant, name: name)
        entries[key] = nil
        placedApps[key] = nil
        grids.set(key, nil)
        changes.announce(key, by: .runtime)
    }

    /// Stops and forgets a deleted tenant's apps, and removes their cgroups and the
    /// tenant's own (a leaf left behind by a kill, empty by now, goes too).
    public func removeTenant(_ tenant: String, apps: [String]) async {
        for app in apps { await remove(tenant: tenant, name: app) }
        let prefix = defaults.cluster.map { [$0.nodeID] } ?? []
        Sandbox.removeCgroups(apps.map { prefix + [tenant, $0] } + [prefix + [tenant]])
    }

    /// Stops every app (the server is shutting down); their desired state stays.
    public func stopAll() async {
        for key in entries.keys.sorted() { await stop(tenant: key.tenant, name: key.name) }
    }

    public func runner(tenant: String, name: String) -> AppRunner? {
        entries[AppID(tenant: tenant, name: name)]?.runner
    }

    /// Every runner (for metrics).
    public var runners: [(app: AppID, runner: AppRunner, running: Bool)] {
        entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value.runner, $0.value.task != nil) }
    }

    public func view(_ record: AppRecord) async -> AppView {
        guard let entry = entries[AppID(tenant: record.tenant, name: record.name)] else {
            return AppView(record: record, status: nil, records: 0, lag: nil, usage: nil, failure: nil, runsHere: false)
        }
        let progress = await entry.runner.progress()
        return AppView(
            record: record, status: entry.runner.status, records: progress.appliedRecords,
            lag: entry.task == nil ? nil : progress.lag, usage: entry.task == nil ? nil : entry.runner.usage(),
            failure: entry.failure, runsHere: entry.task != nil)
    }
}

/// The grids of every app that has a runner.
public final class GridRegistry: Sendable {
    private let table = Mutex<[AppID: GridState]>([:])

    func set(_ app: AppID, _ grids: GridState?) { table.withLock { $0[app] = grids } }

    public func grids(tenant: String, app: String) -> GridState? { table.withLock { $0[AppID(tenant: tenant, name: app)] } }
}

/// Tenants' topic ACLs, read by their apps' runners at every process start.
public final class TopicRulesRegistry: Sendable {
    private let table = Mutex<[String: TopicACL]>([:])

    func set(_ tenant: String, _ rules: TopicACL) { table.withLock { $0[tenant] = rules } }

    func rules(_ tenant: String) -> TopicACL? { table.withLock { $0[tenant] } }
}
