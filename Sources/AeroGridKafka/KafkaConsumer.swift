public import AeroGridCore
import CRdKafka
public import Logging

/// A Kafka consumer over librdkafka, in one of two modes:
///
/// - **manual assignment** (`assign`): the caller picks partitions and start offsets, with
///   no group membership. A single node uses this: it knows every partition it needs, and
///   it resumes from its own checkpoint.
/// - **group subscription** (`subscribe`): partitions are balanced across the group's
///   members; assignments and revocations arrive as events, and a revocation commits the
///   offsets stored so far before the partitions are handed over.
///
/// Every librdkafka call on one consumer runs on its own thread, in sequence: librdkafka
/// 2.0.2's batch consumption is not safe alongside seek, pause, resume or a rebalance run
/// from elsewhere (fixed only in 2.1.0). For the same reason start offsets are passed to
/// `assign` instead of seeking, and a record at or below one already delivered for its
/// partition is dropped.
public final class KafkaConsumer: Sendable {
    private let worker: KafkaWorkerThread
    private let core: ConsumerCore

    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        let state = ConsumerState(logger: logger)
        state.holdRevoked = configuration.holdRevoked
        let client = try RDKafkaClient(
            role: .consumer, properties: configuration.resolvedProperties(), context: state
        ) { conf in
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, _ in
                guard let rk, let partitions, let state = RDKafkaContext.from(rk) as? ConsumerState else { return }
                state.rebalance(rk, err, partitions)
            }
            // Client-wide errors (all brokers down, a topic the cluster refuses) are served by
            // the same poll as records, so they become events in order with them.
            rd_kafka_conf_set_error_cb(conf) { rk, err, reason, _ in
                guard let state = RDKafkaContext.from(rk) as? ConsumerState else { return }
                state.clientError(rk, err, reason.map { String(cString: $0) } ?? "")
            }
        }
        core = ConsumerCore(client: client, state: state)
        worker = KafkaWorkerThread(name: "aerogrid-kafka-consumer")
    }

    deinit {
        worker.stop()
    }

    /// Consumes exactly these partitions from these offsets, replacing any earlier
    /// assignment. No group is joined. The partitions are first checked against the
    /// cluster's full topic listing: a missing topic or partition, or one the cluster
    /// reports an error for (not authorized, say), throws instead of stalling silently.
    public func assign(_ partitions: [TopicPartition: KafkaStartOffset], timeout: Duration = .seconds(10)) async throws {
        let timeoutMs = milliseconds(timeout)
        try await run { core in try core.assign(partitions, timeoutMs: timeoutMs) }
    }

    /// Joins the consumer group and lets it balance these topics' partitions; assignments
    /// and revocations arrive as events from `poll`.
    public func subscribe(topics: [String]) async throws {
        try await run { core in try core.subscribe(topics) }
    }

    /// Waits up to `timeout` for records and returns at most `maxMessages` of them, with
    /// whatever events (assignments, errors, partition ends) happened meanwhile.
    public func poll(maxMessages: Int = 10_000, timeout: Duration = .milliseconds(100)) async throws -> KafkaConsumerBatch {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.poll(maxMessages: maxMessages, timeoutMs: timeoutMs) }
    }

    /// Waits up to `wait` for a first record, then takes at once whatever else is there (at
    /// most `maxMessages` in all). librdkafka's batch call, asked for many records with a
    /// wait, holds back what it has until it has them all or the wait is over: a reader that
    /// follows a log as it grows would trail it by the wait.
    public func pollPromptly(maxMessages: Int = 10_000, wait: Duration = .milliseconds(100)) async throws -> KafkaConsumerBatch {
        var batch = try await poll(maxMessages: 1, timeout: wait)
        guard !batch.messages.isEmpty, maxMessages > 1 else { return batch }
        let rest = try await poll(maxMessages: maxMessages - 1, timeout: .zero)
        batch.messages += rest.messages
        batch.events += rest.events
        return batch
    }

    /// Like `poll`, but hands each record to `sink` as librdkafka holds it, without copying:
    /// for a caller that writes records straight to where they go. The sink runs on the
    /// consumer's thread, during this call only.
    public func poll<Sink: KafkaRecordSink>(maxMessages: Int = 10_000, timeout: Duration = .milliseconds(100), into sink: Sink) async throws
        -> [KafkaConsumerEvent]
    {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.poll(maxMessages: maxMessages, timeoutMs: timeoutMs, into: sink) }
    }

    /// Marks records as processed: each value is the next offset to consume. Stored offsets
    /// are committed by `commit()` and before partitions are revoked.
    public func store(_ nextOffsets: [TopicPartition: Int64]) async throws {
        try await run { core in try core.store(nextOffsets) }
    }

    /// Commits the given next offsets, or (with nil) the stored ones, and waits for the
    /// broker. Works without group membership, for lag visibility.
    public func commit(_ nextOffsets: [TopicPartition: Int64]? = nil) async throws {
        try await run { core in try core.commit(nextOffsets, wait: true) }
    }

    /// Sends a commit and returns at once; its outcome is not reported. For offsets that are
    /// only shown to Kafka's tools (the runtime's own checkpoint is the truth): a commit
    /// that waited would hold up this consumer's fetching for a round trip to the group
    /// coordinator.
    public func commitInBackground(_ nextOffsets: [TopicPartition: Int64]) async throws {
        try await run { core in try core.commit(nextOffsets, wait: false) }
    }

    /// The group's committed next offsets; nil for a partition with none.
    public func committed(_ partitions: [TopicPartition], timeout: Duration = .seconds(5)) async throws -> [TopicPartition: Int64?] {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.committed(partitions, timeoutMs: timeoutMs) }
    }

    public func pause(_ partitions: [TopicPartition]) async throws {
        try await run { core in try core.setPaused(partitions, paused: true) }
    }

    public func resume(_ partitions: [TopicPartition]) async throws {
        try await run { core in try core.setPaused(partitions, paused: false) }
    }

    /// The partitions this consumer holds now.
    public func assignment() async throws -> Set<TopicPartition> {
        try await run { core in core.state.assignment }
    }

    /// Records between this consumer's position and each assigned partition's end. A
    /// partition with no position yet counts from its committed offset, or from its start.
    public func lag(timeout: Duration = .seconds(5)) async throws -> [TopicPartition: Int64] {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.lag(timeoutMs: timeoutMs) }
    }

    /// Each partition's watermarks as the latest fetch responses reported them (no request),
    /// or asked of the leader for a partition not fetched yet — all within `timeout`
    /// together: the questions hold this consumer's thread, and whoever waits for the answer
    /// (a status page, the app list) should not wait long on an unreachable cluster.
    /// Throws `timedOut` when the time is up first.
    public func knownWatermarks(_ partitions: [TopicPartition], timeout: Duration = .seconds(1)) async throws -> [TopicPartition: KafkaWatermarks] {
        let deadline = ContinuousClock.now + timeout
        return try await run { core in
            var result: [TopicPartition: KafkaWatermarks] = [:]
            for tp in partitions {
                if let cached = core.client.cachedWatermarks(tp) {
                    result[tp] = cached
                    continue
                }
                let left = milliseconds(deadline - ContinuousClock.now)
                guard left > 0 else {
                    throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, "no time left to read the offsets of \(tp)", topic: tp.topic, partition: tp.partition)
                }
                result[tp] = try core.client.queryWatermarks(tp, timeoutMs: left)
            }
            return result
        }
    }

    public func watermarks(_ partition: TopicPartition, timeout: Duration = .seconds(5)) async throws -> KafkaWatermarks {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.client.queryWatermarks(partition, timeoutMs: timeoutMs) }
    }

    /// Every topic in the cluster, from one all-topics metadata request.
    public func metadata(timeout: Duration = .seconds(5)) async throws -> KafkaClusterMetadata {
        let timeoutMs = milliseconds(timeout)
        return try await run { core in try core.client.clusterMetadata(timeoutMs: timeoutMs) }
    }

    /// Gives up partitions whose revocation was held (`holdRevoked`): the group's
    /// rebalance goes on.
    public func finishRevocation(_ partitions: [TopicPartition]) async throws {
        try await run { core in try core.finishRevocation(partitions) }
    }

    /// Leaves the group (committing stored offsets on the way) and stops the consumer.
    /// Calls after this throw `destroyed`.
    public func close() async {
        _ = try? await run { core in core.close() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (ConsumerCore) throws -> T) async throws -> T {
        let core = self.core
        return try await worker.run {
            guard !core.closed else {
                throw KafkaError(code: .destroyed, message: "the consumer is closed")
            }
            return try body(core)
        }
    }
}

/// What the rebalance callback and `poll` share. Touched only on the consumer's thread:
/// librdkafka calls the rebalance callback from inside `poll`.
final class ConsumerState: RDKafkaContext, @unchecked Sendable {
    /// The partitions held, each with the offset its next record must have (nil until known).
    var cursors: [TopicPartition: PartitionCursor] = [:] {
        didSet {
            cursorsByHandle.removeAll()
            topicNames.removeAll()
        }
    }
    /// The same cursors by librdkafka topic handle and partition: found per record without
    /// hashing the topic's name. Rebuilt whenever the assignment changes.
    var cursorsByHandle: [PartitionKey: PartitionCursor] = [:]
    /// Topic names by librdkafka topic handle, so a batch does not build one per record.
    /// Forgotten with the assignment too: a handle librdkafka freed may come back at the
    /// same address for another topic.
    var topicNames: [OpaquePointer: String] = [:]
    var pendingEvents: [KafkaConsumerEvent] = []
    /// See `KafkaConsumerConfiguration.holdRevoked`; off once the consumer closes.
    var holdRevoked = false

    var assignment: Set<TopicPartition> { Set(cursors.keys) }

    func clientError(_ rk: OpaquePointer?, _ err: Int32, _ reason: String) {
        let code = KafkaError.Code(rawValue: err)
        var fatal = false
        if code == KafkaError.Code(RD_KAFKA_RESP_ERR__FATAL), let rk {
            var errstr = [CChar](repeating: 0, count: 512)
            _ = rd_kafka_fatal_error(rk, &errstr, errstr.count)
            fatal = true
        }
        pendingEvents.append(
            .error(
                KafkaError(
                    code: code, message: reason, isRetriable: KafkaError.retriableCodes.contains(code), isFatal: fatal)))
    }

    func rebalance(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let partitions = partitionListEntries(list).map(\.tp).sorted()
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, list) {
                    pendingEvents.append(.error(KafkaError(consuming: error, "cannot take the assigned partitions")))
                }
            } else {
                rd_kafka_assign(rk, list)
            }
            for tp in partitions where cursors[tp] == nil { cursors[tp] = PartitionCursor(tp) }
            pendingEvents.append(.assigned(partitions))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS where cooperative && rd_kafka_assignment_lost(rk) != 0:
            // Already someone else's: nothing to hand over.
            if let error = rd_kafka_incremental_unassign(rk, list) {
                pendingEvents.append(.error(KafkaError(consuming: error, "cannot release the lost partitions")))
            }
            for tp in partitions { cursors[tp] = nil }
            pendingEvents.append(.lost(partitions))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS where cooperative && holdRevoked:
            // Kept until `finishRevocation`: librdkafka waits for that call to go on.
            for tp in partitions { cursors[tp] = nil }
            pendingEvents.append(.revoked(partitions))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Hand the partitions over with what we processed committed, so the next owner
            // starts right after it: nothing at or below a committed offset is seen again.
            let commitErr = rd_kafka_commit(rk, nil, 0)
            if commitErr != RD_KAFKA_RESP_ERR_NO_ERROR && commitErr != RD_KAFKA_RESP_ERR__NO_OFFSET {
                pendingEvents.append(.error(KafkaError(commitErr, "cannot commit offsets before giving up partitions")))
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, list) {
                    pendingEvents.append(.error(KafkaError(consuming: error, "cannot release the revoked partitions")))
                }
            } else {
                rd_kafka_assign(rk, nil)
            }
            for tp in partitions { cursors[tp] = nil }
            pendingEvents.append(.revoked(partitions))
        default:
            rd_kafka_assign(rk, nil)
            cursors.removeAll()
            pendingEvents.append(.error(KafkaError(err, "the consumer group failed to rebalance")))
        }
    }
}

/// The consumer's librdkafka side, used only on the consumer's thread.
final class ConsumerCore: @unchecked Sendable {
    // @unchecked: every method runs on the owning KafkaConsumer's worker thread.
    let client: RDKafkaClient
    let state: ConsumerState
    private let queue: OpaquePointer
    private(set) var closed = false
    private var messagePointers: [UnsafeMutablePointer<rd_kafka_message_t>?] = []

    init(client: RDKafkaClient, state: ConsumerState) {
        self.client = client
        self.state = state
        // Route every event (errors, rebalances, records) to the one consumer queue. It
        // exists because a consumer always has a group id (see KafkaConsumerConfiguration).
        rd_kafka_poll_set_consumer(client.handle)
        queue = rd_kafka_queue_get_consumer(client.handle)!
    }

    deinit {
        rd_kafka_queue_destroy(queue)
    }

    func assign(_ partitions: [TopicPartition: KafkaStartOffset], timeoutMs: Int32) throws(KafkaError) {
        try checkExist(Set(partitions.keys), timeoutMs: timeoutMs)
        let entries = partitions.map { tp, start -> (TopicPartition, Int64) in
            switch start {
            case .beginning: (tp, Int64(RD_KAFKA_OFFSET_BEGINNING))
            case .end: (tp, Int64(RD_KAFKA_OFFSET_END))
            case .committed: (tp, Int64(RD_KAFKA_OFFSET_STORED))
            case .offset(let offset): (tp, offset)
            }
        }
        let list = makePartitionList(entries)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot assign \(partitions.count) partitions")
        }
        var cursors: [TopicPartition: PartitionCursor] = [:]
        for (tp, start) in partitions {
            let cursor = PartitionCursor(tp)
            if case .offset(let offset) = start { cursor.next = offset }
            cursors[tp] = cursor
        }
        state.cursors = cursors
    }

    private func checkExist(_ partitions: Set<TopicPartition>, timeoutMs: Int32) throws(KafkaError) {
        guard !partitions.isEmpty else { return }
        let topics = Dictionary(uniqueKeysWithValues: try client.clusterMetadata(timeoutMs: timeoutMs).topics.map { ($0.name, $0) })
        for tp in partitions.sorted() {
            guard let topic = topics[tp.topic] else {
                throw KafkaError(code: .unknownTopicOrPartition, message: "topic '\(tp.topic)' does not exist", topic: tp.topic)
            }
            if let error = topic.error { throw error }
            guard topic.partitions.contains(where: { $0.id == tp.partition }) else {
                throw KafkaError(
                    code: .unknownPartition, message: "topic '\(tp.topic)' has \(topic.partitions.count) partitions, there is no partition \(tp.partition)",
                    topic: tp.topic, partition: tp.partition)
            }
        }
    }

    func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = makePartitionList(topics.map { (TopicPartition($0, RD_KAFKA_PARTITION_UA), 0) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot subscribe to \(topics.joined(separator: ", "))")
        }
    }

    func poll(maxMessages: Int, timeoutMs: Int32) throws(KafkaError) -> KafkaConsumerBatch {
        let collector = MessageCollector()
        let events = try poll(maxMessages: maxMessages, timeoutMs: timeoutMs, into: collector)
        return KafkaConsumerBatch(messages: collector.messages, events: events)
    }

    /// Reads up to `maxMessages` records into `sink`, without copying them, and returns the
    /// events that came with them.
    func poll(maxMessages: Int, timeoutMs: Int32, into sink: some KafkaRecordSink) throws(KafkaError) -> [KafkaConsumerEvent] {
        if messagePointers.count < maxMessages {
            messagePointers = Array(repeating: nil, count: maxMessages)
        }
        let count = messagePointers.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_consume_batch_queue(queue, timeoutMs, buffer.baseAddress, maxMessages)
        }
        guard count >= 0 else {
            throw KafkaError(rd_kafka_last_error(), "cannot consume")
        }
        var errors: [KafkaConsumerEvent] = []
        for index in 0..<count {
            guard let pointer = messagePointers[index] else { continue }
            defer { rd_kafka_message_destroy(pointer) }
            let raw = pointer.pointee
            guard raw.err == RD_KAFKA_RESP_ERR_NO_ERROR, let rkt = raw.rkt else {
                errors.append(errorEvent(pointer, topic: raw.rkt.map(topicName)))
                continue
            }
            // librdkafka 2.0.2 may hand out records of a partition just revoked, or again
            // after a pause: keep only what continues each partition in order.
            guard let cursor = cursor(rkt, raw.partition) else { continue }
            if let expected = cursor.next, raw.offset < expected {
                state.logger.debug("dropping a record delivered twice", metadata: ["kafka.partition": "\(cursor.tp)", "kafka.offset": "\(raw.offset)"])
                continue
            }
            cursor.next = raw.offset + 1
            var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
            sink.receive(
                KafkaRecordView(
                    topic: cursor.tp.topic, partition: raw.partition, offset: raw.offset,
                    timestamp: timestamp >= 0 ? timestamp : nil,
                    key: raw.key.map { UnsafeRawBufferPointer(start: $0, count: raw.key_len) },
                    value: raw.payload.map { UnsafeRawBufferPointer(start: $0, count: raw.len) },
                    headers: headers(pointer)))
        }
        let events = state.pendingEvents + errors
        state.pendingEvents.removeAll()
        return events
    }

    /// The cursor of an assigned partition, found by topic handle; nil when not assigned.
    private func cursor(_ rkt: OpaquePointer, _ partition: Int32) -> PartitionCursor? {
        let key = PartitionKey(handle: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(rkt))), partition: partition)
        if let cursor = state.cursorsByHandle[key] { return cursor }
        guard let cursor = state.cursors[TopicPartition(topicName(rkt), partition)] else { return nil }
        state.cursorsByHandle[key] = cursor
        return cursor
    }

    func store(_ nextOffsets: [TopicPartition: Int64]) throws(KafkaError) {
        let list = makePartitionList(nextOffsets.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_store(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot store offsets")
        }
        if let failed = partitionListEntries(list).first(where: { $0.err != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            throw KafkaError(failed.err, "cannot store the offset of \(failed.tp)", topic: failed.tp.topic, partition: failed.tp.partition)
        }
    }

    func commit(_ nextOffsets: [TopicPartition: Int64]?, wait: Bool) throws(KafkaError) {
        let list = nextOffsets.map { makePartitionList($0.map { ($0.key, $0.value) }) }
        defer { list.map { rd_kafka_topic_partition_list_destroy($0) } }
        let err = rd_kafka_commit(client.handle, list, wait ? 0 : 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || (err == RD_KAFKA_RESP_ERR__NO_OFFSET && nextOffsets == nil) else {
            throw KafkaError(err, "cannot commit offsets")
        }
        if wait, let list, let failed = partitionListEntries(list).first(where: { $0.err != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            throw KafkaError(failed.err, "cannot commit the offset of \(failed.tp)", topic: failed.tp.topic, partition: failed.tp.partition)
        }
    }

    func committed(_ partitions: [TopicPartition], timeoutMs: Int32) throws(KafkaError) -> [TopicPartition: Int64?] {
        let list = makePartitionList(partitions.map { ($0, Int64(RD_KAFKA_OFFSET_INVALID)) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_committed(client.handle, list, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot read committed offsets")
        }
        var result: [TopicPartition: Int64?] = [:]
        for entry in partitionListEntries(list) {
            result[entry.tp] = entry.offset >= 0 ? entry.offset : nil
        }
        return result
    }

    func setPaused(_ partitions: [TopicPartition], paused: Bool) throws(KafkaError) {
        let list = makePartitionList(partitions.map { ($0, 0) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = paused ? rd_kafka_pause_partitions(client.handle, list) : rd_kafka_resume_partitions(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot \(paused ? "pause" : "resume") \(partitions.count) partitions")
        }
    }

    func lag(timeoutMs: Int32) throws(KafkaError) -> [TopicPartition: Int64] {
        let partitions = state.assignment.sorted()
        let unknown = partitions.filter { state.cursors[$0]?.next == nil }
        let committed = unknown.isEmpty ? [:] : try self.committed(unknown, timeoutMs: timeoutMs)
        var lag: [TopicPartition: Int64] = [:]
        for tp in partitions {
            let marks = try client.queryWatermarks(tp, timeoutMs: timeoutMs)
            let position = state.cursors[tp]?.next ?? (committed[tp] ?? nil) ?? marks.low
            lag[tp] = max(0, marks.high - position)
        }
        return lag
    }

    func finishRevocation(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = makePartitionList(partitions.map { ($0, 0) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_incremental_unassign(client.handle, list) {
            throw KafkaError(consuming: error, "cannot release \(partitions.count) revoked partitions")
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        // Leaving the group revokes everything from inside this call: nothing may wait.
        state.holdRevoked = false
        let err = rd_kafka_consumer_close(client.handle)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            state.logger.warning("closing the Kafka consumer: \(KafkaError(err, "close"))")
        }
    }

    private func topicName(_ rkt: OpaquePointer) -> String {
        if let name = state.topicNames[rkt] { return name }
        let name = String(cString: rd_kafka_topic_name(rkt))
        state.topicNames[rkt] = name
        return name
    }

    private func errorEvent(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>, topic: String?) -> KafkaConsumerEvent {
        let raw = pointer.pointee
        if raw.err == RD_KAFKA_RESP_ERR__PARTITION_EOF, let topic {
            return .partitionEnd(TopicPartition(topic, raw.partition), offset: raw.offset)
        }
        let detail = rd_kafka_message_errstr(pointer).map { String(cString: $0) } ?? ""
        return .error(
            KafkaError(
                code: KafkaError.Code(raw.err),
                message: detail.isEmpty ? String(cString: rd_kafka_err2str(raw.err)) : detail,
                isRetriable: KafkaError.retriableCodes.contains(KafkaError.Code(raw.err)),
                topic: topic, partition: topic == nil || raw.partition < 0 ? nil : raw.partition))
    }

    private func headers(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var hdrs: OpaquePointer?
        guard rd_kafka_message_headers(pointer, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        return (0..<rd_kafka_header_cnt(hdrs)).compactMap { index in
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            guard rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR, let name else { return nil }
            return KafkaHeader(String(cString: name), bytes(value, size))
        }
    }
}

func bytes(_ pointer: UnsafeRawPointer?, _ count: Int) -> [UInt8]? {
    guard let pointer else { return nil }
    return Array(UnsafeRawBufferPointer(start: pointer, count: count))
}

/// A held partition and the offset its next record must have.
final class PartitionCursor {
    let tp: TopicPartition
    var next: Int64?

    init(_ tp: TopicPartition) {
        self.tp = tp
    }
}

/// A partition by librdkafka topic handle: hashing two integers instead of a topic name.
struct PartitionKey: Hashable {
    let handle: UInt
    let partition: Int32
}

/// Copies records into `KafkaRecord`s, for `poll`.
private final class MessageCollector: KafkaRecordSink, @unchecked Sendable {
    // @unchecked: used only on the consumer's thread, during one poll.
    var messages: [KafkaRecord] = []

    func receive(_ record: KafkaRecordView) {
        messages.append(
            KafkaRecord(
                topic: record.topic, partition: record.partition, offset: record.offset, timestamp: record.timestamp,
                key: record.key.map { Array($0) }, value: record.value.map { Array($0) }, headers: record.headers))
    }
}
