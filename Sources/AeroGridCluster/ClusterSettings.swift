public import AeroGridCore
public import AeroGridKafka
public import Logging

/// `[cluster]` in aerogrid.toml: this node is one of several that keep the control plane in
/// Kafka (docs/cluster.md). Without it a node keeps everything to itself, as a single node
/// always has.
public struct ClusterSettings: Sendable, Equatable {
    /// The cluster's name: its internal topics are `_aerogrid.<name>.…`. Lower-case letters,
    /// digits and `-`, 1 to 64 bytes.
    public var name: String
    /// This node's id, unique in the cluster: letters, digits, `.`, `_`, `-`, 1 to 64 bytes.
    public var nodeID: String
    /// Where the other nodes reach this one (`http://` or `https://`, host and port): they
    /// fetch bundles from it.
    public var advertisedURL: String
    /// The placement's slots: an app runs on the node that holds its slot (docs/cluster.md
    /// "Placement"). The placement and changelog topics have this many partitions.
    public var slots: Int32 = ClusterTopics.defaultSlots
    /// How long the group waits to hear from a node before its slots go to the others.
    public var sessionTimeout: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(2)
    /// What the changelog topic keeps of a partition (its `retention.bytes`; the embedded
    /// cluster keeps about 5 MB): an app snapshots its grids every half of it, and may not
    /// hold grids over a quarter of it.
    public var changelogRetentionBytes = 5_000_000
    /// A cluster that has this node only, ever (`aerogrid dev`): it holds every slot from
    /// the start, without the group's first join (about 3 s on the embedded Kafka). Not a
    /// setting: a node of a real cluster always joins the group.
    public var soleNode = false
    /// A snapshot of the control plane goes into the config log once the records since the
    /// last one exceed either: set each to half the config topic's retention (the defaults
    /// suit the embedded cluster, which keeps about 5 MB and 100,000 records a partition), so
    /// the log always holds a whole snapshot and what followed it.
    public var snapshotBytes = 2 << 20
    public var snapshotRecords = 40_000

    public init(name: String, nodeID: String, advertisedURL: String) {
        self.name = name
        self.nodeID = nodeID
        self.advertisedURL = advertisedURL
    }

    public var topics: ClusterTopics { ClusterTopics(cluster: name, slots: slots) }

    /// Why `name` cannot name a cluster, or nil.
    public static func nameProblem(_ name: String) -> String? {
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        guard !name.isEmpty, name.utf8.count <= 64, allowed else {
            return "the cluster name must be 1 to 64 lower-case letters, digits or '-' (it names the cluster's topics, _aerogrid.<name>.config …)"
        }
        return nil
    }

    /// Why `id` cannot name a node, or nil.
    public static func nodeIDProblem(_ id: String) -> String? {
        let allowed = id.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        }
        guard !id.isEmpty, id.utf8.count <= 64, allowed else {
            return "the node id must be 1 to 64 letters, digits, '.', '_' or '-'"
        }
        return nil
    }

    /// Why `url` cannot be this node's advertised URL, or nil: `http(s)://host:port`, nothing after.
    public static func advertisedURLProblem(_ url: String) -> String? {
        let scheme = url.hasPrefix("https://") ? "https://" : url.hasPrefix("http://") ? "http://" : nil
        let rule = "advertised_url must be \"http://HOST:PORT\" or \"https://HOST:PORT\", where the other nodes reach this one"
        guard let scheme, url.utf8.count <= 255 else { return rule }
        let authority = url.dropFirst(scheme.count)
        guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port)
        else { return rule }
        return isPlainURLHost(authority[..<colon]) ? nil : rule
    }
}

/// The topics a cluster keeps its state in, each under `InternalTopics.prefix` so that no
/// app may read or write them.
public struct ClusterTopics: Sendable, Equatable {
    /// Every control-plane write, in one order (one partition): Kafka Connect's config topic.
    public let config: String
    /// Bundles' bytes, in chunks addressed by digest.
    public let bundles: String
    /// The audit log.
    public let audit: String
    /// Empty; its partitions are the placement's slots, divided among the nodes by the
    /// consumer group of the same name.
    public let placement: String
    /// The apps' grids: a partition per slot, records keyed by app id.
    public let changelog: String
    /// What each node says of the apps it runs (Kafka Connect's status topic).
    public let status: String
    public let slots: Int32

    public static let defaultSlots: Int32 = 64

    public init(cluster: String, slots: Int32 = defaultSlots) {
        config = "\(InternalTopics.prefix)\(cluster).config"
        bundles = "\(InternalTopics.prefix)\(cluster).bundles"
        audit = "\(InternalTopics.prefix)\(cluster).audit"
        placement = "\(InternalTopics.prefix)\(cluster).placement"
        changelog = "\(InternalTopics.prefix)\(cluster).changelog"
        status = "\(InternalTopics.prefix)\(cluster).status"
        self.slots = slots
    }

    /// Each topic with the partition count it must have: one for the logs, so every node
    /// reads each in one order; a slot's for the placement and the changelog.
    public var required: [(topic: String, partitions: Int)] {
        [(config, 1), (bundles, 1), (audit, 1), (status, 1), (placement, Int(slots)), (changelog, Int(slots))]
    }

    /// A producer for these topics: idempotent, `acks=all` (and `extra`), winning over the
    /// operator's properties, since what the topics guarantee depends on them.
    public static func producer(_ kafka: KafkaConfiguration, logger: Logger, extra: [String: String] = [:]) throws(KafkaError) -> KafkaProducer {
        var settings = kafka
        settings.properties.merge(["enable.idempotence": "true", "acks": "all"].merging(extra) { _, given in given }) { _, ours in ours }
        return try KafkaProducer(configuration: settings, logger: logger)
    }
}
