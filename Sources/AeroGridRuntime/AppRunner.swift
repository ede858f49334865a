public import AeroGridCore
import AeroGridIPC
public import AeroGridKafka
public import AeroGridSandbox
public import AeroGridStore
import Foundation
public import Logging
import Synchronization

/// Runs one app for as long as it should run: its Kafka consumer, its grids and their
/// checkpoints, and its sandboxed process, started again (from the applied state) when it
/// dies. Records go to the app in batches; a batch's grid changes are applied only when
/// the app confirms it, so the grids are exact whatever dies when.
public final class AppRunner: Sendable {
    public let spec: AppSpec
    public let grids = GridState()

    /// What the runner is doing, for status lines and the API.
    public struct Status: Sendable, Equatable {
        public var lifecycle = AppLifecycle()
        public var deliveredRecords = 0
        public var batchesSent = 0
        public var checkpoints = 0
        public var failedRecords = 0
        /// Times the grids were reset by the out-of-range policy.
        public var resets = 0
        /// Processes the kernel's OOM killer ended.
        public var oomKills = 0
    }

    private let store: Store
    private let logger: Logger
    private let statusState = Mutex(Status())
    private let stopRequested = Atomic<Bool>(false)
    private let currentProcess = Mutex<SandboxedProcess?>(nil)
    /// Batch latencies (sent to applied) not yet taken by `takeBatchLatencies`, bounded.
    private let batchLatencies = Mutex<[Duration]>([])
    /// The cgroup limits: the spec's, until an operator changes them while the app runs.
    private let limits: Mutex<CgroupLimits>
    private let currentConnection = Mutex<AppConnection?>(nil)
    private let currentSession = Mutex<AppSession?>(nil)
    /// One store write at a time: a checkpoint's delta taken, written (or put back) as a
    /// whole before a reset may clear the state, and the other way round.
    private let storeWrites = AsyncCredits(limit: 1)
    private let nextBatchID = Atomic<UInt64>(1)
    /// The partitions the app consumes, and the consumer reading them, once running.
    private let consumedPartitions = Mutex<[TopicPartition]>([])
    private let activeConsumer = Mutex<KafkaConsumer?>(nil)
    /// Writes dead letters; made when the runner starts.
    private let producer = Mutex<KafkaProducer?>(nil)

    /// Where records the app fails on go, with the error: `<tenant>.<app>.dlq`.
    public var deadLetterTopic: String { "\(spec.tenant).\(spec.name).dlq" }

    /// The app's own log (stdout, stderr, log frames), bounded.
    public let log: AppLog

    public init(spec: AppSpec, store: Store, logger: Logger) {
        self.spec = spec
        self.store = store
        limits = Mutex(spec.limits)
        var logger = logger
        logger[metadataKey: "aerogrid.tenant"] = "\(spec.tenant)"
        logger[metadataKey: "aerogrid.app"] = "\(spec.name)"
        self.logger = logger
        log = AppLog(limits: spec.appLimits.log, logger: logger)
    }

    public var status: Status { statusState.withLock { $0 } }

    /// Asks the app to shut down: the current batch finishes, a last checkpoint is written,
    /// and `run` returns.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        statusState.withLock { $0.lifecycle.stop() }
        currentConnection.withLock { $0 }?.sendShutdown(reason: "app stopped")
        // A pump waiting for the app to confirm a batch stops waiting.
        currentSession.withLock { $0 }?.credits.finish()
    }

    private var stopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Runs until `stop()`.
    public func run() async throws {
        let checkpoint = try await store.loadCheckpoint(app: spec.storeKey)
        let epoch = try await store.nextEpoch(app: spec.storeKey)
        grids.restore(checkpoint, epoch: epoch)
        logger.info("starting from the checkpoint", metadata: [
            "aerogrid.epoch": "\(epoch)", "aerogrid.grids": "\(checkpoint.grids.count)",
            "aerogrid.partitions": "\(checkpoint.offsets.count)"])

        let dlqProducer = try KafkaProducer(configuration: spec.kafka, logger: logger)
        producer.withLock { $0 = dlqProducer }
        // In the background: a cluster that creates topics on first use (the embedded one)
        // only answers CreateTopics with a timeout.
        Task { await ensureDeadLetterTopic() }
        // An offset that falls out of range while running is an error event, not a silent
        // jump: the out-of-range policy decides what happens, on the next start.
        var kafka = spec.kafka
        kafka.properties["auto.offset.reset"] = "error"
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "aerogrid.\(spec.tenant).\(spec.name)"),
            logger: logger)
        activeConsumer.withLock { $0 = consumer }
        let checkpoints = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: spec.checkpointInterval)
                guard !Task.isCancelled else { return }
                // In a task of its own: cancelling the loop (at stop) interrupts its sleep,
                // never a write in progress.
                await Task { await writeCheckpoint(consumer: consumer) }.value
            }
        }
        while !stopping {
            statusState.withLock { $0.lifecycle.startProcess() }
            let started = ContinuousClock.now
            var reason: CrashReason?
            do {
                reason = try await runProcess(consumer: consumer)
            } catch let error as RuntimeError {
                reason = .startup(error.description)
            } catch {
                reason = .startup("\(error)")
            }
            let uptime = ContinuousClock.now - started
            if reason == .oom { statusState.withLock { $0.oomKills += 1 } }
            guard let delay = statusState.withLock({ $0.lifecycle.processEnded(stopping ? nil : reason, uptime: uptime) }) else { break }
            logger.warning("the app \(reason.map { "\($0)" } ?? "ended"): starting it again in \(delay)",
                           metadata: ["aerogrid.crash": "\(reason?.code ?? "exit")"])
            // The backoff, cut short if the app is stopped meanwhile.
            let until = ContinuousClock.now + delay
            while !stopping && ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(50)) }
        }
        statusState.withLock { $0.lifecycle.stop() }
        // The last checkpoint waits for the periodic one to finish: two checkpoint writes
        // must never overlap, or an older one could land after a newer one.
        checkpoints.cancel()
        await checkpoints.value
        await writeCheckpoint(consumer: consumer)
        activeConsumer.withLock { $0 = nil }
        await consumer.close()
        try? await dlqProducer.flush(timeout: .seconds(10))
        // Closed with the run, not with the runner (which the supervisor keeps): a client
        // left open would outlive a cluster stopped after the apps (`aerogrid dev`'s).
        producer.withLock { $0 = nil }
        await dlqProducer.close()
        statusState.withLock { _ = $0.lifecycle.processEnded(nil, uptime: .zero) }
    }

    /// Creates the dead-letter topic if the cluster lacks it. A cluster that refuses
    /// (or, like the embedded one, creates topics on first use) is left as it is.
    private func ensureDeadLetterTopic() async {
        guard let admin = try? KafkaAdmin(configuration: spec.kafka, logger: logger) else { return }
        if let topics = try? await admin.listTopics(), topics.contains(deadLetterTopic) { return }
        do {
            try await admin.createTopics([KafkaNewTopic(name: deadLetterTopic, partitions: 1)], timeout: .seconds(5))
        } catch {
            logger.info("dead-letter topic \(deadLetterTopic) not created here (\(error)); it is created on first use where the cluster allows")
        }
    }

    /// Records no frame can carry go to the dead-letter topic as they are read, with the
    /// reason (kind `too-large`); their value only if it is small enough to produce.
    private func deadLetterUnframeable(_ records: [(record: OutgoingRecord, reason: String)]) {
        statusState.withLock { $0.failedRecords += records.count }
        let producer = self.producer.withLock { $0 }
        for (record, reason) in records {
            // Through the app's log: kept there, and passed on to the supervisor's at its rate.
            log.append("record \(record.topic)/\(record.partition)@\(record.offset) cannot be delivered: \(reason) (sent to \(deadLetterTopic))",
                       source: "supervisor", level: .warning)
            let headers = [
                KafkaHeader("aerogrid.error.kind", Array("too-large".utf8)),
                KafkaHeader("aerogrid.error.message", Array(reason.utf8)),
                KafkaHeader("aerogrid.source.topic", Array(record.topic.utf8)),
                KafkaHeader("aerogrid.source.partition", Array(String(record.partition).utf8)),
                KafkaHeader("aerogrid.source.offset", Array(String(record.offset).utf8)),
            ]
            let value = (record.value?.count ?? 0) <= 512 << 10 ? record.value : nil
            let (topic, logger) = (deadLetterTopic, self.logger)
            Task {
                do {
                    try await producer?.enqueue(topic: topic, key: record.key, value: value, headers: headers)
                } catch {
                    logger.error("cannot write a dead letter to \(topic): \(error)")
                }
            }
        }
    }

    /// Sends each failed record to the dead-letter topic — its original key, value and
    /// headers, plus what went wrong — and logs it. The stream goes on.
    private func deadLetter(_ errors: [RecordError], frame: [UInt8]) {
        statusState.withLock { $0.failedRecords += errors.count }
        // The batch's frame holds the original records; failures are few, so it is read
        // back only when there are some.
        var byPosition: [String: OutgoingRecord] = [:]
        for record in (try? RecordsFrameReader.records(in: frame).records) ?? [] {
            byPosition["\(record.topic)/\(record.partition)/\(record.offset)"] = record
        }
        let producer = self.producer.withLock { $0 }
        for error in errors {
            // The app chose these texts: bounded before they are logged or produced.
            let message = error.error.cut(toBytes: 16 << 10)
            log.append("record \(error.topic)/\(error.partition)@\(error.offset) failed (\(error.kind)): \(message) (sent to \(deadLetterTopic))",
                       source: "supervisor", level: .warning)
            let original = byPosition["\(error.topic)/\(error.partition)/\(error.offset)"]
            let headers = (original?.headers ?? []).map { KafkaHeader($0.0, $0.1) } + [
                KafkaHeader("aerogrid.error.kind", Array(error.kind.cut(toBytes: 256).utf8)),
                KafkaHeader("aerogrid.error.handler", Array((error.handler ?? "").cut(toBytes: 256).utf8)),
                KafkaHeader("aerogrid.error.message", Array(message.utf8)),
                KafkaHeader("aerogrid.error.traceback", Array(error.traceback.cut(toBytes: 64 << 10).utf8)),
                KafkaHeader("aerogrid.source.topic", Array(error.topic.cut(toBytes: 249).utf8)),
                KafkaHeader("aerogrid.source.partition", Array(String(error.partition).utf8)),
                KafkaHeader("aerogrid.source.offset", Array(String(error.offset).utf8)),
            ]
            let topic = deadLetterTopic
            let logger = self.logger
            Task {
                do {
                    try await producer?.enqueue(topic: topic, key: original?.key, value: original?.value, headers: headers)
                } catch {
                    logger.error("cannot write a dead letter to \(topic): \(error)")
                }
            }
        }
    }

    /// Copies what changed since the last checkpoint to the store, in one transaction, and
    /// commits the same offsets to Kafka so its tools show the app's lag.
    func writeCheckpoint(consumer: KafkaConsumer) async {
        _ = await storeWrites.acquire()
        defer { storeWrites.release() }
        let delta = grids.takeCheckpointDelta()
        guard !delta.isEmpty else { return }
        do {
            try await store.saveCheckpoint(app: spec.storeKey, delta)
            statusState.withLock { $0.checkpoints += 1 }
        } catch {
            grids.reinstate(delta)
            logger.error("cannot write a checkpoint (kept for the next one): \(error)")
            return
        }
        var offsets: [TopicPartition: Int64] = [:]
        for (source, offset) in delta.offsets { offsets[TopicPartition(source.topic, source.partition)] = offset }
        if !offsets.isEmpty { try? await consumer.commitInBackground(offsets) }
    }

    /// One process, from launch to its end: why it ended, or nil when it was asked to.
    private func runProcess(consumer: KafkaConsumer) async throws -> CrashReason? {
        let killReason = Mutex<CrashReason?>(nil)
        let session = AppSession(
            grids: grids, log: log, limits: spec.appLimits,
            onQuotaExceeded: { detail in killReason.withLock { $0 = $0 ?? .quota(detail) } },
            onRecordErrors: { [self] errors, frame in deadLetter(errors, frame: frame) },
            onProduce: { [self] requests in
                logger.debug("dropping \(requests.count) produce requests: producing from apps is not enabled")
            },
            onBatchApplied: { [self] latency in
                batchLatencies.withLock { if $0.count < 10_000 { $0.append(latency) } }
            })
        var sandbox = SandboxSpec(command: spec.command)
        sandbox.filter = spec.profile.filter
        sandbox.limits = limits.withLock { $0 }
        sandbox.openFiles = spec.profile.quotaDefaults.openFiles ?? 256
        sandbox.tmpBytes = spec.profile.quotaDefaults.tmpBytes ?? 64 << 20
        sandbox.readOnlyPaths = [spec.sdkPath]
        sandbox.bundle = spec.bundle
        sandbox.environment = [("AEROGRID_IPC_FD", "3"), ("LANG", "C.UTF-8"), ("PYTHONDONTWRITEBYTECODE", "1")]
        sandbox.cgroupPath = [spec.tenant, spec.name]
        sandbox.hostUID = spec.hostUID
        sandbox.withIPCSocket = true
        sandbox.output = .pipes
        let process: SandboxedProcess
        do {
            process = try Sandbox.launch(sandbox)
        } catch {
            return .startup(error.message)
        }
        if let degradation = process.degradation { logger.warning("\(degradation)") }
        forwardOutput(process.stdout!, stream: "stdout")
        forwardOutput(process.stderr!, stream: "stderr")
        let connection = AppConnection(
            fd: process.ipcSocket!, limits: spec.appLimits, log: log,
            onFrame: { frame, bytes throws(ProtocolViolation) in try session.handle(frame, bytes: bytes) },
            onEnd: { violation in
                if let violation {
                    killReason.withLock { $0 = $0 ?? .protocolViolation(violation.message) }
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
        // An app that sends nothing (not even a heartbeat) for this long is stuck; one that
        // keeps a batch unconfirmed this long holds what it sent for it, and its partitions.
        let watchdog = Task { [heartbeatTimeout = spec.heartbeatTimeout, batchTimeout = spec.appLimits.batchTimeout] in
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                if connection.silence > heartbeatTimeout {
                    killReason.withLock { $0 = $0 ?? .heartbeatTimeout }
                    process.kill()
                    return
                }
                if let (id, age) = session.oldestUnconfirmed, age > batchTimeout {
                    killReason.withLock { $0 = $0 ?? .quota("batch \(id) was not confirmed within \(batchTimeout) (the limit for one batch)") }
                    process.kill()
                    return
                }
            }
        }
        defer { watchdog.cancel() }
        if stopping { connection.sendShutdown(reason: "app stopped") }

        do {
            try await serve(session: session, connection: connection, consumer: consumer)
        } catch let refused as TopicRefused {
            killReason.withLock { $0 = $0 ?? .topicRefused(refused.message) }
            process.kill()
        } catch {
            killReason.withLock { $0 = $0 ?? .startup("\(error)") }
            process.kill()
        }
        connection.close()
        let termination = await Self.waitWithGrace(process, ended: ended, grace: .seconds(5))
        session.end()
        if let reason = killReason.withLock({ $0 }) { return reason }
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
        for topic in hello.consumedTopics {
            if let refusal = spec.topicPolicy?(topic) {
                connection.sendShutdown(reason: refusal)
                throw TopicRefused(message: refusal)
            }
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
        for grid in hello.grids {
            guard let snapshot = grids.snapshot(grid.name), !snapshot.grid.rows.isEmpty else { continue }
            for frame in SupervisorFrames.restore(grid: grid.name, rows: snapshot.grid.rows.sorted { $0.key < $1.key }) {
                connection.send(frame)
            }
        }
        connection.send(SupervisorFrames.restoreDone)
        try await consumer.assign(partitions)
        consumedPartitions.withLock { $0 = partitions.keys.sorted() }
        statusState.withLock { $0.lifecycle.processRunning() }
        logger.info("running: \(partitions.count) partitions of \(hello.consumedTopics.joined(separator: ", "))")
        // Records read but left for the next batch, which would have grown past the limit.
        var carried: [OutgoingRecord] = []

        while !stopping {
            guard await session.credits.acquire() else { break }
            let batch = BatchSink(expectedRecords: spec.maxBatchRecords, carried: carried)
            while batch.count == 0 && !stopping && !session.hasEnded {
                // What is there now, at once; when nothing is, wait up to 20 ms for a first
                // record and take what came with it. (Asked for a full batch with a wait,
                // librdkafka would hold the batch back until it is full or the wait is over.)
                var events = try await consumer.poll(maxMessages: spec.maxBatchRecords, timeout: .zero, into: batch)
                if batch.count == 0 {
                    events += try await consumer.poll(maxMessages: 1, timeout: .milliseconds(20), into: batch)
                    if batch.count > 0 {
                        events += try await consumer.poll(maxMessages: spec.maxBatchRecords - 1, timeout: .zero, into: batch)
                    }
                }
                for case .error(let error) in events {
                    if error.code == .autoOffsetReset || error.code == .offsetOutOfRange {
                        throw RuntimeError("an offset went out of range while running (\(error)); the out-of-range policy applies on restart")
                    }
                    logger.warning("Kafka: \(error)")
                }
            }
            if !batch.unframeable.isEmpty { deadLetterUnframeable(batch.unframeable) }
            guard batch.count > 0 else { session.credits.release(); break }
            carried = batch.overflow
            let id = nextBatchID.wrappingAdd(1, ordering: .relaxed).oldValue
            let frame = batch.frame(batchID: id)
            // Registered before it is sent, so its batch-done can never come first; taken
            // back if the connection no longer sends (a shutdown went out meanwhile).
            session.registerBatch(AppSession.InFlight(id: id, records: UInt32(batch.count), offsets: batch.offsets, frame: frame))
            guard connection.send(frame) else {
                session.unregisterBatch(id)
                break
            }
            statusState.withLock { $0.deliveredRecords += batch.count; $0.batchesSent += 1 }
        }
        if stopping { connection.sendShutdown(reason: "app stopped") }
        // Wait for the process to end (on shutdown, after confirming what it was sent), but
        // not for ever: an app that ignores shutdown, or no longer reads its socket, is
        // killed once the grace period is over.
        let deadline = ContinuousClock.now + spec.shutdownGrace
        while !session.hasEnded && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Where each partition starts: after the applied offset, or at the beginning for a
    /// partition never read. An applied offset the partition no longer holds follows the
    /// app's out-of-range policy.
    private func startOffsets(for consumed: [TopicPartition], consumer: KafkaConsumer,
                              connection: AppConnection) async throws -> [TopicPartition: KafkaStartOffset] {
        let applied = grids.offsets
        var outOfRange: [String] = []
        for tp in consumed {
            guard let offset = applied[SourcePartition(topic: tp.topic, partition: tp.partition)] else { continue }
            let marks = try await consumer.watermarks(tp)
            if offset < marks.low || offset > marks.high {
                outOfRange.append("\(tp) at offset \(offset), but it holds offsets \(marks.low) to \(marks.high)")
            }
        }
        if !outOfRange.isEmpty {
            let what = "the checkpoint is out of range: \(outOfRange.joined(separator: "; "))"
            switch spec.outOfRangePolicy {
            case .fail:
                connection.sendShutdown(reason: "checkpoint out of range")
                throw RuntimeError("\(what) (policy: fail; reset the app, or run it with an out-of-range policy of earliest or latest)")
            case .resetToEarliest, .resetToLatest:
                logger.warning("\(what): resetting the grids and reading from the \(spec.outOfRangePolicy.rawValue) offsets (policy)")
                _ = await storeWrites.acquire()
                defer { storeWrites.release() }
                try await store.deleteCheckpoint(app: spec.storeKey)
                grids.restore(GridCheckpoint(), epoch: try await store.nextEpoch(app: spec.storeKey))
                statusState.withLock { $0.resets += 1 }
            }
        }
        let fresh: KafkaStartOffset = spec.outOfRangePolicy == .resetToLatest && !outOfRange.isEmpty ? .end : .beginning
        let current = grids.offsets
        return Dictionary(uniqueKeysWithValues: consumed.map { tp in
            (tp, current[SourcePartition(topic: tp.topic, partition: tp.partition)].map { KafkaStartOffset.offset($0) } ?? fresh)
        })
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

    /// The app's stdout and stderr, line by line, into its log. Read at most
    /// `outputBytesPerSecond` and `linesPerSecond`: an app writing faster blocks on its full
    /// pipe, and its output costs the supervisor a bounded amount of work (a line is work
    /// whatever its length).
    private func forwardOutput(_ fd: Int32, stream: String) {
        let log = self.log
        let (bytesBudget, linesBudget) = (spec.appLimits.log.outputBytesPerSecond, spec.appLimits.log.linesPerSecond)
        let thread = Thread {
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var pending = Data()
            var window = (start: ContinuousClock.now, bytes: 0, lines: 0)
            /// Waits for the next second when this one's budget is spent (the app waits too).
            func pace(bytes: Int, lines: Int) {
                if ContinuousClock.now - window.start >= .seconds(1) { window = (.now, 0, 0) }
                if window.bytes + bytes > bytesBudget || window.lines + lines > linesBudget {
                    Thread.sleep(until: Date(timeIntervalSinceNow: max(0, 1 - Self.seconds(ContinuousClock.now - window.start))))
                    window = (.now, 0, 0)
                }
                window.bytes += bytes
                window.lines += lines
            }
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pace(bytes: chunk.count, lines: 0)
                pending.append(chunk)
                var start = pending.startIndex
                while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    pace(bytes: 0, lines: 1)
                    log.append(String(decoding: pending[start..<newline], as: UTF8.self), source: stream)
                    start = pending.index(after: newline)
                }
                pending.removeSubrange(pending.startIndex..<start)
                // A "line" without an end is cut at 64 KiB rather than held forever.
                if pending.count > 65_536 {
                    pace(bytes: 0, lines: 1)
                    log.append(String(decoding: pending, as: UTF8.self), source: stream)
                    pending.removeAll()
                }
            }
            if !pending.isEmpty { log.append(String(decoding: pending, as: UTF8.self), source: stream) }
        }
        thread.name = "aerogrid-app-\(stream)"
        thread.start()
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
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

/// The app asked for a topic its tenant may not read.
struct TopicRefused: Error {
    let message: String
}

public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
