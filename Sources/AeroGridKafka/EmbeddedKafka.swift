import CRdKafka
public import Logging

/// librdkafka's mock cluster, in this process: real Kafka protocol on loopback ports (new
/// ones each start), served to any librdkafka-based client (kcat, confluent-kafka, ours).
///
/// What to design around (librdkafka 2.0.2): a metadata request naming an unknown topic
/// creates it with 4 partitions, so create topics here first with their partition count
/// and check existence from a full listing; the first group join takes about 3 s and later
/// joins or leaves about `session.timeout.ms` − 1 s; each partition keeps only about
/// 100,000 records or 5 MB; state lives in memory and is gone when the cluster stops.
///
/// The control calls below pass a message to the cluster's own thread and wait for it,
/// which takes microseconds: they are synchronous.
public final class EmbeddedKafka: Sendable {
    private let cluster: MockCluster

    /// The `bootstrap.servers` string for clients, e.g. `127.0.0.1:40001,127.0.0.1:40002`.
    public let bootstrapServers: String

    public init(brokers: Int = 1, logger: Logger) throws(KafkaError) {
        guard brokers >= 1 else {
            throw KafkaError(code: .invalidArgument, message: "an embedded cluster needs at least one broker, not \(brokers)")
        }
        // A client instance hosts the cluster's threads. It connects nowhere itself, which
        // librdkafka warns about: only its errors are worth logging.
        let client = try RDKafkaClient(role: .producer, properties: [("log_level", "3")], context: RDKafkaContext(logger: logger))
        guard let mcluster = rd_kafka_mock_cluster_new(client.handle, Int32(brokers)) else {
            throw KafkaError(code: .state, message: "librdkafka could not start its mock cluster")
        }
        cluster = MockCluster(mcluster, host: client)
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(mcluster))
    }

    /// Creates a topic with this many partitions (replication 1).
    public func createTopic(_ name: String, partitions: Int) throws(KafkaError) {
        guard partitions >= 1 else {
            throw KafkaError(code: .invalidArgument, message: "topic '\(name)' needs at least one partition", topic: name)
        }
        let err = rd_kafka_mock_topic_create(cluster.pointer, name, Int32(partitions), 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot create topic '\(name)'", topic: name)
        }
    }

    /// Makes metadata requests report `code` for the topic (nil clears it): for tests of
    /// how clients handle a failing topic.
    public func setTopicError(_ topic: String, _ code: KafkaError.Code?) {
        rd_kafka_mock_topic_set_error(cluster.pointer, topic, (code ?? .noError).rdValue)
    }

    /// Disconnects a broker (or all with -1) and refuses new connections.
    public func setBrokerDown(_ brokerID: Int32 = -1) {
        rd_kafka_mock_broker_set_down(cluster.pointer, brokerID)
    }

    public func setBrokerUp(_ brokerID: Int32 = -1) {
        rd_kafka_mock_broker_set_up(cluster.pointer, brokerID)
    }
}

/// Owns the mock cluster and the client hosting it: the cluster is destroyed in `deinit`,
/// and the host only after that, when the stored properties are released.
private final class MockCluster: @unchecked Sendable {
    // @unchecked: librdkafka's mock control functions are safe from any thread.
    let pointer: OpaquePointer
    private let host: RDKafkaClient

    init(_ pointer: OpaquePointer, host: RDKafkaClient) {
        self.pointer = pointer
        self.host = host
    }

    deinit {
        rd_kafka_mock_cluster_destroy(pointer)
    }
}
