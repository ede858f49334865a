import AeroGridCore
import AeroGridIPC
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridServer
import AeroGridStore
import ArgumentParser
import Foundation
import Logging

struct AppCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app",
        abstract: "Apps: Python bundles that turn Kafka records into grids.",
        subcommands: [
            AppDeploy.self, AppList.self, AppStatusCommand.self, AppStart.self, AppStop.self, AppRestart.self,
            AppDelete.self, AppLogs.self, Run.self,
        ]
    )

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one app in the foreground, sandboxed, until Ctrl-C.",
            discussion: """
                Prints a JSON status line every --status-interval seconds, and the app's grids \
                as one JSON line when it stops. State (grids and offsets, checkpointed together) \
                is kept in --data-dir, so a rerun continues where the last one stopped.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The app's directory: app.toml and the code.")
        var directory: String

        @Option(help: "Kafka bootstrap servers, host:port[,host:port…].")
        var bootstrap: String

        @Option(help: "Where checkpoints are kept.")
        var dataDir: String = ".aerogrid"

        @Option(help: "The tenant the app runs for (the cgroup and consumer group name).")
        var tenant: String = "local"

        @Option(help: "Seccomp profile with quota defaults (default: sandbox-profiles/python.json).")
        var profile: String?

        @Option(help: "Directory holding the aerogrid Python package (default: the repository's python/).")
        var sdk: String?

        @Option(help: "Seconds between checkpoints.")
        var checkpointInterval: Double = 1

        @Option(help: "Seconds between status lines.")
        var statusInterval: Double = 1

        @Option(name: .customLong("kafka"), help: "A librdkafka property, as KEY=VALUE (repeatable).")
        var kafkaProperties: [String] = []

        @Option(help: "When the checkpoint is outside what Kafka holds: fail, earliest or latest (both reset the grids).")
        var onOutOfRange = OutOfRangeOption(.fail)

        func run() async throws {
            let logger = global.makeLogger(label: "aerogrid.runtime")
            let manifest = try BundleManifest.load(directory: directory)
            let profilePath = try profile ?? InstallLayout.resource("sandbox-profiles/python.json")
            let sdkPath = try sdk ?? InstallLayout.resource("python")
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
            let store = try Store(path: "\(dataDir)/aerogrid.sqlite")
            var properties: [String: String] = [:]
            for pair in kafkaProperties {
                guard let equals = pair.firstIndex(of: "=") else { throw ValidationError("--kafka takes KEY=VALUE, not '\(pair)'") }
                properties[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            let spec = AppSpec(
                tenant: try ResourceName(tenant, kind: "tenant").value, name: manifest.name,
                bundle: URL(fileURLWithPath: directory).standardizedFileURL.path, entrypoint: manifest.entrypoint,
                sdkPath: URL(fileURLWithPath: sdkPath).standardizedFileURL.path,
                profile: try CompiledProfile.load(path: profilePath),
                kafka: KafkaConfiguration(bootstrapServers: bootstrap, properties: properties),
                checkpointInterval: .milliseconds(Int64(checkpointInterval * 1000)), outOfRangePolicy: onOutOfRange.policy)
            let runner = AppRunner(spec: spec, store: store, logger: logger)

            let running = Task { try await runner.run() }
            let reporting = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(Int64(statusInterval * 1000)))
                    printLine(statusLine(runner, progress: await runner.progress()))
                }
            }
            let signal = await waitForTermination()
            logger.info("stopping the app (signal \(signal))")
            runner.stop()
            try await running.value
            reporting.cancel()
            printLine(statusLine(runner, progress: (runner.grids.appliedRecords, nil)))
            printLine(gridsLine(runner))
        }

    }
}

/// A JSON status line: `{"event":"status", …}`, in the API's words (`state`, `records`,
/// `crash_reason` as in an app of the REST API).
func statusLine(_ runner: AppRunner, progress: (appliedRecords: Int, lag: Int64?)) -> String {
    let status = runner.status
    let crash = status.lifecycle.lastCrash
    var backoffSeconds: Double?
    if case .backoff(let delay, _) = status.lifecycle.state { backoffSeconds = Double(delay.components.seconds) }
    let line = RunStatus(
        state: status.lifecycle.state.name, restarts: status.lifecycle.restarts, records: progress.appliedRecords,
        deliveredRecords: status.deliveredRecords, failedRecords: status.failedRecords, checkpoints: status.checkpoints,
        epoch: runner.grids.epoch, resets: status.resets, lag: progress.lag, lastCrash: crash?.description,
        crashReason: crash?.code, backoffSeconds: backoffSeconds)
    let data = (try? RunStatus.encoder.encode(line)) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

/// `aerogrid app run`'s status line. Absent values are left out.
struct RunStatus: Encodable {
    let event = "status"
    let state: String
    let restarts: Int
    /// Records applied to the grids (confirmed by the app).
    let records: Int
    /// Records sent to the app, applied or not yet.
    let deliveredRecords: Int
    let failedRecords: Int
    let checkpoints: Int
    let epoch: Int64
    let resets: Int
    let lag: Int64?
    let lastCrash: String?
    let crashReason: String?
    let backoffSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case event, state, restarts, records, checkpoints, epoch, resets, lag
        case deliveredRecords = "delivered_records"
        case failedRecords = "failed_records"
        case lastCrash = "last_crash"
        case crashReason = "crash_reason"
        case backoffSeconds = "backoff_seconds"
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

/// The app's grids: `{"event":"grids","grids":{name:{"version":…,"rows":{key:row}}}}`.
func gridsLine(_ runner: AppRunner) -> String {
    // Written directly: JSONSerialization would turn a cell's 4.0 into 4.
    var json = JSONWriter()
    json.raw("{\"epoch\":")
    json.number(runner.grids.epoch)
    json.raw(",\"event\":\"grids\",\"grids\":{")
    var first = true
    for name in runner.grids.gridNames.sorted() {
        guard let snapshot = runner.grids.snapshot(name) else { continue }
        if !first { json.raw(",") }
        first = false
        json.string(name)
        json.raw(":{\"columns\":")
        json.strings(snapshot.grid.columns)
        json.raw(",\"rows\":")
        json.rowsByKey(snapshot.grid.rows)
        json.raw(",\"version\":")
        json.number(snapshot.grid.version)
        json.raw("}")
    }
    json.raw("}}")
    return String(decoding: json.bytes, as: UTF8.self)
}

/// Files that ship with the platform (profiles, the Python SDK), found next to the binary:
/// in a source checkout the binary is in .build/…, below the repository root.
enum InstallLayout {
    static func resource(_ relative: String) throws -> String {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = directory.appendingPathComponent(relative).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        let fromWorkingDirectory = FileManager.default.currentDirectoryPath + "/" + relative
        if FileManager.default.fileExists(atPath: fromWorkingDirectory) { return fromWorkingDirectory }
        throw ValidationError("cannot find \(relative) next to the aerogrid binary or in the current directory")
    }
}

/// `--on-out-of-range` as ArgumentParser reads it.
struct OutOfRangeOption: ExpressibleByArgument {
    let policy: OutOfRangePolicy

    init(_ policy: OutOfRangePolicy) {
        self.policy = policy
    }

    init?(argument: String) {
        guard let policy = OutOfRangePolicy(rawValue: argument) else { return nil }
        self.policy = policy
    }

    var defaultValueDescription: String { policy.rawValue }
    static var allValueStrings: [String] { OutOfRangePolicy.allCases.map(\.rawValue) }
}
