/// A record header: a name and an optional value, as Kafka carries them.
public struct KafkaHeader: Hashable, Sendable {
    public let name: String
    public let value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }
}

/// One Kafka record, the one type a record has from the consumer to the app's records
/// frame and to the dead-letter topic.
public struct KafkaRecord: Sendable, Equatable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    /// Milliseconds since the epoch (create or log-append time), when the broker has one.
    public let timestamp: Int64?
    public let key: [UInt8]?
    public let value: [UInt8]?
    public let headers: [KafkaHeader]

    public init(
        topic: String, partition: Int32, offset: Int64, timestamp: Int64?,
        key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
    }
}
