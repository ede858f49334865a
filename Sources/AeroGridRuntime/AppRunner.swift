public import AeroGridCore
import AeroGridIPC
public import AeroGridKafka
import AeroGridSandbox
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
        public enum Phase: String, Sendable { case starting, running, restarting, stopping, stopped }
        public var phase: Phase = .starting
        public var restarts = 0
        /// How the last process ended, when it did not end on request.
        public var lastCrash: String?
        public var deliveredRecords = 0
        public var batchesSent = 0
        public var checkpoints = 0
        public var lag: Int64?
        public var failedRecords = 0
    }

    private let store: Store
    private let logger: Logger
    private let statusState = Mutex(Status())
    private let stopRequested = Atomic<Bool>(false)
    private let currentProcess = Mutex<SandboxedProcess?>(nil)
    private let currentConnection = Mutex<AppConnection?>(nil)
    private let nextBatchID = Atomic<UInt64>(1)

    public init(spec: AppSpec, store: Store, logger: Logger) {
        self.spec = spec
        self.store = store
        var logger = logger
        logger[metadataKey: "aerogrid.tenant"] = "\(spec.tenant)"
        logger[metadataKey: "aerogrid.app"] = "\(spec.name)"
        self.logger = logger
    }

    public var status: Status { statusState.withLock { $0 } }

    /// Asks the app to shut down: the current batch finishes, a last checkpoint is written,
    /// and `run` returns.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        currentConnection.withLock { $0 }?.send(SupervisorFrames.shutdown(reason: "app stopped"))
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

        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: spec.kafka, groupID: "aerogrid.\(spec.tenant).\(spec.name)"),
            logger: logger)
        let checkpoints = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: spec.checkpointInterval)
                await writeCheckpoint(consumer: consumer)
            }
        }
        while !stopping {
            do {
                try await runProcess(consumer: consumer)
            } catch {
                logger.error("the app could not run: \(error)")
                statusState.withLock { $0.lastCrash = "\(error)" }
            }
            guard !stopping else { break }
            statusState.withLock { $0.phase = .restarting; $0.restarts += 1 }
            try? await Task.sleep(for: spec.restartDelay)
        }
        checkpoints.cancel()
        await writeCheckpoint(consumer: consumer)
        await consumer.close()
        statusState.withLock { $0.phase = .stopped }
    }

    /// Copies what changed since the last checkpoint to the store, in one transaction, and
    /// commits the same offsets to Kafka so its tools show the app's lag.
    func writeCheckpoint(consumer: KafkaConsumer) async {
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
        if !offsets.isEmpty { try? await consumer.commit(offsets) }
    }

    /// One process, from launch to its end.
    private func runProcess(consumer: KafkaConsumer) async throws {
        statusState.withLock { $0.phase = .starting }
        let session = AppSession(
            grids: grids, logger: logger,
            onRecordErrors: { [self] errors in
                statusState.withLock { $0.failedRecords += errors.count }
                for error in errors {
                    logger.warning("record \(error.topic)/\(error.partition)@\(error.offset) failed (\(error.kind)): \(error.error)")
                }
            },
            onProduce: { [self] requests in
                logger.debug("dropping \(requests.count) produce requests: producing from apps is not enabled")
            })
        var sandbox = SandboxSpec(command: spec.command)
        sandbox.filter = spec.profile.filter
        sandbox.limits = spec.limits
        sandbox.openFiles = spec.profile.quotaDefaults.openFiles ?? 256
        sandbox.tmpBytes = spec.profile.quotaDefaults.tmpBytes ?? 64 << 20
        sandbox.readOnlyPaths = [spec.sdkPath]
        sandbox.bundle = spec.bundle
        sandbox.environment = [("AEROGRID_IPC_FD", "3"), ("LANG", "C.UTF-8"), ("PYTHONDONTWRITEBYTECODE", "1")]
        sandbox.cgroupPath = [spec.tenant, spec.name]
        sandbox.withIPCSocket = true
        sandbox.output = .pipes
        let process = try Sandbox.launch(sandbox)
        if let degradation = process.degradation { logger.warning("\(degradation)") }
        forwardOutput(process.stdout!, stream: "stdout")
        forwardOutput(process.stderr!, stream: "stderr")
        let connection = AppConnection(
            fd: process.ipcSocket!,
            onFrame: { frame throws(ProtocolViolation) in try session.handle(frame) },
            onEnd: { [logger] violation in
                if let violation {
                    logger.error("\(violation): the app is stopped")
                    process.kill()
                }
                session.end()
            })
        currentProcess.withLock { $0 = process }
        currentConnection.withLock { $0 = connection }
        let ended = Task { await process.wait() }
        defer {
            currentProcess.withLock { $0 = nil }
            currentConnection.withLock { $0 = nil }
        }
        if stopping { connection.send(SupervisorFrames.shutdown(reason: "app stopped")) }

        do {
            try await serve(session: session, connection: connection, consumer: consumer)
        } catch {
            process.kill()
            _ = await ended.value
            throw error
        }
        connection.close()
        let termination = await Self.waitWithGrace(process, ended: ended, grace: .seconds(5))
        session.end()
        if !stopping {
            let reason = "the app ended: \(termination)"
            logger.warning("\(reason)")
            statusState.withLock { $0.lastCrash = reason }
        }
    }

    /// Hello, restore, then batches until the process ends or the app is stopped.
    private func serve(session: AppSession, connection: AppConnection, consumer: KafkaConsumer) async throws {
        guard let hello = await session.hello(timeout: .seconds(20)) else {
            throw RuntimeError("the app sent no hello (it failed to load, or took over 20 s): see its log")
        }
        guard hello.protocolVersion.split(separator: ".").first == "\(IPCLimits.protocolMajor)" else {
            connection.send(SupervisorFrames.shutdown(reason: "protocol \(hello.protocolVersion) is not supported (this supervisor speaks \(IPCLimits.protocolVersion))"))
            throw RuntimeError("the app speaks protocol \(hello.protocolVersion); this supervisor speaks \(IPCLimits.protocolVersion)")
        }
        let metadata = try await consumer.metadata()
        var partitions: [TopicPartition: KafkaStartOffset] = [:]
        let applied = grids.offsets
        for topic in hello.consumedTopics {
            guard let found = metadata.topics.first(where: { $0.name == topic && $0.error == nil }) else {
                connection.send(SupervisorFrames.shutdown(reason: "topic '\(topic)' does not exist"))
                throw RuntimeError("the app consumes topic '\(topic)', which does not exist in the Kafka cluster")
            }
            for partition in found.partitions {
                let offset = applied[SourcePartition(topic: topic, partition: partition.id)]
                partitions[TopicPartition(topic, partition.id)] = offset.map { KafkaStartOffset.offset($0) } ?? .beginning
            }
        }
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
        statusState.withLock { $0.phase = stopping ? .stopping : .running }
        logger.info("running: \(partitions.count) partitions of \(hello.consumedTopics.joined(separator: ", "))")

        while !stopping {
            guard await session.credits.acquire() else { return }
            var messages: [KafkaMessage] = []
            while messages.isEmpty && !stopping && !session.hasEnded {
                let batch = try await consumer.poll(maxMessages: spec.maxBatchRecords, timeout: .milliseconds(20))
                for case .error(let error) in batch.events { logger.warning("Kafka: \(error)") }
                messages = batch.messages
            }
            guard !messages.isEmpty else { session.credits.release(); break }
            let batch = (messages: messages, count: messages.count)
            var frame = RecordsFrameBuilder(expectedBytes: batch.messages.count * 96)
            var offsets: [SourcePartition: Int64] = [:]
            for message in batch.messages {
                frame.append(topic: message.topic, partition: message.partition, offset: message.offset, timestamp: message.timestamp,
                             key: message.key, value: message.value, headers: message.headers.map { ($0.name, $0.value) })
                offsets[SourcePartition(topic: message.topic, partition: message.partition)] = message.offset + 1
            }
            let id = nextBatchID.wrappingAdd(1, ordering: .relaxed).oldValue
            session.registerBatch(AppSession.InFlight(id: id, records: frame.count, offsets: offsets))
            connection.send(frame.frame(batchID: id))
            statusState.withLock { $0.deliveredRecords += batch.count; $0.batchesSent += 1 }
        }
        if stopping { connection.send(SupervisorFrames.shutdown(reason: "app stopped")) }
        // Wait for the process to end (on shutdown, after confirming what it was sent).
        while !session.hasEnded { try? await Task.sleep(for: .milliseconds(20)) }
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

    /// The app's stdout and stderr, line by line, into the log.
    private func forwardOutput(_ fd: Int32, stream: String) {
        let logger = self.logger
        let thread = Thread {
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    logger.info("\(line)", metadata: ["aerogrid.source": "\(stream)"])
                }
            }
            if !pending.isEmpty {
                logger.info("\(String(decoding: pending, as: UTF8.self))", metadata: ["aerogrid.source": "\(stream)"])
            }
        }
        thread.name = "aerogrid-app-\(stream)"
        thread.start()
    }

    /// Records still to deliver: per assigned partition, the high watermark minus the
    /// applied offset.
    public func refreshLag(consumer: KafkaConsumer) async {
        if let lag = try? await consumer.lag() {
            statusState.withLock { $0.lag = lag.values.reduce(0, +) }
        }
    }
}

public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
