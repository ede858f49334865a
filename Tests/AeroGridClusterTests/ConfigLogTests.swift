import AeroGridCluster
import AeroGridCore
import AeroGridKafka
import Foundation
import Logging
import Testing

let clusterLogger: Logger = {
    var logger = Logger(label: "aerogrid.cluster-tests")
    logger.logLevel = .critical
    return logger
}()

@Suite struct ConfigLogTests {
    /// Reads until the reader has `count` records or 10 s have passed.
    func read(_ reader: ConfigLogReader, count: Int) async throws -> [KafkaRecord] {
        var records: [KafkaRecord] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while records.count < count && ContinuousClock.now < deadline { records += try await reader.next() }
        return records
    }

    @Test func appendsAreReadBackInOrderFromAnyOffset() async throws {
        let kafka = try EmbeddedKafka(logger: clusterLogger)
        let topics = ClusterTopics(cluster: "test")
        try kafka.createTopic(topics.config, partitions: 1)
        let log = try ConfigLog(kafka: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), topic: topics.config, logger: clusterLogger)
        try await log.check()
        var offsets: [Int64] = []
        for index in 0..<5 { offsets.append(try await log.append(key: Array("k\(index)".utf8), value: Array("v\(index)".utf8))) }
        #expect(offsets == [0, 1, 2, 3, 4])

        let fromStart = try await log.reader(from: 0)
        let all = try await read(fromStart, count: 5)
        #expect(all.map { String(decoding: $0.value ?? [], as: UTF8.self) } == ["v0", "v1", "v2", "v3", "v4"])
        #expect(fromStart.position == 5)
        #expect(try await fromStart.end() == 5)
        await fromStart.close()

        // A reader resuming from a stored position gets only what came after it.
        let resumed = try await log.reader(from: 3)
        #expect(try await read(resumed, count: 2).map(\.offset) == [3, 4])
        try await log.append(key: Array("k5".utf8), value: Array("v5".utf8))
        #expect(try await read(resumed, count: 1).map(\.offset) == [5])
        await resumed.close()
        await log.close()
    }

    @Test func aMissingTopicOrOneWithTwoPartitionsIsRefused() async throws {
        let kafka = try EmbeddedKafka(logger: clusterLogger)
        let configuration = KafkaConfiguration(bootstrapServers: kafka.bootstrapServers)
        let missing = try ConfigLog(kafka: configuration, topic: ClusterTopics(cluster: "absent").config, logger: clusterLogger)
        await #expect { try await missing.check() } throws: { "\($0)".contains("_aerogrid.absent.config does not exist") }
        await missing.close()

        let split = ClusterTopics(cluster: "split").config
        try kafka.createTopic(split, partitions: 2)
        let twoPartitions = try ConfigLog(kafka: configuration, topic: split, logger: clusterLogger)
        await #expect { try await twoPartitions.check() } throws: { "\($0)".contains("has 2 partitions; it must have exactly 1") }
        await twoPartitions.close()
    }

    @Test func clusterTopicsAreInternal() {
        let topics = ClusterTopics(cluster: "prod")
        #expect(
            topics.required.map(\.topic) == [
                "_aerogrid.prod.config", "_aerogrid.prod.bundles", "_aerogrid.prod.audit", "_aerogrid.prod.status", "_aerogrid.prod.placement",
                "_aerogrid.prod.changelog",
            ])
        #expect(topics.required.allSatisfy { InternalTopics.isInternal($0.topic) })
        // The logs have one partition (one order); placement and changelog one per slot.
        #expect(topics.required.map(\.partitions) == [1, 1, 1, 1, 64, 64])
        #expect(ClusterTopics(cluster: "prod", slots: 8).required.suffix(2).map(\.partitions) == [8, 8])
    }

    @Test func settingsAreChecked() {
        #expect(ClusterSettings.nameProblem("prod-eu1") == nil)
        for bad in ["", "Prod", "prod.eu", "prod_eu", String(repeating: "a", count: 65)] { #expect(ClusterSettings.nameProblem(bad) != nil) }
        #expect(ClusterSettings.nodeIDProblem("node-1.example") == nil)
        for bad in ["", "node 1", "nøde", String(repeating: "n", count: 65)] { #expect(ClusterSettings.nodeIDProblem(bad) != nil) }
        for good in ["http://10.0.0.5:8080", "https://node-1.example:8443", "http://[::1]:8080"] { #expect(ClusterSettings.advertisedURLProblem(good) == nil) }
        for bad in ["10.0.0.5:8080", "http://node-1", "http://node-1:0", "http://node-1:8080/path", "ftp://node:21", "http://:8080"] {
            #expect(ClusterSettings.advertisedURLProblem(bad) != nil, "\(bad)")
        }
    }
}
