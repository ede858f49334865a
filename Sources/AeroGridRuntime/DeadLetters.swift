public import AeroGridCore
import AeroGridIPC
import AeroGridKafka
import Logging
import Synchronization

/// Where the records an app cannot take go: its dead-letter topic, `<tenant>.<app>.dlq`.
/// Each letter is the record as read (key, value, headers) plus `aerogrid.error.*` headers
/// saying what went wrong and `aerogrid.source.*` ones saying where it came from; each is
/// also noted in the app's log. The stream goes on.
final class DeadLetters: Sendable {
    let topic: String
    private let log: AppLog
    private let logger: Logger
    private let producer = Mutex<KafkaProducer?>(nil)
    private let counted = Atomic<Int>(0)

    /// A value above this is left out of a letter: the cluster would refuse the whole letter.
    static let maxValueBytes = 512 << 10

    init(app: AppID, log: AppLog, logger: Logger) {
        topic = "\(app.tenant).\(app.name).dlq"
        self.log = log
        self.logger = logger
    }

    /// Records sent to the topic since the runner was made.
    var count: Int { counted.load(ordering: .relaxed) }

    /// Makes the producer, and the topic in the background where the cluster lacks it.
    func open(kafka: KafkaConfiguration) throws {
        let made = try KafkaProducer(configuration: kafka, logger: logger)
        producer.withLock { $0 = made }
        // In the background: a cluster that creates topics on first use (the embedded one)
        // only answers CreateTopics with a timeout.
        Task { await ensureTopic(kafka: kafka) }
    }

    /// Writes what is queued (for up to 10 s) and closes the producer: a client left open
    /// would outlive a cluster stopped after the apps (`aerogrid dev`'s).
    func close() async {
        guard
            let made = producer.withLock({ current in
                defer { current = nil }
                return current
            })
        else { return }
        try? await made.flush(timeout: .seconds(10))
        await made.close()
    }

    /// A record no records frame can carry (kind `too-large`). Its own headers stay out
    /// (they may be why it does not fit), and its value too when it is over 512 KiB.
    func unframeable(_ record: KafkaRecord, reason: String) {
        let value = (record.value?.count ?? 0) <= Self.maxValueBytes ? record.value : nil
        send(
            source: record, key: record.key, value: value, headers: [],
            kind: "too-large", handler: nil, message: reason, traceback: nil,
            note: "cannot be delivered: \(reason)")
    }

    /// Records the app failed on. `frame`, the batch's records frame, holds the originals;
    /// failures are few, so it is read back only when there are some.
    func failed(_ errors: [RecordError], frame: [UInt8]) {
        var originals: [SourcePosition: KafkaRecord] = [:]
        for record in (try? RecordsFrameReader.records(in: frame).records) ?? [] {
            originals[SourcePosition(record)] = record
        }
        for error in errors {
            // The app chose these texts: bounded before they are logged or produced.
            let message = error.error.cut(toBytes: 16 << 10)
            let original = originals[SourcePosition(topic: error.topic, partition: error.partition, offset: error.offset)]
            let source = KafkaRecord(topic: error.topic, partition: error.partition, offset: error.offset, timestamp: nil, key: nil, value: nil)
            send(
                source: source, key: original?.key, value: original?.value, headers: original?.headers ?? [],
                kind: error.kind, handler: error.handler ?? "", message: message, traceback: error.traceback,
                note: "failed (\(error.kind.cut(toBytes: 256))): \(message)")
        }
    }

    private func send(
        source: KafkaRecord, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader],
        kind: String, handler: String?, message: String, traceback: String?, note: String
    ) {
        counted.add(1, ordering: .relaxed)
        // Through the app's log: kept there, and passed on to the supervisor's at its rate.
        log.append(
            "record \(source.topic.cut(toBytes: 249))/\(source.partition)@\(source.offset) \(note) (sent to \(topic))",
            source: "supervisor", level: .warning)
        var letter = headers
        letter.append(KafkaHeader("aerogrid.error.kind", Array(kind.cut(toBytes: 256).utf8)))
        if let handler { letter.append(KafkaHeader("aerogrid.error.handler", Array(handler.cut(toBytes: 256).utf8))) }
        letter.append(KafkaHeader("aerogrid.error.message", Array(message.utf8)))
        if let traceback { letter.append(KafkaHeader("aerogrid.error.traceback", Array(traceback.cut(toBytes: 64 << 10).utf8))) }
        letter += [
            KafkaHeader("aerogrid.source.topic", Array(source.topic.cut(toBytes: 249).utf8)),
            KafkaHeader("aerogrid.source.partition", Array(String(source.partition).utf8)),
            KafkaHeader("aerogrid.source.offset", Array(String(source.offset).utf8)),
        ]
        let (producer, topic, logger) = (self.producer.withLock { $0 }, self.topic, self.logger)
        Task {
            do {
                try await producer?.enqueue(topic: topic, key: key, value: value, headers: letter)
            } catch {
                logger.error("cannot write a dead letter to \(topic): \(error)")
            }
        }
    }

    /// Creates the topic if the cluster lacks it. A cluster that refuses (or, like the
    /// embedded one, creates topics on first use) is left as it is.
    private func ensureTopic(kafka: KafkaConfiguration) async {
        guard let admin = try? KafkaAdmin(configuration: kafka, logger: logger) else { return }
        if let topics = try? await admin.listTopics(), topics.contains(topic) { return }
        do {
            try await admin.createTopics([KafkaNewTopic(name: topic, partitions: 1)], timeout: .seconds(5))
        } catch {
            logger.info("dead-letter topic \(topic) not created here (\(error)); it is created on first use where the cluster allows")
        }
    }
}

/// A record's place in its topic: how a failure names the record it is about.
private struct SourcePosition: Hashable {
    let topic: String
    let partition: Int32
    let offset: Int64

    init(topic: String, partition: Int32, offset: Int64) {
        (self.topic, self.partition, self.offset) = (topic, partition, offset)
    }

    init(_ record: KafkaRecord) {
        self.init(topic: record.topic, partition: record.partition, offset: record.offset)
    }
}
