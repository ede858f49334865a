public import AeroGridCore
import CRdKafka
import Foundation
public import Logging
import Synchronization

/// Where a produced record landed.
public struct KafkaDeliveryReport: Sendable, Equatable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// A Kafka producer over librdkafka. `send` waits for one record's delivery; `enqueue` only
/// hands the record to librdkafka (fast, for bulk), and `flush` waits for everything
/// enqueued and reports any delivery that failed since the last flush.
public final class KafkaProducer: Sendable {
    private let client: RDKafkaClient
    private let state: ProducerState
    private let worker: KafkaWorkerThread
    private let pollThreadEnded = ThreadEnd()

    public init(configuration: KafkaConfiguration, logger: Logger) throws(KafkaError) {
        let producerState = ProducerState(logger: logger)
        client = try RDKafkaClient(
            role: .producer, properties: configuration.resolved(KafkaConfiguration.producerDefaults), context: producerState
        ) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { rk, message, _ in
                guard let message, let state = RDKafkaContext.from(rk) as? ProducerState else { return }
                state.delivered(message)
            }
        }
        state = producerState
        worker = KafkaWorkerThread(name: "aerogrid-kafka-producer")
        // Delivery reports are served by polling; one thread does nothing else. It holds the
        // client until it ends, and lets go of it before it says so (see `close`).
        let client = Unmanaged.passRetained(self.client)
        let state = self.state
        let ended = pollThreadEnded
        Thread.detachNewThread {
            let handle = client.takeUnretainedValue().handle
            while !state.isClosed { rd_kafka_poll(handle, 50) }
            client.release()
            ended.signal()
        }
    }

    /// Stops serving delivery reports and waits for the thread that served them, so the
    /// client goes with this object rather than up to a poll interval later: a caller that
    /// stops Kafka next (`aerogrid dev` at Ctrl-C) gets no disconnection errors from it.
    /// Flush first: what is still queued is not delivered after this.
    public func close() async {
        state.close()
        await pollThreadEnded.wait()
    }

    deinit {
        state.close()
        worker.stop()
    }

    /// Produces one record and waits until the cluster has it. A full local queue is an
    /// error here (`queueFull`, retriable); `enqueue` waits for room instead.
    public func send(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []
    ) async throws -> KafkaDeliveryReport {
        try await withCheckedThrowingContinuation { continuation in
            if let error = produce(topic: topic, partition: partition, key: key, value: value, headers: headers, onDelivery: { continuation.resume(with: $0) })
            {
                continuation.resume(throwing: error)
            }
        }
    }

    /// Hands one record to librdkafka and returns at once; `onDelivery` hears how it ended
    /// (on the thread that serves delivery reports). An error returned here (a full local
    /// queue, say) means the record was not taken and `onDelivery` is never called.
    public func produce(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [],
        onDelivery: @escaping @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void
    ) -> KafkaError? {
        // Retained until the delivery report (or this failure) releases it.
        let waiter = Unmanaged.passRetained(DeliveryWaiter(onDelivery)).toOpaque()
        let error = produceOnce(topic: topic, partition: partition, key: key, value: value, headers: headers, opaque: waiter)
        if error != nil { Unmanaged<DeliveryWaiter>.fromOpaque(waiter).release() }
        return error
    }

    /// Hands one record to librdkafka without waiting for its delivery; a full local
    /// queue makes this wait for room. Failed deliveries are reported by `flush`.
    public func enqueue(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []
    ) async throws {
        try await produce(topic: topic, partition: partition, key: key, value: value, headers: headers, opaque: nil)
    }

    /// Waits until every enqueued record is delivered or failed, then throws the first
    /// failure since the last flush (with how many failed).
    public func flush(timeout: Duration = .seconds(30)) async throws {
        let timeoutMs = milliseconds(timeout)
        let client = self.client
        try await worker.run {
            let err = rd_kafka_flush(client.handle, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(err, "\(rd_kafka_outq_len(client.handle)) records still undelivered after \(timeoutMs) ms")
            }
        }
        if let (count, first) = state.takeFailures() {
            throw KafkaError(
                code: first.code, message: "\(count) records were not delivered; the first: \(first.message)",
                isRetriable: first.isRetriable, topic: first.topic, partition: first.partition)
        }
    }

    /// Every topic in the cluster, from one all-topics metadata request.
    public func metadata(timeout: Duration = .seconds(5)) async throws -> KafkaClusterMetadata {
        let timeoutMs = milliseconds(timeout)
        let client = self.client
        return try await worker.run { try client.clusterMetadata(timeoutMs: timeoutMs) }
    }

    private func produce(
        topic: String, partition: Int32?, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader],
        opaque: UnsafeMutableRawPointer?
    ) async throws {
        while true {
            let err = produceOnce(topic: topic, partition: partition, key: key, value: value, headers: headers, opaque: opaque)
            guard let err else { return }
            guard err.code == .queueFull else { throw err }
            // librdkafka's queue (queue.buffering.max.messages) is full: let the poll thread
            // drain delivery reports, without blocking this thread.
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    private func produceOnce(
        topic: String, partition: Int32?, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader],
        opaque: UnsafeMutableRawPointer?
    ) -> KafkaError? {
        var hdrs: OpaquePointer? = nil
        if !headers.isEmpty {
            hdrs = rd_kafka_headers_new(headers.count)
            for header in headers {
                if let value = header.value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(hdrs, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    rd_kafka_header_add(hdrs, header.name, -1, nil, 0)
                }
            }
        }
        let error: OpaquePointer? = topic.withCString { topicName in
            withOptionalBytes(key) { keyPointer, keyCount in
                withOptionalBytes(value) { valuePointer, valueCount in
                    var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                    fields[0].vtype = RD_KAFKA_VTYPE_TOPIC
                    fields[0].u.cstr = topicName
                    fields[1].vtype = RD_KAFKA_VTYPE_PARTITION
                    fields[1].u.i32 = partition ?? RD_KAFKA_PARTITION_UA
                    fields[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    fields[2].u.i = RD_KAFKA_MSG_F_COPY
                    fields[3].vtype = RD_KAFKA_VTYPE_KEY
                    fields[3].u.mem.ptr = keyPointer
                    fields[3].u.mem.size = keyCount
                    fields[4].vtype = RD_KAFKA_VTYPE_VALUE
                    fields[4].u.mem.ptr = valuePointer
                    fields[4].u.mem.size = valueCount
                    fields[5].vtype = RD_KAFKA_VTYPE_OPAQUE
                    fields[5].u.ptr = opaque
                    var count = 6
                    if let hdrs {
                        fields[6].vtype = RD_KAFKA_VTYPE_HEADERS
                        fields[6].u.headers = hdrs
                        count = 7
                    }
                    return rd_kafka_produceva(client.handle, fields, count)
                }
            }
        }
        guard let error else { return nil }
        // On failure the headers were not taken over by a message.
        if let hdrs { rd_kafka_headers_destroy(hdrs) }
        return KafkaError(consuming: error, "cannot produce to topic '\(topic)'")
    }
}

/// Runs `body` with a pointer and size for optional bytes (nil stays nil: a null key).
private func withOptionalBytes<T>(_ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> T) -> T {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { body(UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }
}

/// Who hears of one record's delivery, passed to librdkafka as the message's opaque pointer.
final class DeliveryWaiter: Sendable {
    let onDelivery: @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void

    init(_ onDelivery: @escaping @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void) {
        self.onDelivery = onDelivery
    }
}

/// Signalled once, by a thread as it ends; awaited by any number of tasks.
final class ThreadEnd: Sendable {
    private let state = Mutex<(ended: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func signal() {
        let waiters = state.withLock { state in
            state.ended = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = state.withLock { state in
                if !state.ended { state.waiters.append(continuation) }
                return state.ended
            }
            if ended { continuation.resume() }
        }
    }
}

final class ProducerState: RDKafkaContext, @unchecked Sendable {
    // @unchecked: mutable state lives in Mutexes.
    private let failures = Mutex<(count: Int, first: KafkaError?)>((0, nil))
    private let closed = Atomic<Bool>(false)

    var isClosed: Bool { closed.load(ordering: .relaxed) }

    func close() { closed.store(true, ordering: .relaxed) }

    /// librdkafka's delivery report, on the poll thread.
    func delivered(_ message: UnsafePointer<rd_kafka_message_t>) {
        let raw = message.pointee
        let topic = raw.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?"
        let error: KafkaError? =
            raw.err == RD_KAFKA_RESP_ERR_NO_ERROR
            ? nil : KafkaError(raw.err, "delivery to topic '\(topic)' failed", topic: topic, partition: raw.partition)
        if let waiter = raw._private {
            let waiter = Unmanaged<DeliveryWaiter>.fromOpaque(waiter).takeRetainedValue()
            if let error {
                waiter.onDelivery(.failure(error))
            } else {
                waiter.onDelivery(.success(KafkaDeliveryReport(topic: topic, partition: raw.partition, offset: raw.offset)))
            }
        } else if let error {
            failures.withLock { failures in
                failures.count += 1
                if failures.first == nil { failures.first = error }
            }
        }
    }

    func takeFailures() -> (Int, KafkaError)? {
        failures.withLock { failures in
            defer { failures = (0, nil) }
            return failures.first.map { (failures.count, $0) }
        }
    }
}
