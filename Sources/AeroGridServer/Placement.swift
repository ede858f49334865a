public import AeroGridCluster
import AeroGridCore
public import AeroGridKafka
public import AeroGridStore
public import Logging
import Synchronization

/// Which apps this node of a cluster runs (docs/cluster.md "Placement"): every node is a
/// member of one consumer group on the placement topic, whose partitions are the slots, and
/// runs the apps whose slot the group gave it. Kafka's group coordinator decides who holds
/// what (cooperative-sticky: a rebalance moves only the slots it must) and notices a node
/// that stops answering; nothing here votes or elects.
public final class Placement: Sendable {
    public enum Change: Sendable, Equatable {
        /// Slots gained: their apps start here.
        case gained([Int32])
        /// Slots the group asks back: their apps stop and write their release first; only
        /// then does the group hand them on.
        case revoked([Int32])
        /// Slots already given to others (this node missed its session timeout), or a wake
        /// after a pause longer than that: their apps stop at once, writing nothing more.
        case lost([Int32])
    }

    public let slots: Int32
    private let topic: String
    private let sessionTimeout: Duration
    /// The group's member; nil on a sole node (`ClusterSettings.soleNode`), which holds
    /// every slot.
    private let consumer: KafkaConsumer?
    private let held = Mutex<Set<Int32>>([])
    /// After a pause: no app starts here until then (see `follow`).
    private let suspendedUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let logger: Logger

    public init(settings: ClusterSettings, kafka: KafkaConfiguration, logger: Logger) throws {
        slots = settings.slots
        topic = settings.topics.placement
        sessionTimeout = settings.sessionTimeout
        self.logger = logger
        var group = kafka
        group.properties.merge(
            [
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": "\(settings.sessionTimeout.wholeMilliseconds)",
                "heartbeat.interval.ms": "\(settings.heartbeatInterval.wholeMilliseconds)",
                // The member's id in the group's logs and tools.
                "client.id": "aerogrid-\(settings.nodeID)",
            ]
        ) { _, ours in ours }
        var configuration = KafkaConsumerConfiguration(kafka: group, groupID: topic)
        configuration.holdRevoked = true
        consumer = settings.soleNode ? nil : try KafkaConsumer(configuration: configuration, logger: logger)
    }

    /// The app's slot: its immutable id, hashed as Kafka's partitioner does.
    public func slot(of app: AppRecord) -> Int32 { AppSlot.of(appID: app.id, slots: slots) }

    public func holds(_ app: AppRecord) -> Bool {
        let slot = slot(of: app)
        guard suspendedUntil.withLock({ $0 }) == nil else { return false }
        return held.withLock { $0.contains(slot) }
    }

    public var heldSlots: Set<Int32> { held.withLock { $0 } }

    /// Checks the placement topic has one partition per slot, then joins the group: a node
    /// whose `slots` differs from the topic's would place apps where no other node looks.
    public func join() async throws {
        guard let consumer else {
            held.withLock { $0 = Set(0..<slots) }
            return
        }
        let metadata = try await consumer.metadata()
        guard let found = metadata.topics.first(where: { $0.name == topic && $0.error == nil }) else {
            throw AeroGridError(
                .invalidConfiguration, "the placement topic \(topic) does not exist: create it (and the changelog) with \(slots) partitions (docs/cluster.md)")
        }
        guard found.partitions.count == Int(slots) else {
            throw AeroGridError(
                .invalidConfiguration, "the placement topic \(topic) has \(found.partitions.count) partitions; [cluster] slots is \(slots): they must be equal")
        }
        try await consumer.subscribe(topics: [topic])
    }

    /// Follows the group until cancelled, telling `onChange` of each change in order; a
    /// revocation is handed on only once `onChange` has returned.
    public func follow(_ onChange: @Sendable (Change) async -> Void) async {
        guard let consumer else {
            await onChange(.gained(heldSlots.sorted()))
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(60)) }
            return
        }
        var lastPoll = ContinuousClock.now
        while !Task.isCancelled {
            // A gap longer than the session timeout between two polls, not spent in this
            // loop's own work, is a pause of the whole process (SIGSTOP, a frozen VM), which
            // stopped librdkafka's heartbeats too: the group has likely given the slots away.
            // The apps stop writing before anything else happens, and none starts again
            // until a session timeout has passed: long enough for librdkafka to hear whether
            // the slots are still this node's (then they are started again) or lost.
            let gap = ContinuousClock.now - lastPoll
            if gap > sessionTimeout {
                let slots = heldSlots.sorted()
                suspendedUntil.withLock { $0 = .now + sessionTimeout }
                logger.warning("this node was paused for \(gap), past the session timeout: stopping its \(slots.count) slots' apps")
                if !slots.isEmpty { await onChange(.lost(slots)) }
            }
            if let until = suspendedUntil.withLock({ $0 }), ContinuousClock.now >= until {
                suspendedUntil.withLock { $0 = nil }
                let kept = heldSlots.sorted()
                if !kept.isEmpty {
                    logger.info("placement: \(kept.count) slots are still this node's after the pause; starting their apps")
                    await onChange(.gained(kept))
                }
            }
            let events: [KafkaConsumerEvent]
            do {
                events = try await consumer.poll(maxMessages: 1, timeout: .milliseconds(200)).events
            } catch {
                if !Task.isCancelled { logger.error("the placement group: \(error)") }
                try? await Task.sleep(for: .seconds(1))
                lastPoll = .now
                continue
            }
            for event in events {
                switch event {
                case .assigned(let partitions):
                    let gained = partitions.map(\.partition).sorted()
                    held.withLock { $0.formUnion(gained) }
                    logger.info("placement: this node holds \(gained.count) more slots (\(heldSlots.count) in all)")
                    await onChange(.gained(gained))
                case .revoked(let partitions):
                    let slots = partitions.map(\.partition).sorted()
                    logger.info("placement: \(slots.count) slots asked back; releasing their apps")
                    held.withLock { $0.subtract(slots) }
                    await onChange(.revoked(slots))
                    do {
                        try await consumer.finishRevocation(partitions)
                    } catch {
                        logger.error("placement: cannot hand back the revoked slots: \(error)")
                    }
                case .lost(let partitions):
                    let slots = partitions.map(\.partition).sorted()
                    logger.warning("placement: \(slots.count) slots were lost to other nodes (this node missed its session timeout)")
                    held.withLock { $0.subtract(slots) }
                    await onChange(.lost(slots))
                case .error(let error):
                    logger.warning("placement group: \(error)")
                case .partitionEnd:
                    break
                }
            }
            // After the changes are handled: however long stopping or starting apps took,
            // it is not a pause (librdkafka's own thread kept the heartbeats going).
            lastPoll = .now
        }
    }

    /// Leaves the group at once (no session timeout to wait out for the others): call after
    /// this node's apps have stopped and released.
    public func leave() async {
        held.withLock { $0.removeAll() }
        await consumer?.close()
    }
}

extension Duration {
    /// The duration in whole milliseconds, as Kafka's settings take them.
    var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
