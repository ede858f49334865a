import AeroGridCluster
import AeroGridKafka
import ArgumentParser
import Foundation
import Logging

struct KafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "The embedded Kafka cluster, for development and tests.",
        subcommands: [Up.self]
    )

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run an embedded Kafka cluster in the foreground until Ctrl-C.",
            discussion: """
                The cluster lives in memory (librdkafka's mock cluster) and listens on new \
                loopback ports each run; the bootstrap servers are printed on the first line. \
                Any librdkafka-based client works against it: kcat -b <bootstrap> -L
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Number of brokers.")
        var brokers = 1

        @Option(name: .customLong("topic"), help: "A topic to create, as NAME:PARTITIONS (repeatable).")
        var topics: [TopicSpec] = []

        @Option(
            name: .customLong("cluster"),
            help:
                "A cluster of AeroGrid nodes that will use this Kafka: its internal topics are created (_aerogrid.NAME.config, .bundles, .audit with one partition each; .placement and .changelog with --slots). Repeatable."
        )
        var clusters: [String] = []

        @Option(help: "The slots of each --cluster: its placement and changelog topics' partitions ([cluster] slots).")
        var slots: Int32 = ClusterTopics.defaultSlots

        func validate() throws {
            guard (1...10_000).contains(slots) else { throw ValidationError("--slots must be 1 to 10000") }
            for name in clusters {
                if let problem = ClusterSettings.nameProblem(name) { throw ValidationError("--cluster \(name): \(problem)") }
            }
        }

        func run() async throws {
            let logger = global.makeLogger(label: "aerogrid.kafka")
            let kafka = try EmbeddedKafka(brokers: brokers, logger: logger)
            // The mock cluster has no CreateTopics: what hosts it creates a cluster's topics.
            let created =
                topics.map { ($0.name, $0.partitions) }
                + clusters.flatMap { ClusterTopics(cluster: $0, slots: slots).required.map { ($0.topic, $0.partitions) } }
            for (name, partitions) in created {
                try kafka.createTopic(name, partitions: partitions)
            }
            printLine("bootstrap.servers=\(kafka.bootstrapServers)")
            for (name, partitions) in created {
                printLine("topic=\(name) partitions=\(partitions)")
            }
            let signal = await waitForTermination()
            logger.info("stopping the embedded Kafka cluster (signal \(signal))")
            withExtendedLifetime(kafka) {}
        }
    }
}

/// `NAME:PARTITIONS`, as `--topic orders:8`.
struct TopicSpec: ExpressibleByArgument {
    let name: String
    let partitions: Int

    init?(argument: String) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let partitions = Int(parts[1]), partitions > 0 else { return nil }
        name = String(parts[0])
        self.partitions = partitions
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Waits until SIGINT or SIGTERM arrives and returns which one.
func waitForTermination() async -> Int32 {
    await withCheckedContinuation { continuation in
        let sources = [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            return DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
        }
        let resumed = ResumeOnce(continuation)
        for (source, signalNumber) in zip(sources, [SIGINT, SIGTERM]) {
            source.setEventHandler {
                sources.forEach { $0.cancel() }
                resumed.resume(signalNumber)
            }
            source.resume()
        }
    }
}

/// Resumes a continuation the first time only, whichever signal comes first.
private final class ResumeOnce: @unchecked Sendable {
    // @unchecked: `continuation` is read and cleared only on the main queue.
    private var continuation: CheckedContinuation<Int32, Never>?

    init(_ continuation: CheckedContinuation<Int32, Never>) {
        self.continuation = continuation
    }

    func resume(_ value: Int32) {
        continuation?.resume(returning: value)
        continuation = nil
    }
}
