import CRdKafka

/// Metadata and offset queries any client can make. They block on the network, so callers
/// run them on a `KafkaWorkerThread`.
extension RDKafkaClient {
    /// All topics in one request. Naming a topic in a metadata request makes a cluster with
    /// auto-creation (the embedded one, for example) create it, so existence is always
    /// checked from the full listing.
    func clusterMetadata(timeoutMs: Int32) throws(KafkaError) -> KafkaClusterMetadata {
        var raw: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 1, nil, &raw, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let raw else {
            throw KafkaError(err, "cannot read the cluster's metadata within \(timeoutMs) ms")
        }
        defer { rd_kafka_metadata_destroy(raw) }
        let md = raw.pointee
        let brokers = (0..<Int(md.broker_cnt)).map { index in
            let broker = md.brokers[index]
            return KafkaBrokerMetadata(id: broker.id, host: String(cString: broker.host), port: Int(broker.port))
        }
        let topics = (0..<Int(md.topic_cnt)).map { index in
            let topic = md.topics[index]
            let name = String(cString: topic.topic)
            let partitions = (0..<Int(topic.partition_cnt)).map { pindex in
                let partition = topic.partitions[pindex]
                return KafkaTopicMetadata.Partition(
                    id: partition.id, leader: partition.leader,
                    replicas: Array(UnsafeBufferPointer(start: partition.replicas, count: Int(partition.replica_cnt))),
                    inSyncReplicas: Array(UnsafeBufferPointer(start: partition.isrs, count: Int(partition.isr_cnt))))
            }.sorted { $0.id < $1.id }
            let error =
                topic.err == RD_KAFKA_RESP_ERR_NO_ERROR
                ? nil : KafkaError(topic.err, "the cluster reports a problem with topic '\(name)'", topic: name)
            return KafkaTopicMetadata(name: name, partitions: partitions, error: error)
        }.sorted { $0.name < $1.name }
        return KafkaClusterMetadata(brokers: brokers.sorted { $0.id < $1.id }, topics: topics)
    }

    /// The topic's metadata from a full listing; an unknown topic is an error that says so.
    func topicMetadata(_ topic: String, timeoutMs: Int32) throws(KafkaError) -> KafkaTopicMetadata {
        guard let found = try clusterMetadata(timeoutMs: timeoutMs).topics.first(where: { $0.name == topic }) else {
            throw KafkaError(code: .unknownTopicOrPartition, message: "topic '\(topic)' does not exist", topic: topic)
        }
        if let error = found.error { throw error }
        return found
    }

    /// Asks the partition's leader for its low and high watermarks.
    func queryWatermarks(_ tp: TopicPartition, timeoutMs: Int32) throws(KafkaError) -> KafkaWatermarks {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_query_watermark_offsets(handle, tp.topic, tp.partition, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "cannot read the offsets of \(tp)", topic: tp.topic, partition: tp.partition)
        }
        return KafkaWatermarks(low: low, high: high)
    }
}

extension RDKafkaClient {
    /// The watermarks the last fetch response for the partition carried; nil before one.
    func cachedWatermarks(_ tp: TopicPartition) -> KafkaWatermarks? {
        var low: Int64 = -1
        var high: Int64 = -1
        guard rd_kafka_get_watermark_offsets(handle, tp.topic, tp.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
            low >= 0, high >= 0
        else { return nil }
        return KafkaWatermarks(low: low, high: high)
    }
}

/// Milliseconds for librdkafka's `int timeout_ms` parameters.
func milliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
    return Int32(clamping: max(0, ms))
}

/// A librdkafka partition list built from Swift values; destroyed with `defer`.
func makePartitionList(_ entries: [(TopicPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
    for (tp, offset) in entries {
        rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition).pointee.offset = offset
    }
    return list
}

/// The entries of a librdkafka partition list: partition, offset and per-partition error.
func partitionListEntries(
    _ list: UnsafePointer<rd_kafka_topic_partition_list_t>
) -> [(tp: TopicPartition, offset: Int64, err: rd_kafka_resp_err_t)] {
    (0..<Int(list.pointee.cnt)).map { index in
        let element = list.pointee.elems[index]
        return (TopicPartition(String(cString: element.topic), element.partition), element.offset, element.err)
    }
}
