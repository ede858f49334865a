public import AeroGridCore
public import AeroGridKafka
public import Logging

/// One single-partition topic that every node reads in the same order: the way Kafka
/// Connect keeps its configuration (`config.storage.topic`). Appends go through the
/// idempotent producer (`enable.idempotence`, `acks=all`), so a send librdkafka retries
/// after a lost answer is written once; reading is a consumer assigned to partition 0 from
/// an offset the reader chooses (its stored position, or the beginning). Order is the
/// log's: what decides between two nodes' writes is which came first in it.
public final class ConfigLog: Sendable {
    public let topic: String
    private let kafka: KafkaConfiguration
    private let producer: KafkaProducer
    private let logger: Logger

    public init(kafka: KafkaConfiguration, topic: String, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.kafka = kafka
        self.logger = logger
        producer = try ClusterTopics.producer(kafka, logger: logger, extra: ["linger.ms": "0"])
    }

    /// Refuses a topic that is missing or has other than one partition: two partitions would
    /// give two orders, and nodes reading them would decide differently. Read from the full
    /// listing (a metadata request naming a missing topic may create it).
    public func check(timeout: Duration = .seconds(10)) async throws {
        let metadata = try await producer.metadata(timeout: timeout)
        guard let found = metadata.topics.first(where: { $0.name == topic }) else {
            throw ConfigLogError(
                "the cluster's log topic \(topic) does not exist: create it with one partition (aerogrid kafka up --cluster NAME does, on the embedded cluster)"
            )
        }
        if let error = found.error { throw ConfigLogError("the cluster's log topic \(topic) is not usable: \(error)") }
        guard found.partitions.count == 1 else {
            throw ConfigLogError(
                "the cluster's log topic \(topic) has \(found.partitions.count) partitions; it must have exactly 1, so that every node reads one order")
        }
    }

    /// Appends one record and returns its offset, once the cluster has it.
    @discardableResult
    public func append(key: [UInt8], value: [UInt8], headers: [KafkaHeader] = []) async throws -> Int64 {
        try await producer.send(topic: topic, partition: 0, key: key, value: value, headers: headers).offset
    }

    /// A reader of the log from `offset` (0: the beginning; the log may have dropped what
    /// was before its low watermark, which `read` then starts at).
    public func reader(from offset: Int64) async throws -> ConfigLogReader {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka), logger: logger)
        try await consumer.assign([TopicPartition(topic, 0): .offset(offset)])
        return ConfigLogReader(consumer: consumer, partition: TopicPartition(topic, 0), from: offset)
    }

    /// Waits for every append in flight, then stops the producer.
    public func close() async {
        try? await producer.flush(timeout: .seconds(5))
        await producer.close()
    }
}

/// Reads a `ConfigLog` in order. Not shared: one task reads.
public final class ConfigLogReader: @unchecked Sendable {
    // @unchecked: `position` is read and written only by the one task that reads.
    private let consumer: KafkaConsumer
    private let partition: TopicPartition
    /// The offset of the next record to read.
    public private(set) var position: Int64

    init(consumer: KafkaConsumer, partition: TopicPartition, from offset: Int64) {
        self.consumer = consumer
        self.partition = partition
        position = offset
    }

    /// The next records, in order (none when nothing came within `timeout`). While the
    /// cluster is unreachable the consumer reconnects by itself and this returns nothing;
    /// `end` tells how far behind the reader is.
    public func next(timeout: Duration = .milliseconds(100)) async throws -> [KafkaRecord] {
        let batch = try await consumer.poll(maxMessages: 1000, timeout: timeout)
        let records = batch.messages.filter { $0.topic == partition.topic && $0.partition == partition.partition && $0.offset >= position }
        if let last = records.last { position = last.offset + 1 }
        return records
    }

    /// Reads from `offset` on (a record before it is not returned again).
    public func seek(to offset: Int64) async throws {
        try await consumer.assign([partition: .offset(offset)])
        position = offset
    }

    /// The offset the next append will get: the reader has everything written so far when
    /// its position reaches it.
    public func end(timeout: Duration = .seconds(5)) async throws -> Int64 {
        try await consumer.watermarks(partition, timeout: timeout).high
    }

    /// The oldest offset the log still has (below it, retention removed records).
    public func start(timeout: Duration = .seconds(5)) async throws -> Int64 {
        try await consumer.watermarks(partition, timeout: timeout).low
    }

    public func close() async {
        await consumer.close()
    }
}

/// A config log that cannot be used as it is, saying what to fix.
public struct ConfigLogError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
