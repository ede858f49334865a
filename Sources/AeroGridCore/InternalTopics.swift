/// Topics no app may consume or produce, whatever its tenant's topic ACL (`*` included).
/// AeroGrid keeps a cluster's own state in Kafka under `_aerogrid.` (the control plane's
/// log with its token hashes, bundles, grid changelogs): an app that could read them would
/// read every tenant's secrets' hashes, and one that could write them would forge the log.
/// Kafka's own topics (`__consumer_offsets`, `__transaction_state`) start with `__`.
public enum InternalTopics {
    /// Every AeroGrid cluster's internal topics start with this: `_aerogrid.<cluster>.…`.
    public static let prefix = "_aerogrid."
    /// Kafka's internal topics.
    public static let kafkaPrefix = "__"

    public static func isInternal(_ topic: some StringProtocol) -> Bool {
        topic.hasPrefix(prefix) || topic.hasPrefix(kafkaPrefix)
    }

    /// Why no app may use `topic`, or nil when it is not internal.
    public static func refusal(_ topic: String) -> String? {
        guard isInternal(topic) else { return nil }
        let owner = topic.hasPrefix(kafkaPrefix) ? "Kafka" : "AeroGrid"
        return "topic '\(topic.cut(toBytes: 249))' is internal to \(owner): no app may read or write it, whatever its tenant's topic ACL"
    }
}
