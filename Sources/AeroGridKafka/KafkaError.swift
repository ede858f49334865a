import CRdKafka

/// An error from Kafka or from librdkafka, with librdkafka's own code and name so it can be
/// looked up in Kafka's documentation, and where in our code it was raised.
public struct KafkaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// librdkafka's `rd_kafka_resp_err_t`: negative values are client-side conditions
    /// (`_TRANSPORT`, `_TIMED_OUT` …), positive ones are the Kafka protocol's error codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

        /// librdkafka's name for the code, e.g. `_TRANSPORT` or `UNKNOWN_TOPIC_OR_PART`.
        public var name: String { String(cString: rd_kafka_err2name(rdValue)) }
        public var description: String { name }
        var rdValue: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

        public static let noError = Code(RD_KAFKA_RESP_ERR_NO_ERROR)
        public static let transport = Code(RD_KAFKA_RESP_ERR__TRANSPORT)
        public static let allBrokersDown = Code(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        public static let timedOut = Code(RD_KAFKA_RESP_ERR__TIMED_OUT)
        public static let messageTimedOut = Code(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
        public static let queueFull = Code(RD_KAFKA_RESP_ERR__QUEUE_FULL)
        public static let partitionEOF = Code(RD_KAFKA_RESP_ERR__PARTITION_EOF)
        public static let unknownTopic = Code(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
        public static let unknownPartition = Code(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        public static let unknownTopicOrPartition = Code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        public static let offsetOutOfRange = Code(RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
        public static let autoOffsetReset = Code(RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
        public static let topicAuthorizationFailed = Code(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        public static let invalidArgument = Code(RD_KAFKA_RESP_ERR__INVALID_ARG)
        public static let unsupportedFeature = Code(RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE)
        public static let state = Code(RD_KAFKA_RESP_ERR__STATE)
        public static let destroyed = Code(RD_KAFKA_RESP_ERR__DESTROY)
        public static let noOffset = Code(RD_KAFKA_RESP_ERR__NO_OFFSET)
    }

    public let code: Code
    /// What happened, in words: librdkafka's description plus our context.
    public let message: String
    /// Trying the same operation again may succeed (a broker restarting, a leader moving).
    public let isRetriable: Bool
    /// The client instance is unusable and must be recreated (librdkafka's fatal errors).
    public let isFatal: Bool
    public let topic: String?
    public let partition: Int32?
    /// Where in AeroGrid the error was raised, for bug reports.
    public let origin: String

    public init(
        code: Code, message: String, isRetriable: Bool = false, isFatal: Bool = false,
        topic: String? = nil, partition: Int32? = nil,
        file: String = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.topic = topic
        self.partition = partition
        self.origin = "\(file):\(line)"
    }

    /// An error for a librdkafka response code, with its description and our context.
    init(
        _ err: rd_kafka_resp_err_t, _ context: String, topic: String? = nil, partition: Int32? = nil,
        file: String = #fileID, line: UInt = #line
    ) {
        let code = Code(err)
        self.init(
            code: code, message: "\(context): \(String(cString: rd_kafka_err2str(err)))",
            isRetriable: Self.retriableCodes.contains(code), topic: topic, partition: partition,
            file: file, line: line)
    }

    /// Takes over (and destroys) a librdkafka `rd_kafka_error_t`, which knows its own
    /// retriable and fatal flags.
    init(consuming error: OpaquePointer, _ context: String, file: String = #fileID, line: UInt = #line) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            code: Code(rd_kafka_error_code(error)),
            message: "\(context): \(String(cString: rd_kafka_error_string(error)))",
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            file: file, line: line)
    }

    public var description: String {
        var where_ = ""
        if let topic { where_ = " [\(topic)\(partition.map { "/\($0)" } ?? "")]" }
        return "Kafka error \(code.name)\(where_): \(message)"
    }

    public static func == (lhs: KafkaError, rhs: KafkaError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.topic == rhs.topic && lhs.partition == rhs.partition
    }

    /// Conditions that clear by themselves; librdkafka retries them internally too.
    static let retriableCodes: Set<Code> = [
        .transport, .allBrokersDown, .timedOut, .queueFull,
        Code(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE), Code(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION),
        Code(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT), Code(RD_KAFKA_RESP_ERR_NOT_COORDINATOR),
        Code(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS), Code(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE),
        Code(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS),
    ]
}
