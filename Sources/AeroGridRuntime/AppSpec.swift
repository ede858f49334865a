public import AeroGridCore
public import AeroGridKafka
public import AeroGridSandbox
import Foundation

/// What the runtime needs to run one app.
public struct AppSpec: Sendable {
    /// The app: its logs, consumer group, cgroup path, dead-letter topic and checkpoint
    /// are named after it.
    public var id: AppID
    /// The bundle's directory (mounted read-only at /app) and its entry point in it.
    public var bundle: String
    public var entrypoint: String
    /// The directory holding the `aerogrid` Python package (mounted read-only).
    public var sdkPath: String
    public var python: String
    public var profile: CompiledProfile
    public var limits: CgroupLimits
    public var kafka: KafkaConfiguration
    public var checkpointInterval: Duration
    /// Records per records frame, at most.
    public var maxBatchRecords: Int
    /// How long the app may send nothing (not even a heartbeat) before it is killed.
    public var heartbeatTimeout: Duration
    /// How long a stopping app may take to confirm its batches and exit before it is killed.
    public var shutdownGrace: Duration = .seconds(30)
    /// What to do when a checkpointed offset is no longer in its partition.
    public var outOfRangePolicy: OutOfRangePolicy
    /// Caps that keep one app from exhausting the supervisor.
    public var appLimits: AppLimits
    /// The unprivileged host uid (and gid) the sandbox's root maps to: the tenant's own.
    public var hostUID: UInt32 = 65534
    /// In a cluster: the changelog that keeps the grids (instead of the store's checkpoints).
    public var changelog: ChangelogBinding?
    /// The cgroup path's first part, under the supervisor's root: a node's id in a cluster,
    /// so two nodes on one host (and one app on both for a moment) never share a group.
    public var cgroupPrefix: [String] = []

    public init(
        tenant: String, name: String, bundle: String, entrypoint: String = "app.py", sdkPath: String,
        python: String = "python3", profile: CompiledProfile, limits: CgroupLimits? = nil,
        kafka: KafkaConfiguration, checkpointInterval: Duration = .seconds(1), maxBatchRecords: Int = 5000,
        heartbeatTimeout: Duration = .seconds(10), outOfRangePolicy: OutOfRangePolicy = .fail,
        appLimits: AppLimits = AppLimits()
    ) {
        id = AppID(tenant: tenant, name: name)
        self.bundle = bundle
        self.entrypoint = entrypoint
        self.sdkPath = sdkPath
        self.python = python
        self.profile = profile
        let quotas = profile.quotaDefaults
        self.limits = limits ?? CgroupLimits(memoryBytes: quotas.memoryBytes, cpus: quotas.cpus, pids: quotas.pids)
        self.kafka = kafka
        self.checkpointInterval = checkpointInterval
        self.maxBatchRecords = maxBatchRecords
        self.heartbeatTimeout = heartbeatTimeout
        self.outOfRangePolicy = outOfRangePolicy
        self.appLimits = appLimits
        self.nativeCommand = nil
    }

    /// A native handler's command line, instead of the Python runner: any program that
    /// speaks docs/ipc.md on fd 3 (its directory is mounted read-only).
    public var nativeCommand: [String]?

    /// Says why the app may not consume a topic (nil: it may). The app's hello is checked
    /// against it before anything is read; a refusal ends the process with crash reason
    /// `acl`. Nil: every topic.
    public var topicPolicy: (@Sendable (String) -> String?)?

    /// The command that runs the app inside the sandbox (docs/ipc.md, "Launching").
    var command: [String] {
        if let nativeCommand { return nativeCommand }
        return [
            python, "-I", "-S", "-c",
            "import sys; sys.path.insert(0, \(pythonString(sdkPath))); from aerogrid.__main__ import main; sys.exit(main())",
            "run", entrypoint,
        ]
    }
}

/// A Python string literal for a path.
private func pythonString(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}

/// What an app does when its checkpoint points outside what a partition still holds: the
/// topic was recreated, retention passed, or the (in-memory) embedded cluster restarted.
/// Never silent: each choice is logged and shown in the status.
public enum OutOfRangePolicy: String, Sendable, CaseIterable {
    /// Do not run; the status says which partition, where the checkpoint is and what the
    /// partition holds. Fix the topic or reset the app.
    case fail
    /// Forget the grids and read every partition from its beginning.
    case resetToEarliest = "earliest"
    /// Forget the grids and read only what arrives from now on.
    case resetToLatest = "latest"
}

/// What one app may cost the supervisor, each bound in bytes (or a count of small fixed
/// things) and, where something waits, in time. Crossing a frame cap is a protocol
/// violation (the app is stopped); crossing a quota stops it with crash reason `quota` and
/// the numbers; output over its rate is dropped (and counted), never buffered without bound.
public struct AppLimits: Sendable, Equatable {
    /// Frames the app may send per second, and bytes per second.
    public var framesPerSecond: Int
    public var bytesPerSecond: Int
    /// Rows over all the app's grids, and their size in bytes as JSON (what a snapshot of
    /// them takes); one row key's UTF-8 bytes.
    public var gridRows: Int
    public var gridBytes: Int
    public var keyBytes: Int
    /// What the app's frames for one batch (grid-updates, errors, produce requests) may hold
    /// in the supervisor until its batch-done: their payloads plus 128 bytes a frame and 64
    /// a cell, about what they take in memory once decoded.
    public var pendingBytes: Int
    /// How long a batch may stay unconfirmed; past it the app is stopped (`quota`).
    public var batchTimeout: Duration
    /// What hello may declare: grids, columns per grid, bytes per column name; topics,
    /// streams and produce topics (each).
    public var grids: Int
    public var columnsPerGrid: Int
    public var columnNameBytes: Int
    public var declaredTopics: Int
    /// The app's log (stdout, stderr and log frames).
    public var log: AppLog.Limits

    public init(
        framesPerSecond: Int = 200_000, bytesPerSecond: Int = 64 << 20, gridRows: Int = 100_000,
        gridBytes: Int = 16 << 20, keyBytes: Int = 1 << 10, pendingBytes: Int = 32 << 20, batchTimeout: Duration = .seconds(300),
        grids: Int = 64, columnsPerGrid: Int = 1_024, columnNameBytes: Int = 256, declaredTopics: Int = 64,
        log: AppLog.Limits = AppLog.Limits()
    ) {
        self.framesPerSecond = framesPerSecond
        self.bytesPerSecond = bytesPerSecond
        self.gridRows = gridRows
        self.gridBytes = gridBytes
        self.keyBytes = keyBytes
        self.pendingBytes = pendingBytes
        self.batchTimeout = batchTimeout
        self.grids = grids
        self.columnsPerGrid = columnsPerGrid
        self.columnNameBytes = columnNameBytes
        self.declaredTopics = declaredTopics
        self.log = log
    }
}
