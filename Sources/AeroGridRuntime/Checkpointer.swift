import AeroGridCore
import AeroGridKafka
import AeroGridStore
import Logging
import Synchronization

/// Writes an app's checkpoints: what changed in its grids since the last one, offsets with
/// it, in one store transaction; then the same offsets to Kafka as the group's committed
/// ones, so Kafka's tools show the app's lag. One store write at a time: a checkpoint's
/// delta is taken and written (or put back) as a whole before a reset may clear the grids,
/// and the other way round, and an older checkpoint never lands after a newer one.
final class Checkpointer: Sendable {
    private let app: AppID
    private let grids: GridState
    private let store: Store
    private let logger: Logger
    private let writes = AsyncCredits(limit: 1)
    private let written = Atomic<Int>(0)

    init(app: AppID, grids: GridState, store: Store, logger: Logger) {
        self.app = app
        self.grids = grids
        self.store = store
        self.logger = logger
    }

    /// Checkpoints written.
    var count: Int { written.load(ordering: .relaxed) }

    /// The grids as last checkpointed, in a new epoch: where a run starts.
    func restore() async throws {
        let checkpoint = try await store.loadCheckpoint(app: app.description)
        grids.restore(checkpoint, epoch: try await store.nextEpoch(app: app.description))
        logger.info(
            "starting from the checkpoint",
            metadata: [
                "aerogrid.epoch": "\(grids.epoch)", "aerogrid.grids": "\(checkpoint.grids.count)",
                "aerogrid.partitions": "\(checkpoint.offsets.count)",
            ])
    }

    /// Copies what changed since the last checkpoint to the store, then commits its offsets.
    func write(committingTo consumer: KafkaConsumer) async {
        _ = await writes.acquire()
        defer { writes.release() }
        let delta = grids.takeCheckpointDelta()
        guard !delta.isEmpty else { return }
        do {
            try await store.saveCheckpoint(app: app.description, delta)
            written.add(1, ordering: .relaxed)
        } catch {
            grids.reinstate(delta)
            logger.error("cannot write a checkpoint (kept for the next one): \(error)")
            return
        }
        var offsets: [TopicPartition: Int64] = [:]
        for (source, offset) in delta.offsets { offsets[TopicPartition(source.topic, source.partition)] = offset }
        if !offsets.isEmpty { try? await consumer.commitInBackground(offsets) }
    }

    /// Writes every `interval` until cancelled. Each write runs in a task of its own, so a
    /// cancel (at stop) interrupts the wait, never a write in progress.
    func every(_ interval: Duration, committingTo consumer: KafkaConsumer) -> Task<Void, Never> {
        Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { return }
                await Task { await write(committingTo: consumer) }.value
            }
        }
    }

    /// Forgets the checkpoint and empties the grids, in a new epoch (the out-of-range
    /// policy's reset).
    func reset() async throws {
        _ = await writes.acquire()
        defer { writes.release() }
        try await store.deleteCheckpoint(app: app.description)
        grids.restore(GridCheckpoint(), epoch: try await store.nextEpoch(app: app.description))
    }
}
