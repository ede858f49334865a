import CRdKafka
public import Logging

/// A partition with its leader and watermarks.
public struct KafkaPartitionDescription: Sendable, Equatable {
    public let id: Int32
    public let leader: Int32
    public let replicas: [Int32]
    public let watermarks: KafkaWatermarks
}

/// A topic to create.
public struct KafkaNewTopic: Sendable, Equatable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int32
    /// Topic settings such as `retention.ms` or `cleanup.policy`.
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = -1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// Cluster administration: listing and describing topics, creating them.
///
/// librdkafka's mock cluster does not implement CreateTopics; against it `createTopics`
/// fails with a clear error, and `EmbeddedKafka.createTopic` is the way.
public final class KafkaAdmin: Sendable {
    private let client: RDKafkaClient
    private let worker: KafkaWorkerThread

    public init(configuration: KafkaConfiguration, logger: Logger) throws(KafkaError) {
        client = try RDKafkaClient(
            role: .producer, properties: configuration.resolved([:]), context: RDKafkaContext(logger: logger))
        worker = KafkaWorkerThread(name: "aerogrid-kafka-admin")
    }

    deinit {
        worker.stop()
    }

    public func metadata(timeout: Duration = .seconds(5)) async throws -> KafkaClusterMetadata {
        let timeoutMs = milliseconds(timeout)
        let client = self.client
        return try await worker.run { try client.clusterMetadata(timeoutMs: timeoutMs) }
    }

    /// The names of the topics that exist and are healthy, internal ones (`__…`) left out.
    public func listTopics(timeout: Duration = .seconds(5)) async throws -> [String] {
        try await metadata(timeout: timeout).topics
            .filter { $0.error == nil && !$0.name.hasPrefix("__") }
            .map(\.name)
    }

    /// A topic's partitions with their leaders and watermarks; an unknown topic, or one the
    /// cluster reports an error for, throws.
    public func describePartitions(topic: String, timeout: Duration = .seconds(5)) async throws -> [KafkaPartitionDescription] {
        let timeoutMs = milliseconds(timeout)
        let client = self.client
        return try await worker.run {
            let metadata = try client.topicMetadata(topic, timeoutMs: timeoutMs)
            return try metadata.partitions.map { partition throws(KafkaError) in
                KafkaPartitionDescription(
                    id: partition.id, leader: partition.leader, replicas: partition.replicas,
                    watermarks: try client.queryWatermarks(TopicPartition(topic, partition.id), timeoutMs: timeoutMs))
            }
        }
    }

    /// Creates topics and waits for the cluster's answer; the first refusal is thrown.
    public func createTopics(_ topics: [KafkaNewTopic], timeout: Duration = .seconds(30)) async throws {
        let timeoutMs = milliseconds(timeout)
        let client = self.client
        try await worker.run { try Self.create(topics, client: client, timeoutMs: timeoutMs) }
    }

    private static func create(_ topics: [KafkaNewTopic], client: RDKafkaClient, timeoutMs: Int32) throws(KafkaError) {
        var newTopics: [OpaquePointer?] = []
        defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
        for topic in topics {
            var errstr = [CChar](repeating: 0, count: 512)
            guard let newTopic = rd_kafka_NewTopic_new(topic.name, topic.partitions, topic.replicationFactor, &errstr, errstr.count) else {
                throw KafkaError(code: .invalidArgument, message: "topic '\(topic.name)': \(string(fromBuffer: errstr))", topic: topic.name)
            }
            newTopics.append(newTopic)
            for (key, value) in topic.config.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    throw KafkaError(err, "topic '\(topic.name)': setting '\(key)'", topic: topic.name)
                }
            }
        }
        let options = rd_kafka_AdminOptions_new(client.handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errstr = [CChar](repeating: 0, count: 512)
        rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errstr, errstr.count)
        rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errstr, errstr.count)
        let queue = rd_kafka_queue_new(client.handle)
        defer { rd_kafka_queue_destroy(queue) }
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(client.handle, buffer.baseAddress, buffer.count, options, queue)
        }
        // The request has its own timeout; wait a little longer for its answer event.
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 5000) else {
            throw KafkaError(code: .timedOut, message: "no answer to CreateTopics within \(timeoutMs) ms")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventErr = rd_kafka_event_error(event)
        guard eventErr == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let detail = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            throw KafkaError(code: KafkaError.Code(eventErr), message: "cannot create topics: \(detail)")
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else { return }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for index in 0..<count {
            let topicResult = results[index]
            let err = rd_kafka_topic_result_error(topicResult)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                let detail = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
                throw KafkaError(code: KafkaError.Code(err), message: "cannot create topic '\(name)': \(detail)", topic: name)
            }
        }
    }
}
