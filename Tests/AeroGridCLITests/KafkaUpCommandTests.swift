import Foundation
import Testing

/// Drives the built `aerogrid` binary as a user would, with kcat as the Kafka client.
@Suite(.timeLimit(.minutes(1)))
struct KafkaUpCommandTests {
    @Test func kafkaUpServesTopicsThatKcatCanList() throws {
        let process = Process()
        process.executableURL = aerogridBinary()
        process.arguments = ["kafka", "up", "--topic", "orders:8", "--topic", "fx:2"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        let firstLine = try readLine(from: output.fileHandleForReading)
        #expect(firstLine.hasPrefix("bootstrap.servers=127.0.0.1:"))
        let bootstrap = String(firstLine.dropFirst("bootstrap.servers=".count))

        let listing = try run(["kcat", "-b", bootstrap, "-L", "-m", "5"])
        #expect(listing.contains("1 brokers:"))
        #expect(listing.contains("broker 1 at \(bootstrap)"))
        #expect(listing.contains("topic \"orders\" with 8 partitions:"))
        #expect(listing.contains("topic \"fx\" with 2 partitions:"))
        #expect((0..<8).allSatisfy { listing.contains("partition \($0), leader 1") })

        // Ctrl-C (or SIGTERM) stops it cleanly.
        process.interrupt()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }

    @Test func aMalformedTopicIsRefusedWithUsage() throws {
        let process = Process()
        process.executableURL = aerogridBinary()
        process.arguments = ["kafka", "up", "--topic", "orders"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(message.contains("--topic"))
    }
}

/// The `aerogrid` executable built next to this test bundle.
func aerogridBinary() -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("aerogrid").path) && directory.path != "/" {
        directory.deleteLastPathComponent()
    }
    return directory.appendingPathComponent("aerogrid")
}

func readLine(from handle: FileHandle) throws -> String {
    var bytes: [UInt8] = []
    while let byte = try handle.read(upToCount: 1)?.first, byte != UInt8(ascii: "\n") {
        bytes.append(byte)
    }
    return String(decoding: bytes, as: UTF8.self)
}

func run(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
