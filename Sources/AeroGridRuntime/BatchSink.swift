import AeroGridIPC
import AeroGridKafka
import AeroGridStore

/// Collects one records frame straight from the Kafka consumer's buffers: each record is
/// written once, into the frame, with no copy in between. Also notes the offset after each
/// partition's last record, which the batch moves its partitions to once confirmed.
final class BatchSink: KafkaRecordSink, @unchecked Sendable {
    // @unchecked: filled on the consumer's thread during one poll, read after it returns.
    private var builder: RecordsFrameBuilder
    private(set) var offsets: [SourcePartition: Int64] = [:]
    /// The partition of the records being appended: records come in runs per partition,
    /// so the dictionary is touched once per run, not once per record.
    private var run: (topic: String, partition: Int32, next: Int64)?

    init(expectedRecords: Int) {
        builder = RecordsFrameBuilder(expectedBytes: min(expectedRecords, 10_000) * 96)
    }

    var count: Int { Int(builder.count) }

    func receive(_ record: KafkaRecordView) {
        builder.append(topic: record.topic, partition: record.partition, offset: record.offset, timestamp: record.timestamp,
                       key: record.key, value: record.value, headers: record.headers.map { ($0.name, $0.value) })
        if let current = run, current.partition == record.partition, current.topic == record.topic {
            run = (current.topic, current.partition, record.offset + 1)
        } else {
            endRun()
            run = (record.topic, record.partition, record.offset + 1)
        }
    }

    func frame(batchID: UInt64) -> [UInt8] {
        endRun()
        return builder.frame(batchID: batchID)
    }

    private func endRun() {
        if let current = run {
            offsets[SourcePartition(topic: current.topic, partition: current.partition)] = current.next
        }
        run = nil
    }
}
