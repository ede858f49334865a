import AeroGridKafka
import Foundation
import Testing

/// Failures must come back as a `KafkaError` a person can read, within a bounded time.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct KafkaErrorSurfacingTests {
    @Test func anUnreachableBootstrapAddressFailsWithinTheTimeout() async throws {
        // Port 1 on loopback: nothing listens there, connections are refused at once.
        let configuration = KafkaConfiguration(bootstrapServers: "127.0.0.1:1")
        let admin = try KafkaAdmin(configuration: configuration, logger: testLogger)
        let started = ContinuousClock.now
        await #expect {
            try await admin.metadata(timeout: .seconds(2))
        } throws: { error in
            guard let error = error as? KafkaError else { return false }
            return [.transport, .timedOut, .allBrokersDown].contains(error.code) && error.message.contains("metadata")
        }
        #expect(ContinuousClock.now - started < .seconds(4))

        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: configuration), logger: testLogger)
        let assigning = ContinuousClock.now
        await #expect(throws: KafkaError.self) {
            try await consumer.assign([TopicPartition("orders", 0): .beginning], timeout: .seconds(2))
        }
        #expect(ContinuousClock.now - assigning < .seconds(4))
        // Watermarks of partitions never fetched: by default one second for all of them (a
        // status page waits on this, and it holds the consumer's thread), not librdkafka's
        // five-second query timeout.
        let asking = ContinuousClock.now
        await #expect(throws: KafkaError.self) {
            try await consumer.knownWatermarks((0..<8).map { TopicPartition("orders", $0) })
        }
        #expect(ContinuousClock.now - asking < .seconds(3))
        // Polling meanwhile reports the brokers as down, as events.
        let (_, events) = try await pollUntil(consumer, timeout: .seconds(10)) { _, events in !events.isEmpty }
        let errors = events.compactMap { if case .error(let error) = $0 { error } else { nil } }
        #expect(errors.contains { $0.code == .transport || $0.code == .allBrokersDown }, "the consumer reports the brokers as down: \(errors)")
        await consumer.close()
    }

    @Test func aTopicTheClusterFailsIsReportedWithItsCode() async throws {
        try await withCluster(topics: ["healthy": 2, "forbidden": 2]) { kafka in
            kafka.setTopicError("forbidden", .topicAuthorizationFailed)
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            await #expect {
                try await admin.describePartitions(topic: "forbidden")
            } throws: { error in
                (error as? KafkaError)?.code == .topicAuthorizationFailed && (error as? KafkaError)?.topic == "forbidden"
            }
            #expect(try await admin.listTopics() == ["healthy"])

            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            await #expect {
                try await consumer.assign([TopicPartition("forbidden", 0): .beginning, TopicPartition("healthy", 0): .beginning])
            } throws: { error in
                (error as? KafkaError)?.code == .topicAuthorizationFailed && "\(error)".contains("forbidden")
            }
            await #expect {
                try await consumer.assign([TopicPartition("healthy", 7): .beginning])
            } throws: { error in
                (error as? KafkaError)?.message == "topic 'healthy' has 2 partitions, there is no partition 7"
            }
            try await consumer.assign([TopicPartition("healthy", 0): .beginning])
            await consumer.close()
        }
    }

    @Test func aBrokerTakenDownFailsDeliveriesAndIsReportedToConsumers() async throws {
        try await withCluster(topics: ["t": 1]) { kafka in
            let producer = try KafkaProducer(
                configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers, properties: ["message.timeout.ms": "2000"]),
                logger: testLogger)
            _ = try await producer.send(topic: "t", key: nil, value: Array("before".utf8))
            let consumer = try KafkaConsumer(configuration: consumerConfiguration(kafka.bootstrapServers), logger: testLogger)
            try await consumer.assign([TopicPartition("t", 0): .beginning])
            let (before, _) = try await pollUntil(consumer, timeout: .seconds(5)) { messages, _ in !messages.isEmpty }
            #expect(before.count == 1)

            kafka.setBrokerDown()
            let started = ContinuousClock.now
            await #expect {
                try await producer.send(topic: "t", key: nil, value: Array("after".utf8))
            } throws: { error in
                (error as? KafkaError)?.code == .messageTimedOut
            }
            #expect(ContinuousClock.now - started < .seconds(15), "message.timeout.ms bounds the wait")
            let (_, events) = try await pollUntil(consumer, timeout: .seconds(10)) { _, events in !events.isEmpty }
            let errors = events.compactMap { if case .error(let error) = $0 { error } else { nil } }
            #expect(errors.contains { $0.code == .transport || $0.code == .allBrokersDown }, "\(errors)")
            await consumer.close()
        }
    }

    @Test func anInvalidSettingIsRefusedNamingIt() {
        #expect {
            try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: "x:1", properties: ["linger.ms": "soon"]), logger: testLogger)
        } throws: { error in
            // Named, and its value left out: a value may be a password.
            let message = (error as? KafkaError)?.message ?? ""
            return message.contains("'linger.ms'") && !message.contains("soon")
        }
    }

    @Test func createTopicsAgainstTheEmbeddedClusterFailsClearlyInsteadOfHanging() async throws {
        try await withCluster { kafka in
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: testLogger)
            let started = ContinuousClock.now
            await #expect(throws: KafkaError.self) {
                try await admin.createTopics([KafkaNewTopic(name: "new", partitions: 3)], timeout: .seconds(3))
            }
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }
}
