import AeroGridKafka
import Foundation
import Testing

/// Group mode against the embedded cluster. Its joins are slow by design (about 3 s for
/// the first, `session.timeout.ms` − 1 s for each later join or leave), so these tests set
/// a 6 s session timeout and allow tens of seconds.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct KafkaConsumerGroupTests {
    /// Everything the consumers saw, for checking after the run.
    struct Log: Sendable {
        var delivered: [TopicPartition: [Int64]] = [:]
        var holders: [String: Set<TopicPartition>] = [:]
        /// Each time a member was given a partition: the committed offset then, and the
        /// offsets it received until the partition moved on.
        var holdings: [(member: String, partition: TopicPartition, committed: Int64?, offsets: [Int64])] = []

        /// Distinct records processed, whichever member did it and however often.
        var processedCount: Int { delivered.values.reduce(0) { $0 + Set($1).count } }
    }

    @Test func partitionsMoveBetweenMembersWithoutLossOrRedelivery() async throws {
        try await withCluster(topics: ["events": 4]) { kafka in
            let log = Shared(Log())
            let stop = Shared(false)
            let groupSettings = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]
            let config = consumerConfiguration(kafka.bootstrapServers, group: "movers", properties: groupSettings)
            let partitions = Set((0..<4).map { TopicPartition("events", $0) })

            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            let produced = Shared(0)
            let producing = Task {
                while !stop.value {
                    let n = produced.with {
                        $0 += 1
                        return $0
                    }
                    try await producer.enqueue(topic: "events", partition: Int32(n % 4), key: nil, value: Array("\(n)".utf8))
                    try await Task.sleep(for: .milliseconds(2))
                }
                try await producer.flush()
            }

            let a = try KafkaConsumer(configuration: config, logger: testLogger)
            try await a.subscribe(topics: ["events"])
            let consumingA = Task { try await Self.consume(a, name: "A", log: log, until: stop) }
            #expect(await eventually(timeout: .seconds(30)) { log.value.holders["A"] == partitions }, "A holds all partitions")

            let b = try KafkaConsumer(configuration: config, logger: testLogger)
            try await b.subscribe(topics: ["events"])
            let stopB = Shared(false)
            let consumingB = Task { try await Self.consume(b, name: "B", log: log, until: stopB) }
            #expect(await eventually(timeout: .seconds(40)) { !(log.value.holders["B"] ?? []).isEmpty }, "B receives partitions")
            #expect(await eventually(timeout: .seconds(10)) { log.value.delivered.values.reduce(0) { $0 + $1.count } > 0 })
            #expect(
                await eventually(timeout: .seconds(20)) {
                    let holders = log.value.holders
                    return (holders["A"] ?? []).union(holders["B"] ?? []) == partitions
                }, "A and B together hold every partition")

            stopB.with { $0 = true }
            try await consumingB.value
            await b.close()
            #expect(await eventually(timeout: .seconds(40)) { log.value.holders["A"] == partitions }, "A holds all partitions again")

            stop.with { $0 = true }
            try await producing.value
            // Drain A to the end of every partition, then stop it.
            let total = produced.value
            let drain = Shared(false)
            let draining = Task { try await Self.consume(a, name: "A", log: log, until: drain) }
            #expect(await eventually(timeout: .seconds(20)) { log.value.processedCount >= total })
            drain.with { $0 = true }
            try await draining.value
            try await consumingA.value
            await a.close()

            let final = log.value
            for tp in partitions.sorted() {
                // No record was lost: together the members processed every offset up to the end.
                let processed = Set(final.delivered[tp] ?? [])
                #expect(processed == Set(0..<Int64(processed.count)), "\(tp): processed offsets are contiguous from 0")
            }
            #expect(final.processedCount == total)
            // Each holder received its partition in order, without gaps, starting exactly at
            // the committed offset (or at the start when nothing was committed yet): nothing
            // at or below a committed position came again. Records processed while the
            // embedded cluster refused commits (it answers REBALANCE_IN_PROGRESS for the
            // whole rebalance) are above every committed offset and may come twice.
            #expect(final.holdings.count >= 9, "A, then A and B, then A again held partitions")
            for holding in final.holdings where !holding.offsets.isEmpty {
                let start = holding.committed ?? 0
                #expect(
                    holding.offsets == Array(start..<start + Int64(holding.offsets.count)),
                    "\(holding.member) on \(holding.partition) starts at \(start) and continues in order")
            }
        }
    }

    /// Polls until told to stop: records what arrives, stores and commits what it processed.
    static func consume(_ consumer: KafkaConsumer, name: String, log: Shared<Log>, until stop: Shared<Bool>) async throws {
        while !stop.value {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(100))
            for event in batch.events {
                switch event {
                case .assigned(let partitions):
                    let committed = try await consumer.committed(partitions)
                    log.with { log in
                        log.holders[name, default: []].formUnion(partitions)
                        for tp in partitions {
                            log.holdings.append((name, tp, committed[tp] ?? nil, []))
                        }
                    }
                case .revoked(let partitions):
                    log.with { $0.holders[name, default: []].subtract(partitions) }
                case .error(let error) where error.isFatal:
                    throw error
                default:
                    break
                }
            }
            guard !batch.messages.isEmpty else { continue }
            var next: [TopicPartition: Int64] = [:]
            log.with { log in
                for message in batch.messages {
                    let tp = TopicPartition(message.topic, message.partition)
                    log.delivered[tp, default: []].append(message.offset)
                    next[tp] = message.offset + 1
                    if let index = log.holdings.lastIndex(where: { $0.member == name && $0.partition == tp }) {
                        log.holdings[index].offsets.append(message.offset)
                    }
                }
            }
            try await consumer.store(next)
            do {
                try await consumer.commit()
            } catch let error as KafkaError where error.isRetriable {
                // A rebalance is under way: the stored offsets are committed on revocation.
            }
        }
    }
}
