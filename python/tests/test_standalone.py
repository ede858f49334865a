"""Standalone mode: the runner consumes Kafka itself with confluent-kafka.

The end-to-end test uses librdkafka's mock cluster (an in-process Kafka on 127.0.0.1) and is
skipped when confluent-kafka is not installed.
"""

import json
import os
import random
import subprocess
import sys

import pytest

from aerogrid._standalone import bootstrap_servers
from conftest import REPO_DIR, SDK_DIR

SEED_APP = os.path.join(REPO_DIR, "Examples", "ordersapp", "app.py")


def test_bootstrap_servers_accepts_uris_and_lists():
    assert bootstrap_servers("kafka://a:9092") == "a:9092"
    assert bootstrap_servers("kafka://a:9092/, b:9093") == "a:9092,b:9093"
    assert bootstrap_servers("localhost:9092") == "localhost:9092"


def test_the_seed_app_sums_orders_from_a_mock_cluster():
    kafka = pytest.importorskip("confluent_kafka")
    cluster = kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    brokers = ",".join(f"{b.host}:{b.port}" for b in cluster.list_topics(timeout=10).brokers.values())
    producer = kafka.Producer({"bootstrap.servers": brokers})
    rnd = random.Random(3)
    expected = {}
    for n in range(2000):
        product, quantity = rnd.choice(["Widget", "Gadget", "Gizmo"]), rnd.randint(1, 9)
        expected[product] = expected.get(product, 0) + quantity
        producer.produce("orders", key=f"order-{n}",
                         value=json.dumps({"product": product, "quantity": quantity}))
    producer.produce("orders", key="bad", value='{"product": "Widget", "quantity": "lots"}')
    assert producer.flush(10) == 0

    result = subprocess.run(
        [sys.executable, "-m", "aerogrid", "run", SEED_APP, "--broker", f"kafka://{brokers}",
         "--print-grids", "--quiet", "--idle-exit", "3"],
        cwd=SDK_DIR, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    grids = [json.loads(line) for line in result.stdout.splitlines()]
    assert grids == [{"grid": "product_sum",
                      "rows": [[p, {"units_sold": expected[p]}] for p in sorted(expected)]}]
    assert "decode error in sum_orders" in result.stderr
    assert "Order.quantity: expected int, got str ('lots')" in result.stderr
