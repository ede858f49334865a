import AeroGridCore
import AeroGridIPC
import AeroGridKafka
public import AeroGridSandbox
public import AeroGridStore
import Foundation
public import Logging
import Synchronization

/// Runs one app for as long as it should run: its Kafka consumer, its grids and their
/// checkpoints, and its sandboxed process, started again (from the applied state) when it
/// dies. Records go to the app in batches; a batch's grid changes are applied only when
/// the app confirms it, so the grids are exact whatever dies when.
///
/// The parts have types of their own: `Checkpointer` (checkpoints and resets),
/// `DeadLetters`, `StartPositions` (start offsets, the out-of-range policy), `BatchPump`,
/// `OutputForwarder`, and `AppLifecycle` (states and the restart backoff). This type wires
/// them to one process at a time and says when what it runs changes. It is longer than our
/// usual 300 lines because one process's life — launch, watchdog, hello, restore, batches,
/// end and why — reads best in one place, in the order it happens.
public final class AppRunner: Sendable {
    public let spec: AppSpec
    public let grids = GridState()
    /// The app's own log (stdout, stderr, log frames), bounded.
    public let log: AppLog

    /// What the runner is doing, for status lines and the API.
    public struct Status: Sendable, Equatable {
        public var lifecycle = AppLifecycle()
        public var deliveredRecords = 0
        public var batchesSent = 0
        public var checkpoints = 0
        /// Records sent to the dead-letter topic.
        public var failedRecords = 0
        /// Times the grids were reset by the out-of-range policy.
        public var resets = 0
        /// Processes the kernel's OOM killer ended.
        public var oomKills = 0
    }

    private let store: Store
    private let logger: Logger
    /// Called after the lifecycle changes state, the grids are declared, or they start a
    /// new epoch: what the stream and the apps list follow.
    private let onChange: @Sendable () -> Void
    private let statusState = Mutex(Status())
    private let stopRequested = Atomic<Bool>(false)
    private let deadLetters: DeadLetters
    private let checkpoints: Checkpointer
    /// In a cluster: where the grids are kept instead of the store (`AppChangelog`).
    private let changelog: AppChangelog?
    private let currentProcess = Mutex<SandboxedProcess?>(nil)
    private let currentConnection = Mutex<AppConnection?>(nil)
    private let currentSession = Mutex<AppSession?>(nil)
    /// Batch latencies (sent to applied) not yet taken by `takeBatchLatencies`, bounded.
    private let batchLatencies = Mutex<[Duration]>([])
    /// The cgroup limits: the spec's, until an operator changes them while the app runs.
    private let limits: Mutex<CgroupLimits>
    /// The partitions the app consumes, and the consumer reading them, once running.
    private let consumedPartitions = Mutex<[TopicPartition]>([])
    private let activeConsumer = Mutex<KafkaConsumer?>(nil)

    /// Where records the app fails on go, with the error: `<tenant>.<app>.dlq`.
    public var deadLetterTopic: String { deadLetters.topic }

    public init(spec: AppSpec, store: Store, logger: Logger, onChange: @escaping @Sendable () -> Void = {}) {
        self.spec = spec
        self.store = store
        self.onChange = onChange
        limits = Mutex(spec.limits)
        var logger = logger
        logger[metadataKey: "aerogrid.tenant"] = "\(spec.id.tenant)"
        logger[metadataKey: "aerogrid.app"] = "\(spec.id.name)"
        self.logger = logger
        log = AppLog(limits: spec.appLimits.log, logger: logger)
        deadLetters = DeadLetters(app: spec.id, log: log, logger: logger)
        checkpoints = Checkpointer(app: spec.id, grids: grids, store: store, logger: logger)
        changelog = spec.changelog.map { [grids] in AppChangelog(binding: $0, grids: grids, logger: logger) }
        changelog?.onBroken { [weak self, logger] reason in
            // The grids hold changes the changelog may not: the next process starts from it.
            logger.error("\(reason): restarting the app from the changelog")
            self?.currentProcess.withLock { $0 }?.kill()
        }
    }

    public var status: Status {
        var status = statusState.withLock { $0 }
        status.failedRecords = deadLetters.count
        status.checkpoints = checkpoints.count
        return status
    }

    /// Changes the lifecycle, then says so.
    @discardableResult
    private func lifecycle<T>(_ change: (inout AppLifecycle) -> T) -> T {
        let result = statusState.withLock { change(&$0.lifecycle) }
        onChange()
        return result
    }

    /// Asks the app to shut down: the current batch finishes, a last checkpoint is written,
    /// and `run` returns.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        lifecycle { $0.stop() }
        currentConnection.withLock { $0 }?.sendShutdown(reason: "app stopped")
        // A pump waiting for the app to confirm a batch stops waiting.
        currentSession.withLock { $0 }?.credits.finish()
    }

    private var stopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Writes nothing more to the changelog: another node owns the app now.
    public func fenceChangelog() {
        changelog?.fence()
    }

    /// Runs until `stop()`.
    public func run() async throws {
        if let changelog {
            try await changelog.claimAndRestore()
        } else {
            try await checkpoints.restore()
        }
        onChange()
        try deadLetters.open(kafka: spec.kafka)
        // An offset that falls out of range while running is an error event, not a silent
        // jump: the out-of-range policy decides what happens, on the next start.
        var kafka = spec.kafka
        kafka.properties["auto.offset.reset"] = "error"
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                // In a cluster, under the app's id too: a re-created app is another group, and
                // the offsets a stop commits say the app has run (see `startOffsets`).
                configuration: KafkaConsumerConfiguration(
                    kafka: kafka,
                    groupID: "aerogrid.\(spec.id.tenant).\(spec.id.name)" + (spec.changelog.map { ".\($0.appID)" } ?? "")),
                logger: logger)
        } catch {
            await deadLetters.close()
            throw error
        }
        activeConsumer.withLock { $0 = consumer }
        // In a cluster each batch goes to the changelog as it is applied: nothing periodic.
        let periodic = changelog == nil ? checkpoints.every(spec.checkpointInterval, committingTo: consumer) : Task {}
        while !stopping {
            lifecycle { $0.startProcess() }
            let started = ContinuousClock.now
            var reason: CrashReason?
            do {
                if let changelog, changelog.needsRestore {
                    try await changelog.claimAndRestore()
                    onChange()
                }
                reason = try await runProcess(consumer: consumer)
            } catch let error as RuntimeError {
                reason = .startup(error.description)
            } catch {
                reason = .startup("\(error)")
            }
            let uptime = ContinuousClock.now - started
            if reason == .oom { statusState.withLock { $0.oomKills += 1 } }
            guard let delay = lifecycle({ $0.processEnded(stopping ? nil : reason, uptime: uptime) }) else { break }
            logger.warning(
                "the app \(reason.map { "\($0)" } ?? "ended"): starting it again in \(delay)",
                metadata: ["aerogrid.crash": "\(reason?.code ?? "exit")"])
            // The backoff, cut short if the app is stopped meanwhile.
            let until = ContinuousClock.now + delay
            while !stopping && ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(50)) }
        }
        lifecycle { $0.stop() }
        // The last checkpoint waits for the periodic one to finish: two checkpoint writes
        // must never overlap, or an older one could land after a newer one.
        periodic.cancel()
        await periodic.value
        if let changelog {
            do {
                // Committed to the app's own group before the release: a later start that
                // finds nothing of the app in the changelog knows it has run, and that its
                // grids went with the changelog's retention.
                let offsets = grids.offsets
                if !offsets.isEmpty {
                    try? await consumer.commit(Dictionary(uniqueKeysWithValues: offsets.map { (TopicPartition($0.key.topic, $0.key.partition), $0.value) }))
                }
                try await changelog.release()
            } catch {
                logger.error("the app's last changelog records may not have been written (the next owner restores what was): \(error)")
            }
        } else {
            await checkpoints.write(committingTo: consumer)
        }
        activeConsumer.withLock { $0 = nil }
        await consumer.close()
        await deadLetters.close()
        lifecycle { _ = $0.processEnded(nil, uptime: .zero) }
    }

    /// One process, from launch to its end: why it ended, or nil when it was asked to.
    private func runProcess(consumer: KafkaConsumer) async throws -> CrashReason? {
        let killReason = KillReason()
        let session = AppSession(
            grids: grids, log: log, limits: spec.appLimits, changelog: changelog,
            onQuotaExceeded: { detail in killReason.set(.quota(detail)) },
            onRecordErrors: { [deadLetters] errors, frame in deadLetters.failed(errors, frame: frame) },
            onProduce: { [logger] requests in
                logger.debug("dropping \(requests.count) produce requests: producing from apps is not enabled")
            },
            onBatchApplied: { [self] latency in
                batchLatencies.withLock { if $0.count < 10_000 { $0.append(latency) } }
            })
        let process: SandboxedProcess
        do {
            process = try Sandbox.launch(sandboxSpec())
        } catch {
            return .startup(error.message)
        }
        if let degradation = process.degradation { logger.warning("\(degradation)") }
        let output = OutputForwarder(log: log, limits: spec.appLimits.log)
        output.start(fd: process.stdout!, stream: "stdout")
        output.start(fd: process.stderr!, stream: "stderr")
        let connection = AppConnection(
            fd: process.ipcSocket!, limits: spec.appLimits, log: log,
            onFrame: { frame, bytes throws(ProtocolViolation) in try session.handle(frame, bytes: bytes) },
            onEnd: { violation in
                if let violation {
                    killReason.set(.protocolViolation(violation.message))
                    process.kill()
                }
                session.end()
            })
        currentProcess.withLock { $0 = process }
        currentConnection.withLock { $0 = connection }
        currentSession.withLock { $0 = session }
        defer {
            currentProcess.withLock { $0 = nil }
            currentConnection.withLock { $0 = nil }
            currentSession.withLock { $0 = nil }
        }
        let ended = Task { await process.wait() }
        let watchdog = watch(process, connection: connection, session: session, killReason: killReason)
        defer { watchdog.cancel() }
        if stopping { connection.sendShutdown(reason: "app stopped") }

        do {
            try await serve(session: session, connection: connection, consumer: consumer)
        } catch let refused as TopicRefused {
            killReason.set(.topicRefused(refused.message))
            process.kill()
        } catch {
            killReason.set(.startup("\(error)"))
            process.kill()
        }
        connection.close()
        let termination = await Self.waitWithGrace(process, ended: ended, grace: .seconds(5))
        session.end()
        if let reason = killReason.reason { return reason }
        if stopping, case .exited(0) = termination { return nil }
        switch termination {
        case .exited(let code): return .exit(code)
        case .signaled(let signal): return .signal(signal)
        case .oom: return .oom
        case .seccomp: return .seccomp
        case .timeout: return .heartbeatTimeout
        case .setupFailed(let message): return .startup(message)
        }
    }

    /// The sandbox the app's process runs in.
    private func sandboxSpec() -> SandboxSpec {
        var sandbox = SandboxSpec(command: spec.command)
        sandbox.filter = spec.profile.filter
        sandbox.limits = limits.withLock { $0 }
        sandbox.openFiles = spec.profile.quotaDefaults.openFiles ?? 256
        sandbox.tmpBytes = spec.profile.quotaDefaults.tmpBytes ?? 64 << 20
        sandbox.readOnlyPaths = [spec.sdkPath]
        sandbox.bundle = spec.bundle
        sandbox.environment = [("AEROGRID_IPC_FD", "3"), ("LANG", "C.UTF-8"), ("PYTHONDONTWRITEBYTECODE", "1")]
        sandbox.cgroupPath = spec.cgroupPrefix + [spec.id.tenant, spec.id.name]
        sandbox.hostUID = spec.hostUID
        sandbox.withIPCSocket = true
        sandbox.output = .pipes
        return sandbox
    }

    /// Ends a process that sends nothing (not even a heartbeat) for the heartbeat timeout:
    /// it is stuck. Or that keeps a batch unconfirmed past the batch timeout: it holds what
    /// it was sent for that batch, and its partitions.
    private func watch(
        _ process: SandboxedProcess, connection: AppConnection, session: AppSession,
        killReason: KillReason
    ) -> Task<Void, any Error> {
        Task { [heartbeatTimeout = spec.heartbeatTimeout, batchTimeout = spec.appLimits.batchTimeout] in
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                if connection.silence > heartbeatTimeout {
                    killReason.set(.heartbeatTimeout)
                    process.kill()
                    return
                }
                if let (id, age) = session.oldestUnconfirmed, age > batchTimeout {
                    killReason.set(.quota("batch \(id) was not confirmed within \(batchTimeout) (the limit for one batch)"))
                    process.kill()
                    return
                }
            }
        }
    }

    /// Hello, restore, then batches until the process ends or the app is stopped.
    private func serve(session: AppSession, connection: AppConnection, consumer: KafkaConsumer) async throws {
        guard let hello = await session.hello(timeout: .seconds(20)) else {
            if session.hasEnded {
                throw RuntimeError("the app ended before its hello: its code failed to load (the traceback is in its log)")
            }
            throw RuntimeError("the app sent no hello within 20 s of starting")
        }
        guard hello.protocolVersion.split(separator: ".").first == "\(IPCLimits.protocolMajor)" else {
            connection.sendShutdown(reason: "protocol \(hello.protocolVersion) is not supported (this supervisor speaks \(IPCLimits.protocolVersion))")
            throw RuntimeError("the app speaks protocol \(hello.protocolVersion); this supervisor speaks \(IPCLimits.protocolVersion)")
        }
        // Internal topics first: no policy, however wide, lets an app read or write them.
        let refusals =
            hello.consumedTopics.compactMap { InternalTopics.refusal($0) ?? spec.topicPolicy?($0) }
            + hello.produces.compactMap { InternalTopics.refusal($0) }
        if let refusal = refusals.first {
            connection.sendShutdown(reason: refusal)
            throw TopicRefused(message: refusal)
        }
        let metadata = try await consumer.metadata()
        var consumed: [TopicPartition] = []
        for topic in hello.consumedTopics {
            guard let found = metadata.topics.first(where: { $0.name == topic && $0.error == nil }) else {
                connection.sendShutdown(reason: "topic '\(topic)' does not exist")
                throw RuntimeError("the app consumes topic '\(topic)', which does not exist in the Kafka cluster")
            }
            consumed += found.partitions.map { TopicPartition(topic, $0.id) }
        }
        let partitions = try await startOffsets(for: consumed, consumer: consumer, connection: connection)
        session.accept(hello)
        grids.declare(hello.grids.map { ($0.name, $0.columns) })
        changelog?.declare(Dictionary(hello.grids.map { ($0.name, $0.columns) }, uniquingKeysWith: { first, _ in first }))
        onChange()
        for grid in hello.grids {
            guard let snapshot = grids.snapshot(grid.name), !snapshot.grid.rows.isEmpty else { continue }
            for frame in SupervisorFrames.restore(grid: grid.name, rows: snapshot.grid.rows.sorted { $0.key < $1.key }) {
                connection.send(frame)
            }
        }
        connection.send(SupervisorFrames.restoreDone)
        try await consumer.assign(partitions)
        consumedPartitions.withLock { $0 = partitions.keys.sorted() }
        lifecycle { $0.processRunning() }
        logger.info("running: \(partitions.count) partitions of \(hello.consumedTopics.joined(separator: ", "))")

        let pump = BatchPump(
            consumer: consumer, session: session, connection: connection, deadLetters: deadLetters,
            maxRecords: spec.maxBatchRecords, logger: logger)
        try await pump.run(keepGoing: { !stopping }) { records in
            statusState.withLock {
                $0.deliveredRecords += records
                $0.batchesSent += 1
            }
        }
        if stopping { connection.sendShutdown(reason: "app stopped") }
        // Wait for the process to end (on shutdown, after confirming what it was sent), but
        // not for ever: an app that ignores shutdown, or no longer reads its socket, is
        // killed once the grace period is over.
        let deadline = ContinuousClock.now + spec.shutdownGrace
        while !session.hasEnded && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Where each partition starts (`StartPositions`); an out-of-range checkpoint fails the
    /// start or resets the grids, as the app's policy says.
    private func startOffsets(
        for consumed: [TopicPartition], consumer: KafkaConsumer,
        connection: AppConnection
    ) async throws -> [TopicPartition: KafkaStartOffset] {
        if let changelog, changelog.restoredNothing, !consumed.isEmpty,
            try await consumer.committed(consumed).values.contains(where: { $0 != nil })
        {
            // The app has run and stopped (its group has offsets), but the changelog holds
            // nothing of it: its last snapshot went with the topic's retention while it was
            // stopped.
            let what =
                "the changelog no longer holds the app's grids: its last snapshot went with the topic's retention while the app was stopped "
                + "(changelog_retention_bytes is too small for its slot's traffic)"
            guard spec.outOfRangePolicy != .fail else {
                connection.sendShutdown(reason: "grids lost to the changelog's retention")
                throw RuntimeError("\(what) (policy: fail; delete the app and deploy it again, or run it with an out-of-range policy of earliest or latest)")
            }
            logger.warning("\(what): starting from empty grids (policy \(spec.outOfRangePolicy.rawValue))")
        }
        let positions = StartPositions(consumed: consumed, policy: spec.outOfRangePolicy)
        let outOfRange = try await positions.outOfRange(applied: grids.offsets) { try await consumer.watermarks($0) }
        if !outOfRange.isEmpty {
            let what = "the checkpoint is out of range: \(outOfRange.joined(separator: "; "))"
            switch spec.outOfRangePolicy {
            case .fail:
                connection.sendShutdown(reason: "checkpoint out of range")
                throw RuntimeError("\(what) (policy: fail; reset the app, or run it with an out-of-range policy of earliest or latest)")
            case .resetToEarliest, .resetToLatest:
                logger.warning("\(what): resetting the grids and reading from the \(spec.outOfRangePolicy.rawValue) offsets (policy)")
                if let changelog { try changelog.reset() } else { try await checkpoints.reset() }
                statusState.withLock { $0.resets += 1 }
                onChange()
            }
        }
        return positions.starts(applied: grids.offsets, afterReset: !outOfRange.isEmpty)
    }

    /// Waits for the process; past `grace` kills its whole cgroup.
    private static func waitWithGrace(_ process: SandboxedProcess, ended: Task<Termination, Never>, grace: Duration) async -> Termination {
        let killer = Task {
            try await Task.sleep(for: grace)
            process.kill()
        }
        let termination = await ended.value
        killer.cancel()
        return termination
    }

    /// New cgroup limits: applied to the running process's cgroup at once (no restart), and
    /// to every process started after.
    public func updateLimits(_ new: CgroupLimits) throws(SandboxError) {
        try new.validate()
        limits.withLock { $0 = new }
        try currentProcess.withLock { $0 }?.updateLimits(new)
    }

    /// The batch latencies measured since the last call (for a metrics histogram).
    public func takeBatchLatencies() -> [Duration] {
        batchLatencies.withLock { latencies in
            defer { latencies.removeAll(keepingCapacity: true) }
            return latencies
        }
    }

    /// The sandbox's cgroup reading (cpu, memory, pids) while a process runs.
    public func usage() -> CgroupUsage? {
        currentProcess.withLock { $0 }?.usage()
    }

    /// Records applied so far, and records not yet applied: per consumed partition its end
    /// minus the applied offset (or minus its start when none is applied yet). Both come
    /// from one snapshot, so they agree; `lag` is nil before the app runs. The ends are the
    /// consumer's latest fetch responses, so this costs no request while the app reads.
    public func progress() async -> (appliedRecords: Int, lag: Int64?) {
        let (applied, appliedRecords) = grids.progress
        guard let consumer = activeConsumer.withLock({ $0 }) else { return (appliedRecords, nil) }
        let partitions = consumedPartitions.withLock { $0 }
        guard !partitions.isEmpty, let marks = try? await consumer.knownWatermarks(partitions) else { return (appliedRecords, nil) }
        let lag = partitions.reduce(Int64(0)) { total, tp in
            guard let mark = marks[tp] else { return total }
            let position = applied[SourcePartition(topic: tp.topic, partition: tp.partition)] ?? mark.low
            return total + max(0, mark.high - position)
        }
        return (appliedRecords, lag)
    }
}

/// Why the runner ended a process: the first reason given is the one reported.
private final class KillReason: Sendable {
    private let first = Mutex<CrashReason?>(nil)

    func set(_ reason: CrashReason) { first.withLock { $0 = $0 ?? reason } }

    var reason: CrashReason? { first.withLock { $0 } }
}

/// The app asked for a topic its tenant may not read.
struct TopicRefused: Error {
    let message: String
}

public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
