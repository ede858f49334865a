import AeroGridCore
public import AeroGridKafka
public import AeroGridRuntime
public import AeroGridSandbox
public import AeroGridStore
import Foundation
public import Logging

/// What every app of this server runs with, unless its record says otherwise.
public struct RuntimeDefaults: Sendable {
    public var kafka: KafkaConfiguration
    public var profile: CompiledProfile
    public var sdkPath: String
    public var limits: CgroupLimits?
    public var checkpointInterval: Duration = .seconds(1)
    /// What an app does when its checkpoint is no longer in Kafka (see `OutOfRangePolicy`).
    public var outOfRangePolicy: OutOfRangePolicy = .fail

    public init(kafka: KafkaConfiguration, profile: CompiledProfile, sdkPath: String, limits: CgroupLimits? = nil) {
        self.kafka = kafka
        self.profile = profile
        self.sdkPath = sdkPath
        self.limits = limits
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
}

/// Keeps the runners of every tenant's apps: starts them from their bundles, stops them
/// with a last checkpoint, and keeps a stopped app's runner so its grids and log stay
/// readable. One actor, so a start and a stop of the same app never interleave.
public actor AppSupervisor {
    private struct Entry {
        let runner: AppRunner
        let bundleDigest: String
        var task: Task<Void, Never>?
        var failure: String?
    }

    private let store: Store
    private let bundles: BundleStore
    private let defaults: RuntimeDefaults
    private let logger: Logger
    private var entries: [String: Entry] = [:]

    public init(store: Store, bundles: BundleStore, defaults: RuntimeDefaults, logger: Logger) {
        self.store = store
        self.bundles = bundles
        self.defaults = defaults
        self.logger = logger
    }

    private static func key(_ tenant: String, _ name: String) -> String { "\(tenant)/\(name)" }

    /// Starts the app's runner on its current bundle (a no-op when it already runs it).
    public func start(_ app: AppRecord) {
        let key = Self.key(app.tenant, app.name)
        if let entry = entries[key], entry.task != nil, entry.bundleDigest == app.bundleDigest { return }
        var spec = AppSpec(
            tenant: app.tenant, name: app.name, bundle: bundles.path(digest: app.bundleDigest), entrypoint: app.entrypoint,
            sdkPath: defaults.sdkPath, profile: defaults.profile, limits: defaults.limits, kafka: defaults.kafka,
            checkpointInterval: defaults.checkpointInterval, outOfRangePolicy: defaults.outOfRangePolicy)
        spec.shutdownGrace = .seconds(10)
        let runner = AppRunner(spec: spec, store: store, logger: logger)
        let task = Task { [logger] in
            do {
                try await runner.run()
            } catch {
                logger.error("app \(key) stopped on an error: \(error)")
                await self.runnerFailed(key, runner: runner, error: "\(error)")
            }
        }
        entries[key] = Entry(runner: runner, bundleDigest: app.bundleDigest, task: task)
    }

    private func runnerFailed(_ key: String, runner: AppRunner, error: String) {
        guard entries[key]?.runner === runner else { return }
        entries[key]?.failure = error
        entries[key]?.task = nil
    }

    /// Stops the app (its batch finishes and a last checkpoint is written) and waits.
    public func stop(tenant: String, name: String) async {
        let key = Self.key(tenant, name)
        guard let entry = entries[key], let task = entry.task else { return }
        entry.runner.stop()
        entries[key]?.task = nil
        await task.value
    }

    /// Stops and forgets the app.
    public func remove(tenant: String, name: String) async {
        await stop(tenant: tenant, name: name)
        entries[Self.key(tenant, name)] = nil
    }

    /// Stops every app (the server is shutting down); their desired state stays.
    public func stopAll() async {
        for key in entries.keys.sorted() {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            await stop(tenant: parts[0], name: parts[1])
        }
    }

    public func runner(tenant: String, name: String) -> AppRunner? {
        entries[Self.key(tenant, name)]?.runner
    }

    public var runningCount: Int { entries.values.filter { $0.task != nil }.count }

    public func view(_ record: AppRecord) async -> AppView {
        guard let entry = entries[Self.key(record.tenant, record.name)] else {
            return AppView(record: record, status: nil, records: 0, lag: nil, usage: nil, failure: nil)
        }
        let progress = await entry.runner.progress()
        return AppView(
            record: record, status: entry.runner.status, records: progress.appliedRecords,
            lag: entry.task == nil ? nil : progress.lag, usage: entry.task == nil ? nil : entry.runner.usage(),
            failure: entry.failure)
    }
}
