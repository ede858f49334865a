public import AeroGridCore

/// A topic and one of its partitions.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let topic: String
    public let partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)/\(partition)" }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}

/// Where a manually assigned partition starts.
public enum KafkaStartOffset: Hashable, Sendable {
    case beginning
    case end
    /// The group's committed offset (or `auto.offset.reset` when there is none).
    case committed
    /// Exactly this offset: the next record delivered is the one at `offset`.
    case offset(Int64)
}

/// What a consumer reports besides records.
public enum KafkaConsumerEvent: Sendable, Equatable {
    /// The group gave this consumer these partitions (subscribe mode).
    case assigned([TopicPartition])
    /// The group took these partitions away; their stored offsets were committed first.
    /// With `holdRevoked`, the consumer keeps them until `finishRevocation`.
    case revoked([TopicPartition])
    /// The group gave these partitions to others without asking (this member missed its
    /// session timeout): someone else may already hold them.
    case lost([TopicPartition])
    /// The consumer read to the end of a partition (with `reportPartitionEnd`).
    case partitionEnd(TopicPartition, offset: Int64)
    /// A problem the consumer keeps running through (a broker down, a topic missing…).
    case error(KafkaError)
}

/// What one `poll` returned: records in partition order, and events.
public struct KafkaConsumerBatch: Sendable {
    public var messages: [KafkaRecord]
    public var events: [KafkaConsumerEvent]

    public var isEmpty: Bool { messages.isEmpty && events.isEmpty }
}

/// A topic as the cluster's metadata describes it.
public struct KafkaTopicMetadata: Sendable, Equatable {
    public struct Partition: Sendable, Equatable {
        public let id: Int32
        /// The leading broker's id, or -1 when the partition has no leader.
        public let leader: Int32
        public let replicas: [Int32]
        public let inSyncReplicas: [Int32]
    }

    public let name: String
    public let partitions: [Partition]
    /// The error the cluster reports for this topic (unknown, not authorized …), if any.
    public let error: KafkaError?
}

public struct KafkaBrokerMetadata: Sendable, Equatable {
    public let id: Int32
    public let host: String
    public let port: Int
}

public struct KafkaClusterMetadata: Sendable, Equatable {
    public let brokers: [KafkaBrokerMetadata]
    public let topics: [KafkaTopicMetadata]
}

/// A partition's offsets: `low` is the first record still kept, `high` the offset the next
/// record will get, so `high - low` records are there.
public struct KafkaWatermarks: Sendable, Equatable {
    public let low: Int64
    public let high: Int64

    public init(low: Int64, high: Int64) {
        self.low = low
        self.high = high
    }
}

/// One record as librdkafka holds it, lent to a `KafkaRecordSink` for the length of one
/// call: key and value point into librdkafka's buffer, so copy what must outlive it.
public struct KafkaRecordView {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let timestamp: Int64?
    public let key: UnsafeRawBufferPointer?
    public let value: UnsafeRawBufferPointer?
    public let headers: [KafkaHeader]
}

/// Receives records from `KafkaConsumer.poll(into:)`, in order, on the consumer's thread.
public protocol KafkaRecordSink: AnyObject, Sendable {
    func receive(_ record: KafkaRecordView)
}
