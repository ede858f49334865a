import AeroGridKafka
import AeroGridStore

/// Where each partition an app consumes starts: right after its applied offset, or at the
/// beginning for a partition never read. An applied offset the partition no longer holds
/// (retention deleted it, or the topic was re-created) is out of range, and the app's
/// `OutOfRangePolicy` decides: fail, or reset the grids and read from the earliest or the
/// latest offsets.
struct StartPositions {
    let consumed: [TopicPartition]
    let policy: OutOfRangePolicy

    /// The consumed partitions whose applied offset is outside what they hold now, each
    /// described for the log and the error.
    func outOfRange(
        applied: [SourcePartition: Int64],
        watermarks: (TopicPartition) async throws -> KafkaWatermarks
    ) async throws -> [String] {
        var found: [String] = []
        for tp in consumed {
            guard let offset = applied[SourcePartition(topic: tp.topic, partition: tp.partition)] else { continue }
            let marks = try await watermarks(tp)
            if offset < marks.low || offset > marks.high {
                found.append("\(tp) at offset \(offset), but it holds offsets \(marks.low) to \(marks.high)")
            }
        }
        return found
    }

    /// Each partition's start, from the applied offsets (empty after a reset).
    func starts(applied: [SourcePartition: Int64], afterReset: Bool) -> [TopicPartition: KafkaStartOffset] {
        let fresh: KafkaStartOffset = afterReset && policy == .resetToLatest ? .end : .beginning
        return Dictionary(
            uniqueKeysWithValues: consumed.map { tp in
                (tp, applied[SourcePartition(topic: tp.topic, partition: tp.partition)].map { KafkaStartOffset.offset($0) } ?? fresh)
            })
    }
}
