import AeroGridCore
import AeroGridIPC
import AeroGridKafka
import Logging

/// Moves records from the consumer to one app process in batches, one batch per credit the
/// session gives (the app confirms a batch before the next may go, up to the session's
/// window). A batch is what the consumer holds now, at most `maxRecords`, in one records
/// frame; records no frame can carry go to the dead letters as they are read.
struct BatchPump {
    let consumer: KafkaConsumer
    let session: AppSession
    let connection: AppConnection
    let deadLetters: DeadLetters
    let maxRecords: Int
    let logger: Logger

    /// Sends batches until `keepGoing` says no, the session ends or the connection stops
    /// sending; `sent` hears of each batch sent. Throws when an offset goes out of range.
    func run(keepGoing: () -> Bool, sent: (_ records: Int) -> Void) async throws {
        // Records read but left for the next batch, which would have grown past the limit.
        var carried: [KafkaRecord] = []
        var nextBatchID: UInt64 = 1
        while keepGoing() {
            guard await session.credits.acquire() else { break }
            let batch = BatchSink(expectedRecords: maxRecords, carried: carried)
            while batch.count == 0 && keepGoing() && !session.hasEnded {
                try await fill(batch)
            }
            for (record, reason) in batch.unframeable { deadLetters.unframeable(record, reason: reason) }
            guard batch.count > 0 else {
                session.credits.release()
                break
            }
            carried = batch.overflow
            let id = nextBatchID
            nextBatchID += 1
            let frame = batch.frame(batchID: id)
            // Registered before it is sent, so its batch-done can never come first; taken
            // back if the connection no longer sends (a shutdown went out meanwhile).
            session.registerBatch(AppSession.InFlight(id: id, records: UInt32(batch.count), offsets: batch.offsets, frame: frame))
            guard connection.send(frame) else {
                session.unregisterBatch(id)
                break
            }
            sent(batch.count)
        }
    }

    /// What the consumer has now, at once; when it has nothing, waits up to 20 ms for a
    /// first record and takes what came with it. (Asked for a full batch with a wait,
    /// librdkafka would hold the batch back until it is full or the wait is over.)
    private func fill(_ batch: BatchSink) async throws {
        var events = try await consumer.poll(maxMessages: maxRecords, timeout: .zero, into: batch)
        if batch.count == 0 {
            events += try await consumer.poll(maxMessages: 1, timeout: .milliseconds(20), into: batch)
            if batch.count > 0 {
                events += try await consumer.poll(maxMessages: maxRecords - 1, timeout: .zero, into: batch)
            }
        }
        for case .error(let error) in events {
            if error.code == .autoOffsetReset || error.code == .offsetOutOfRange {
                throw RuntimeError("an offset went out of range while running (\(error)); the out-of-range policy applies on restart")
            }
            logger.warning("Kafka: \(error)")
        }
    }
}
