"""More than one node: a cluster of AeroGrid nodes keeps its control plane in Kafka, in
internal topics (`_aerogrid.<cluster>.…`, one partition each) that the embedded cluster's
host creates, since librdkafka's mock cluster has no CreateTopics."""

from __future__ import annotations

import subprocess

from confluent_kafka.admin import AdminClient

from support.harness import AEROGRID, TOPIC, KafkaCluster, log


def test_kafka_up_creates_a_clusters_internal_topics(testdir):
    kafka = KafkaCluster(testdir, name="kafka-cluster", topics=[f"{TOPIC}:2"], clusters=["prod", "staging"])
    try:
        # A full listing: a metadata request naming a missing topic would create it.
        topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
        log(f"topics: {sorted(topics)}")
        for cluster in ("prod", "staging"):
            for part in ("config", "bundles", "audit"):
                name = f"_aerogrid.{cluster}.{part}"
                assert name in topics, sorted(topics)
                assert len(topics[name].partitions) == 1, (name, topics[name].partitions)
        assert len(topics[TOPIC].partitions) == 2
    finally:
        kafka.terminate()


def test_kafka_up_refuses_a_cluster_name_that_cannot_name_topics():
    result = subprocess.run([str(AEROGRID), "kafka", "up", "--cluster", "Prod_1"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result
    assert "--cluster Prod_1" in result.stderr and "lower-case letters, digits or '-'" in result.stderr, result.stderr
