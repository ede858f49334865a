import AeroGridCore
import AeroGridKafka
import Foundation
import Logging
import Synchronization

/// A logger for tests: quiet unless AEROGRID_TEST_LOG names a level (debug, warning…).
let testLogger: Logger = {
    var logger = Logger(label: "aerogrid.test")
    logger.logLevel = ProcessInfo.processInfo.environment["AEROGRID_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}()

/// Runs `body` with an embedded cluster that has these topics, kept alive until it returns
/// (Swift may otherwise release a local right after its last use).
func withCluster<T>(
    topics: [String: Int] = [:], brokers: Int = 1, _ body: (EmbeddedKafka) async throws -> T
) async throws -> T {
    let kafka = try EmbeddedKafka(brokers: brokers, logger: testLogger)
    for (name, partitions) in topics { try kafka.createTopic(name, partitions: partitions) }
    defer { withExtendedLifetime(kafka) {} }
    return try await body(kafka)
}

func consumerConfiguration(_ bootstrap: String, group: String? = nil, properties: [String: String] = [:]) -> KafkaConsumerConfiguration {
    KafkaConsumerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap, properties: properties), groupID: group)
}

/// Polls until `done` says so or the deadline passes; returns everything polled.
func pollUntil(
    _ consumer: KafkaConsumer, timeout: Duration = .seconds(30),
    _ done: ([KafkaRecord], [KafkaConsumerEvent]) -> Bool
) async throws -> (messages: [KafkaRecord], events: [KafkaConsumerEvent]) {
    var messages: [KafkaRecord] = []
    var events: [KafkaConsumerEvent] = []
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline && !done(messages, events) {
        let batch = try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(100))
        messages += batch.messages
        events += batch.events
    }
    return (messages, events)
}

/// Waits for a condition checked every 50 ms; false when the deadline passed first.
func eventually(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// Runs a program to completion with `input` on its standard input; throws on a non-zero exit.
@discardableResult
func runProgram(_ arguments: [String], input: Data = Data()) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let writer = Thread {
        stdin.fileHandleForWriting.write(input)
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestFailure("\(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: output, as: UTF8.self)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// CRC-32 (IEEE), as librdkafka's default `consistent_random` partitioner hashes keys:
/// computed here independently to check where kcat's records landed.
func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

extension KafkaRecord {
    var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    var valueString: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// Thread-safe shared state for tests with concurrent consumers.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func with<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
