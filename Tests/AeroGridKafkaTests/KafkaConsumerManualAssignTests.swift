import AeroGridCore
import AeroGridKafka
import Foundation
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct KafkaConsumerManualAssignTests {
    @Test func consumesEveryRecordKcatProducedWithKeyValuePartitionAndOffset() async throws {
        try await withCluster(topics: ["orders": 8]) { kafka in
            let records = (0..<10_000).map { index in (key: "order-\(index)", value: "{\"n\":\(index),\"product\":\"p\(index % 37)\"}") }
            let input = records.map { "\($0.key)|\($0.value)" }.joined(separator: "\n") + "\n"
            try runProgram(["kcat", "-P", "-b", kafka.bootstrapServers, "-t", "orders", "-K", "|"], input: Data(input.utf8))

            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            try await consumer.assign(Dictionary(uniqueKeysWithValues: (0..<8).map { (TopicPartition("orders", $0), .beginning) }))
            let (messages, _) = try await pollUntil(consumer) { messages, _ in messages.count >= records.count }
            await consumer.close()

            #expect(messages.count == records.count)
            // Each partition holds its records in the order kcat wrote them, from offset 0.
            var expectedByPartition: [Int32: [(key: String, value: String)]] = [:]
            for record in records {
                expectedByPartition[Int32(crc32(record.key.utf8) % 8), default: []].append(record)
            }
            let received = Dictionary(grouping: messages, by: \.partition)
            #expect(Set(received.keys) == Set(0..<8), "all 8 partitions received records")
            for (partition, expected) in expectedByPartition {
                let got = received[partition] ?? []
                #expect(got.map(\.offset) == Array(0..<Int64(expected.count)), "offsets of partition \(partition)")
                #expect(got.map(\.keyString) == expected.map(\.key), "keys of partition \(partition)")
                #expect(got.map(\.valueString) == expected.map(\.value), "values of partition \(partition)")
                #expect(got.allSatisfy { $0.topic == "orders" && $0.timestamp != nil })
            }
        }
    }

    @Test func assignResumesExactlyAfterTheGivenOffsets() async throws {
        try await withCluster(topics: ["resume": 4]) { kafka in
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            for partition in Int32(0)..<4 {
                for index in 0..<100 {
                    try await producer.enqueue(topic: "resume", partition: partition, key: Array("k\(index)".utf8), value: Array("\(partition):\(index)".utf8))
                }
            }
            try await producer.flush()

            let starts: [TopicPartition: KafkaStartOffset] = [
                TopicPartition("resume", 0): .offset(10), TopicPartition("resume", 1): .offset(0),
                TopicPartition("resume", 2): .offset(99), TopicPartition("resume", 3): .offset(100),
            ]
            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            try await consumer.assign(starts)
            let (messages, _) = try await pollUntil(consumer, timeout: .seconds(2)) { messages, _ in messages.count > 191 }
            let byPartition = Dictionary(grouping: messages, by: \.partition).mapValues { $0.map(\.offset) }
            #expect(byPartition[0] == Array(10..<100))
            #expect(byPartition[1] == Array(0..<100))
            #expect(byPartition[2] == [99])
            #expect(byPartition[3] == nil)
            #expect(messages.allSatisfy { $0.valueString == "\($0.partition):\($0.offset)" })
            #expect(try await consumer.lag() == Dictionary(uniqueKeysWithValues: (0..<4).map { (TopicPartition("resume", $0), 0) }))
            await consumer.close()
        }
    }

    @Test func offsetsCommittedWithoutJoiningAGroupAreReadBack() async throws {
        try await withCluster(topics: ["commits": 3]) { kafka in
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            for index in 0..<60 {
                try await producer.enqueue(topic: "commits", partition: Int32(index % 3), key: nil, value: Array("\(index)".utf8))
            }
            try await producer.flush()
            let partitions = (0..<3).map { TopicPartition("commits", $0) }

            let first = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers, group: "lag-view"), logger: testLogger)
            try await first.assign([partitions[0]: .beginning, partitions[1]: .beginning])
            try await first.commit([partitions[0]: 12, partitions[1]: 7])
            await first.close()

            let second = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers, group: "lag-view"), logger: testLogger)
            let committed = try await second.committed(partitions)
            #expect(committed[partitions[0]] == 12)
            #expect(committed[partitions[1]] == 7)
            #expect(committed[partitions[2]] == .some(nil))
            // Starting from the committed offsets continues exactly there.
            try await second.assign([partitions[0]: .committed, partitions[1]: .committed])
            let (messages, _) = try await pollUntil(second, timeout: .seconds(5)) { messages, _ in messages.count >= 8 + 13 }
            #expect(Dictionary(grouping: messages, by: \.partition).mapValues { $0.map(\.offset) } == [0: Array(12..<20), 1: Array(7..<20)])
            await second.close()
        }
    }

    @Test func headersKeysAndNullsRoundTripThroughProducerAndConsumer() async throws {
        try await withCluster(topics: ["headers": 1]) { kafka in
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            let first = try await producer.send(
                topic: "headers", key: nil, value: Array("v".utf8),
                headers: [KafkaHeader("trace", Array("abc".utf8)), KafkaHeader("empty", nil)])
            let second = try await producer.send(topic: "headers", key: Array("k".utf8), value: nil)
            #expect(first == KafkaDeliveryReport(topic: "headers", partition: 0, offset: 0))
            #expect(second.offset == 1)

            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            try await consumer.assign([TopicPartition("headers", 0): .beginning])
            let (messages, _) = try await pollUntil(consumer, timeout: .seconds(5)) { messages, _ in messages.count >= 2 }
            #expect(messages.count == 2)
            #expect(messages.first?.key == nil)
            #expect(messages.first?.headers == [KafkaHeader("trace", Array("abc".utf8)), KafkaHeader("empty", nil)])
            #expect(messages.last?.keyString == "k")
            #expect(messages.last?.value == nil)
            await consumer.close()
        }
    }

    @Test func topicListingComesFromOneAllTopicsRequestAndCreatesNothing() async throws {
        try await withCluster(topics: ["a": 2, "b": 5]) { kafka in
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            #expect(try await admin.listTopics() == ["a", "b"])
            await #expect(throws: KafkaError.self) { try await admin.describePartitions(topic: "missing") }
            // Describing a missing topic must not have created it (the mock creates any topic a
            // metadata request names).
            #expect(try await admin.listTopics() == ["a", "b"])
            let partitions = try await admin.describePartitions(topic: "b")
            #expect(partitions.map(\.id) == [0, 1, 2, 3, 4])
            #expect(partitions.allSatisfy { $0.leader == 1 && $0.watermarks == KafkaWatermarks(low: 0, high: 0) })
        }
    }

    @Test func aPausedPartitionDeliversNothingUntilResumed() async throws {
        try await withCluster(topics: ["paused": 2]) { kafka in
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            let (p0, p1) = (TopicPartition("paused", 0), TopicPartition("paused", 1))
            try await consumer.assign([p0: .beginning, p1: .beginning])
            try await consumer.pause([p1])
            for index in 0..<20 {
                try await producer.enqueue(topic: "paused", partition: Int32(index % 2), key: nil, value: Array("\(index)".utf8))
            }
            try await producer.flush()
            let (whilePaused, _) = try await pollUntil(consumer, timeout: .seconds(2)) { _, _ in false }
            #expect(whilePaused.map(\.partition).allSatisfy { $0 == 0 } && whilePaused.count == 10)
            try await consumer.resume([p1])
            let (afterResume, _) = try await pollUntil(consumer, timeout: .seconds(5)) { messages, _ in messages.count >= 10 }
            #expect(afterResume.map(\.partition) == Array(repeating: 1, count: 10))
            #expect(afterResume.map(\.offset) == Array(0..<10))
            await consumer.close()
        }
    }
}
