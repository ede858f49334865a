import AeroGridCore
import AeroGridIPC
import AeroGridKafka
import AeroGridStore

/// Collects one records frame straight from the Kafka consumer's buffers: each record is
/// written once, into the frame, with no copy in between. Also notes the offset after each
/// partition's last record, which the batch moves its partitions to once confirmed.
///
/// A frame stays under the protocol's size limit: a record that would take it past is
/// copied aside for the next batch (`overflow`, delivered first), and a record no frame can
/// hold — over the limit alone, or with more headers or a longer header name than the
/// format counts — is set aside for the dead-letter topic (`unframeable`).
final class BatchSink: KafkaRecordSink, @unchecked Sendable {
    // @unchecked: filled on the consumer's thread during one poll, read after it returns.
    private var builder: RecordsFrameBuilder
    private(set) var offsets: [SourcePartition: Int64] = [:]
    private(set) var overflow: [KafkaRecord] = []
    private(set) var unframeable: [(record: KafkaRecord, reason: String)] = []
    private let budget: Int
    /// The partition of the records being appended: records come in runs per partition,
    /// so the dictionary is touched once per run, not once per record.
    private var run: (topic: String, partition: Int32, next: Int64)?

    /// Room left for the batch head (topic table) inside the frame limit.
    static let defaultBudget = IPCLimits.maxFrameLength - (1 << 20)

    init(expectedRecords: Int, carried: [KafkaRecord] = [], budget: Int = BatchSink.defaultBudget) {
        builder = RecordsFrameBuilder(expectedBytes: min(expectedRecords, 10_000) * 96)
        self.budget = budget
        for record in carried {
            withBuffer(record.key) { key in
                withBuffer(record.value) { value in
                    consider(
                        topic: record.topic, partition: record.partition, offset: record.offset, timestamp: record.timestamp,
                        key: key, value: value, headers: record.headers)
                }
            }
        }
    }

    var count: Int { Int(builder.count) }

    func receive(_ record: KafkaRecordView) {
        consider(
            topic: record.topic, partition: record.partition, offset: record.offset, timestamp: record.timestamp,
            key: record.key, value: record.value, headers: record.headers)
    }

    /// Into the frame, aside for the next batch, or aside for the dead-letter topic. Once a
    /// record is left for the next batch every later one is too, so each partition's
    /// records stay in order and a batch's offsets never pass a record it does not hold.
    private func consider(
        topic: String, partition: Int32, offset: Int64, timestamp: Int64?,
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headers: [KafkaHeader]
    ) {
        func copy() -> KafkaRecord {
            KafkaRecord(
                topic: topic, partition: partition, offset: offset, timestamp: timestamp,
                key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers)
        }
        if !overflow.isEmpty {
            overflow.append(copy())
            return
        }
        let size = 32 + (key?.count ?? 0) + (value?.count ?? 0) + headers.reduce(0) { $0 + 6 + $1.name.utf8.count + ($1.value?.count ?? 0) }
        if size > budget || headers.count > Int(UInt16.max) || headers.contains(where: { $0.name.utf8.count > Int(UInt16.max) }) {
            let reason =
                size > budget
                ? "a record of \(size) bytes does not fit in a records frame (at most \(budget))"
                : "a record with \(headers.count) headers, or a header name over 65,535 bytes, does not fit the records frame"
            unframeable.append((copy(), reason))
            track(topic, partition, offset)
            return
        }
        if count > 0 && builder.byteCount + size > budget {
            overflow.append(copy())
            return
        }
        builder.append(topic: topic, partition: partition, offset: offset, timestamp: timestamp, key: key, value: value, headers: headers)
        track(topic, partition, offset)
    }

    func frame(batchID: UInt64) -> [UInt8] {
        endRun()
        return builder.frame(batchID: batchID)
    }

    private func track(_ topic: String, _ partition: Int32, _ offset: Int64) {
        if let current = run, current.partition == partition, current.topic == topic {
            run = (current.topic, current.partition, offset + 1)
        } else {
            endRun()
            run = (topic, partition, offset + 1)
        }
    }

    private func endRun() {
        if let current = run {
            offsets[SourcePartition(topic: current.topic, partition: current.partition)] = current.next
        }
        run = nil
    }
}

private func withBuffer<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}
