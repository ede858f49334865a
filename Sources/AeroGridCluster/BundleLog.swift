public import AeroGridCore
public import AeroGridKafka
public import Logging

/// Bundles' bytes in the cluster's bundles topic (one partition): each bundle in chunks of
/// at most `chunkBytes` (below Kafka's default 1 MB message limit), keyed by its digest,
/// the part and the whole described in headers (format 1: `aerogrid-bundle` = `1`,
/// `digest`, `publication`, `part`, `parts`). The topic is bounded (the embedded one keeps
/// about 5 MB), so a bundle's chunks may be gone: `fetch` says so with nil, and the caller
/// asks a peer node instead. Whatever is read is verified by the caller before it is used.
public final class BundleLog: Sendable {
    public static let formatVersion = "1"
    public static let chunkBytes = 900_000
    public let topic: String
    private let kafka: KafkaConfiguration
    private let producer: KafkaProducer
    private let logger: Logger

    public init(kafka: KafkaConfiguration, topic: String, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.kafka = kafka
        self.logger = logger
        producer = try ClusterTopics.producer(kafka, logger: logger)
    }

    /// Writes the bundle's bytes, once the cluster has every chunk.
    public func publish(digest: String, bytes: [UInt8]) async throws {
        let publication = RandomID.make(prefix: "pub_")
        let parts = max(1, (bytes.count + Self.chunkBytes - 1) / Self.chunkBytes)
        for part in 0..<parts {
            let chunk = Array(bytes[(part * Self.chunkBytes)..<min(bytes.count, (part + 1) * Self.chunkBytes)])
            let headers = [
                KafkaHeader("aerogrid-bundle", Array(Self.formatVersion.utf8)), KafkaHeader("digest", Array(digest.utf8)),
                KafkaHeader("publication", Array(publication.utf8)), KafkaHeader("part", Array(String(part).utf8)),
                KafkaHeader("parts", Array(String(parts).utf8)),
            ]
            _ = try await producer.send(topic: topic, partition: 0, key: Array(digest.utf8), value: chunk, headers: headers)
        }
    }

    /// The bytes of a whole publication of `digest` that `accept` takes (the caller checks
    /// the digest), reading what the topic still holds; nil when none is whole. Holds at
    /// most `maxBytes` of chunks.
    public func fetch(digest: String, maxBytes: Int, accept: ([UInt8]) -> Bool) async throws -> [UInt8]? {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka), logger: logger)
        defer { Task { await consumer.close() } }
        let partition = TopicPartition(topic, 0)
        let marks = try await consumer.watermarks(partition)
        guard marks.high > marks.low else { return nil }
        try await consumer.assign([partition: .offset(marks.low)])
        var chunks: [String: [Int: [UInt8]]] = [:]
        var held = 0
        var position = marks.low
        var quiet = 0
        while position < marks.high, quiet < 50 {
            let batch = try await consumer.poll(maxMessages: 100, timeout: .milliseconds(100))
            quiet = batch.messages.isEmpty ? quiet + 1 : 0
            for message in batch.messages where message.topic == topic && message.offset >= position {
                position = message.offset + 1
                func header(_ name: String) -> String? {
                    message.headers.first { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
                }
                guard header("aerogrid-bundle") == Self.formatVersion, header("digest") == digest, let publication = header("publication"),
                    let part = header("part").flatMap(Int.init), let parts = header("parts").flatMap(Int.init), (1...1000).contains(parts),
                    (0..<parts).contains(part), let value = message.value
                else { continue }
                held += value.count
                guard held <= maxBytes else { return nil }
                chunks[publication, default: [:]][part] = value
                if let whole = chunks[publication], whole.count == parts {
                    let bytes = (0..<parts).flatMap { whole[$0] ?? [] }
                    if accept(bytes) { return bytes }
                    chunks[publication] = nil
                }
            }
        }
        return nil
    }

    public func close() async {
        try? await producer.flush(timeout: .seconds(5))
        await producer.close()
    }
}
