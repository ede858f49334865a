import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridStore
import Logging
import Synchronization

/// On a node of a cluster: copies of the grids of apps that run on other nodes, for this
/// node's stream subscribers and REST reads (docs/cluster.md "Any node serves any grid").
/// A replica follows its app's changelog partition through `ChangelogFold`, the rules the
/// owner's restore uses, so it holds exactly what the owner wrote; it exists only while
/// someone here watches the app, and is bounded as the owner's grids are.
final class GridReplicas: Sendable {
    private let kafka: KafkaConfiguration
    private let topic: String
    private let placement: Placement
    private let store: Store
    private let logger: Logger
    /// Told when an app's replica has new grids (caught up, or a new generation).
    private let onPublish: @Sendable (AppID) -> Void
    private let replicas = Mutex<[AppID: GridReplica]>([:])

    init(
        kafka: KafkaConfiguration, topic: String, placement: Placement, store: Store, logger: Logger,
        onPublish: @escaping @Sendable (AppID) -> Void
    ) {
        self.kafka = kafka
        self.topic = topic
        self.placement = placement
        self.store = store
        self.logger = logger
        self.onPublish = onPublish
    }

    /// The replica's grids now; nil until it has caught up. Asking starts a replica.
    func grids(tenant: String, app: String) -> GridState? {
        let key = AppID(tenant: tenant, name: app)
        let (replica, created) = replicas.withLock { table -> (GridReplica, Bool) in
            if let replica = table[key] {
                replica.touch()
                return (replica, false)
            }
            let replica = GridReplica(app: key)
            table[key] = replica
            return (replica, true)
        }
        if created { start(replica) }
        return replica.published
    }

    /// Like `grids`, waiting up to `timeout` for a new replica to catch up (a REST read).
    func caughtUpGrids(tenant: String, app: String, timeout: Duration) async -> GridState? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let grids = grids(tenant: tenant, app: app) { return grids }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the replicas nobody has asked for within `idle`, or whose app runs here now.
    func sweep(idle: Duration, watched: (AppID) -> Bool, runsHere: (AppID) -> Bool) {
        let stale = replicas.withLock { table -> [GridReplica] in
            let stale = table.filter { key, replica in runsHere(key) || (!watched(key) && replica.idle > idle) }
            for key in stale.keys { table[key] = nil }
            return Array(stale.values)
        }
        for replica in stale { replica.stop() }
    }

    private func start(_ replica: GridReplica) {
        replica.task = Task { [self] in
            guard let app = try? await store.app(tenant: replica.app.tenant, name: replica.app.name) else {
                // No such app (yet): forgotten, so the next ask looks again.
                replicas.withLock { if $0[replica.app] === replica { $0[replica.app] = nil } }
                return
            }
            do {
                try await follow(app, into: replica)
            } catch is ReplacedApp {
                // The app was deleted (and perhaps made again under its name): a replica of
                // the new one, if anyone still watches, is made on the next ask.
                replicas.withLock { if $0[replica.app] === replica { $0[replica.app] = nil } }
                onPublish(replica.app)
            } catch {
                if !Task.isCancelled { logger.warning("the replica of \(replica.app) stopped: \(error)") }
                replicas.withLock { if $0[replica.app] === replica { $0[replica.app] = nil } }
            }
        }
    }

    /// Reads the app's partition from its start: whatever came before the end as it was at
    /// the start is applied before the grids are shown; from then on each record as it comes.
    private func follow(_ app: AppRecord, into replica: GridReplica) async throws {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, reportPartitionEnd: true), logger: logger)
        defer { Task { await consumer.close() } }
        let partition = TopicPartition(topic, placement.slot(of: app))
        try await consumer.assign([partition: .beginning])
        let key = Array(app.id.utf8)
        var fold = ChangelogFold(app: app.id)
        var grids = GridState()
        var caughtUp = false
        var checked = ContinuousClock.now
        while !Task.isCancelled {
            if ContinuousClock.now - checked > .seconds(5) {
                checked = .now
                guard let current = try? await store.app(tenant: app.tenant, name: app.name), current.id == app.id else { throw ReplacedApp() }
            }
            let batch = try await consumer.pollPromptly()
            for record in batch.messages where record.key == key {
                guard let value = record.value, let decoded = try? ChangelogRecord.decode(value) else { continue }
                switch fold.read(decoded, at: record.offset) {
                case .claimed(let generation):
                    // A new owner: the same rows in a new epoch, as a new source, so every
                    // subscriber takes a snapshot of it.
                    let next = GridState()
                    let (image, records) = grids.image()
                    next.restore(image, epoch: generation, records: records)
                    next.declare(grids.columns)
                    grids = next
                    if caughtUp { replica.publish(grids, onPublish) }
                case .changes(let changes, let updates):
                    guard let end = changes.end else { continue }
                    if changes.snapshot {
                        var image = GridCheckpoint()
                        for update in updates {
                            if let row = update.row { image.grids[update.grid, default: [:]][update.key] = row }
                        }
                        image.versions = end.versions
                        image.offsets = end.offsets
                        let columns = grids.columns
                        grids.restore(image, epoch: fold.generation ?? grids.epoch, records: end.records)
                        grids.declare(columns)
                    } else {
                        var applied = GridState.Batch()
                        applied.updates = updates.map { ($0.grid, $0.key, $0.row) }
                        applied.offsets = end.offsets
                        applied.records = end.records
                        applied.versions = end.versions
                        grids.apply(applied)
                    }
                case .declared(let columns):
                    grids.declare(columns.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 })
                case .gap(let expected, let got):
                    logger.error("the changelog of \(replica.app) has a gap at offset \(record.offset): sequence \(got), \(expected) was next")
                default:
                    break
                }
            }
            if !caughtUp, batch.events.contains(where: { if case .partitionEnd = $0 { true } else { false } }) {
                caughtUp = true
                replica.publish(grids, onPublish)
            }
        }
    }
}

/// The app a replica follows is gone: deleted, or made again with another id.
private struct ReplacedApp: Error {}

/// One app's replica: the grids shown (once caught up) and the task that follows.
final class GridReplica: Sendable {
    let app: AppID
    private let state = Mutex<(grids: GridState?, lastAsked: ContinuousClock.Instant, task: Task<Void, Never>?)>((nil, .now, nil))

    init(app: AppID) {
        self.app = app
    }

    var published: GridState? { state.withLock { $0.grids } }

    var task: Task<Void, Never>? {
        get { state.withLock { $0.task } }
        set { state.withLock { $0.task = newValue } }
    }

    var idle: Duration { ContinuousClock.now - state.withLock { $0.lastAsked } }

    func touch() { state.withLock { $0.lastAsked = .now } }

    func publish(_ grids: GridState, _ onPublish: @Sendable (AppID) -> Void) {
        state.withLock { $0.grids = grids }
        onPublish(app)
    }

    func stop() { task?.cancel() }
}
