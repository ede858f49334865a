/// Settings for a Kafka client. Any librdkafka property passes through unchanged
/// (`security.protocol=SASL_SSL`, `sasl.mechanisms`, `ssl.ca.location` …), so a hosted
/// Kafka works by configuration alone; see librdkafka's CONFIGURATION.md for the names.
public struct KafkaConfiguration: Sendable, Equatable {
    /// `host:port[,host:port…]`.
    public var bootstrapServers: String
    /// librdkafka properties; they win over the defaults below.
    public var properties: [String: String]

    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// Defaults for low latency from Kafka to a grid cell. A fetch waits at most a few
    /// milliseconds for data (the broker default is 500 ms, and librdkafka's mock cluster
    /// sleeps the whole wait when a partition is empty), and small batches go out at once.
    static let lowLatencyDefaults: [String: String] = [
        "socket.nagle.disable": "true",
        "topic.metadata.refresh.interval.ms": "30000",
    ]

    static let consumerDefaults: [String: String] = [
        "fetch.wait.max.ms": "5",
        // Offsets are stored only for records the caller has processed (`store`), and
        // committed when the caller says so (or on a revocation), never behind its back.
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        // Prefetch is bounded by bytes, per partition (librdkafka 2.0.2 applies this to each
        // partition's queue): memory stays within partitions × 8 MiB. Not by count: 2.0.2
        // pauses fetching at a threshold and resumes up to a second late, which stalled a
        // consumer feeding an app at 300k records/s for most of each second; a lower byte
        // bound hits the same stall (2 MiB: 140k records/s, 8 MiB: 800k).
        "queued.max.messages.kbytes": "8192",
        "queued.min.messages": "10000000",
        "fetch.max.bytes": "8388608",
    ]

    static let producerDefaults: [String: String] = [
        "linger.ms": "2",
        "message.timeout.ms": "30000",
    ]

    /// The complete property list for one client: defaults, then the caller's properties.
    func resolved(_ roleDefaults: [String: String], extra: [String: String] = [:]) -> [(String, String)] {
        var merged = Self.lowLatencyDefaults.merging(roleDefaults) { $1 }
        merged["bootstrap.servers"] = bootstrapServers
        merged.merge(extra) { $1 }
        merged.merge(properties) { $1 }
        return merged.sorted { $0.key < $1.key }
    }
}

/// Settings for a `KafkaConsumer`.
public struct KafkaConsumerConfiguration: Sendable, Equatable {
    public var kafka: KafkaConfiguration
    /// The consumer group. A manually assigned consumer commits under its group id without
    /// joining the group. librdkafka needs one even to assign, so without one a private id
    /// is made up (`aerogrid-private-…`): assignment works, commits are kept under it.
    public var groupID: String?
    /// Report reaching the end of a partition as an event (for tests and catch-up checks).
    public var reportPartitionEnd: Bool
    /// In a group: a revocation is reported and the partitions are kept until
    /// `finishRevocation`, so the member can first finish with what they hold.
    public var holdRevoked = false

    public init(kafka: KafkaConfiguration, groupID: String? = nil, reportPartitionEnd: Bool = false) {
        self.kafka = kafka
        self.groupID = groupID
        self.reportPartitionEnd = reportPartitionEnd
    }

    func resolvedProperties() -> [(String, String)] {
        var extra = ["enable.partition.eof": reportPartitionEnd ? "true" : "false"]
        extra["group.id"] = groupID ?? "aerogrid-private-\(UInt64.random(in: 0...UInt64.max))"
        return kafka.resolved(KafkaConfiguration.consumerDefaults, extra: extra)
    }
}
