"""More than one node: a cluster of AeroGrid nodes keeps its control plane in Kafka, in
internal topics (`_aerogrid.<cluster>.…`, one partition each) that the embedded cluster's
host creates, since librdkafka's mock cluster has no CreateTopics."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient

from support.harness import AEROGRID, ORDERSAPP, REPO, TOPIC, Deadline, KafkaCluster, Managed, ProcessError, log
from support.server import Client, Server, expect, free_port, new_operator_token, orders_bundle, zip_entries
from support.stream import StreamClient


def test_kafka_up_creates_a_clusters_internal_topics(testdir):
    kafka = KafkaCluster(testdir, name="kafka-cluster", topics=[f"{TOPIC}:2"], clusters=["prod", "staging"])
    try:
        # A full listing: a metadata request naming a missing topic would create it.
        topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
        log(f"topics: {sorted(topics)}")
        for cluster in ("prod", "staging"):
            for part, partitions in (("config", 1), ("bundles", 1), ("audit", 1), ("placement", 64), ("changelog", 64)):
                name = f"_aerogrid.{cluster}.{part}"
                assert name in topics, sorted(topics)
                assert len(topics[name].partitions) == partitions, (name, topics[name].partitions)
        assert len(topics[TOPIC].partitions) == 2
    finally:
        kafka.terminate()


def test_kafka_up_refuses_a_cluster_name_that_cannot_name_topics():
    result = subprocess.run([str(AEROGRID), "kafka", "up", "--cluster", "Prod_1"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result
    assert "--cluster Prod_1" in result.stderr and "lower-case letters, digits or '-'" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# Three nodes on one Kafka: the control plane's writes go through the cluster's config log,
# every node's store is a view of it, any node takes any call and any token.

CLUSTER = "prod"


class Nodes:
    """Three `aerogrid serve` nodes of cluster `prod` on one embedded Kafka, each with its
    own data directory and the same operator token; `settings`: more `[cluster]` keys."""

    def __init__(self, testdir, kafka: KafkaCluster, count: int = 3, settings: dict | None = None) -> None:
        self.testdir = testdir
        self.kafka = kafka
        self.token = new_operator_token()
        self.settings = settings or {}
        self.servers: list = []
        for index in range(1, count + 1):
            self.servers.append(self.start(index))

    def start(self, index: int, port: int | None = None, env: dict | None = None) -> Server:
        directory = self.testdir / f"node{index}"
        directory.mkdir(exist_ok=True)
        port = port or free_port()
        cluster = {"name": CLUSTER, "node_id": f"node{index}", "advertised_url": f"http://127.0.0.1:{port}", **self.settings}
        return Server(directory, self.kafka.bootstrap, name=f"node{index}", operator_token=self.token, port=port,
                      data_dir=directory / "data", tables={"cluster": cluster}, env=env)

    def operator(self, index: int):
        return self.servers[index - 1].client(self.token)

    def client(self, index: int, token: str):
        return self.servers[index - 1].client(token)

    def terminate(self) -> None:
        for server in self.servers:
            server.terminate()


@pytest.fixture
def cluster(testdir):
    kafka = KafkaCluster(testdir, name="kafka", topics=[f"{TOPIC}:2"], clusters=[CLUSTER])
    nodes = None
    try:
        nodes = Nodes(testdir, kafka)
        yield nodes
    finally:
        if nodes is not None:
            nodes.terminate()
        kafka.terminate()


def wait_until(check, timeout: float, what: str):
    """check()'s first truthy value within `timeout` seconds, with the time it took."""
    started = time.monotonic()
    deadline = Deadline(timeout, what)
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        if deadline.expired:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def views(nodes: Nodes) -> list:
    """What each node's view holds of the control plane, as its API shows it."""
    seen = []
    for index in range(1, len(nodes.servers) + 1):
        tenants = expect(nodes.operator(index).get("/api/v1/tenants"), 200).json()["tenants"]
        seen.append(sorted((t["id"], t["name"], t["host_uid"]) for t in tenants))
    return seen


def test_a_tenant_made_on_one_node_is_known_to_all_within_a_second(cluster):
    created = expect(cluster.operator(1).post("/api/v1/tenants", json_body={"name": "acme"}), 201).json()
    admin = created["admin_token"]["secret"]
    # Its admin token works on node 3 within a second (read from the log, not asked of node 1).
    _, took = wait_until(lambda: cluster.client(3, admin).get("/api/v1/apps").status == 200, 1.0, "node 3 knows the token")
    log(f"node 3 took the token {took * 1000:.0f} ms after node 1 answered")
    wait_until(lambda: len(set(map(tuple, views(cluster)))) == 1, 1.0, "every node has the tenant")
    # A token made on node 2 works on node 1; revoked on node 3, it is refused everywhere.
    token = expect(cluster.client(2, admin).post("/api/v1/tokens", json_body={"name": "ci", "role": "viewer"}), 201).json()
    for index in (1, 3):
        wait_until(lambda index=index: cluster.client(index, token["secret"]).get("/api/v1/apps").status == 200, 1.0,
                   f"node {index} knows the new token")
    streams = [StreamClient(server, token["secret"]) for server in cluster.servers]
    for stream in streams:
        stream.ping()
    expect(cluster.client(3, admin).delete(f"/api/v1/tokens/{token['id']}"), 204)
    for index in (1, 2, 3):
        wait_until(lambda index=index: cluster.client(index, token["secret"]).get("/api/v1/apps").status == 401, 1.0,
                   f"node {index} refuses the revoked token")
        # Its stream on that node is closed by the revocation, not left to its next request.
        assert streams[index - 1].wait_closed(2.0) is not None, f"the stream on node {index} is still open"


def test_the_audit_is_the_whole_clusters_on_every_node(cluster):
    expect(cluster.operator(1).post("/api/v1/tenants", json_body={"name": "acme"}), 201)

    def entries(index: int) -> list:
        body = expect(cluster.operator(index).get("/api/v1/audit"), 200).json()
        assert body["complete_since"] is None, body  # every node read the audit topic from its start
        return [e for e in body["entries"] if e["action"] == "tenant.create" and e["target"] == "acme"]

    for index in (1, 2, 3):
        wait_until(lambda index=index: len(entries(index)) == 1, 3.0, f"node {index} shows the audit entry written on node 1")
    time.sleep(0.5)
    # Node 1 read its own entry back from the topic: kept once.
    assert len(entries(1)) == 1, entries(1)
    assert {(e["tenant"], e["actor"], e["outcome"]) for index in (1, 2, 3) for e in entries(index)} == \
        {(entries(1)[0]["tenant"], entries(1)[0]["actor"], "ok")}


def test_conflicting_writes_on_two_nodes_are_decided_once_for_all(cluster):
    # The same tenant name on two nodes at once: one wins, the other hears why.
    answers = [None, None]

    def create(slot: int, index: int) -> None:
        answers[slot] = cluster.operator(index).post("/api/v1/tenants", json_body={"name": "same"})

    threads = [threading.Thread(target=create, args=(0, 1)), threading.Thread(target=create, args=(1, 2))]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201, 409], answers
    loser = next(answer for answer in answers if answer.status == 409)
    assert loser.error["message"] == "tenant 'same' already exists", loser
    winner = next(answer for answer in answers if answer.status == 201).json()
    wait_until(lambda: len(set(map(tuple, views(cluster)))) == 1, 2.0, "every node has the same tenants")
    assert views(cluster)[0] == [(winner["tenant"]["id"], "same", winner["tenant"]["host_uid"])]

    # Two starts through two nodes that together exceed the tenant's memory: one admitted.
    admin = winner["admin_token"]["secret"]
    expect(cluster.operator(3).request("PUT", "/api/v1/tenants/same/quota", json_body={"memory_bytes": 384 << 20}), 200)
    for name in ("one", "two"):
        bundle = orders_bundle(name)
        expect(cluster.client(1, admin).deploy(bundle), 201)
    for index in (2, 3):  # a node knows another's write once it has read it: milliseconds
        wait_until(lambda index=index: all(cluster.client(index, admin).app(name).status == 200 for name in ("one", "two")), 2.0,
                   f"node {index} knows both apps")
    starts = [None, None]

    def start(slot: int, index: int, name: str) -> None:
        starts[slot] = cluster.client(index, admin).action(name, "start")

    threads = [threading.Thread(target=start, args=(0, 2, "one")), threading.Thread(target=start, args=(1, 3, "two"))]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert sorted(answer.status for answer in starts) == [200, 403], starts
    refused = next(answer for answer in starts if answer.status == 403)
    assert refused.error["code"] == "over_quota" and "384 MiB" in refused.error["message"], refused
    admitted = next(answer for answer in starts if answer.status == 200).json()["name"]

    def desired(index: int) -> dict:
        apps = expect(cluster.client(index, admin).get("/api/v1/apps"), 200).json()["apps"]
        return {app["name"]: (app["desired_state"], app["version"], app["bundle_digest"]) for app in apps}

    wait_until(lambda: desired(1) == desired(2) == desired(3), 2.0, "every node has the same apps")
    assert {name: state for name, (state, _, _) in desired(1).items()} == \
        {admitted: "running", ({"one", "two"} - {admitted}).pop(): "stopped"}


def test_a_node_killed_between_appending_a_write_and_reading_it_back(cluster):
    """The write is on every node or on none, and the caller's retry (same Idempotency-Key,
    another node) is answered, not applied a second time."""
    created = expect(cluster.operator(2).post("/api/v1/tenants", json_body={"name": "acme"}), 201).json()
    admin = created["admin_token"]["secret"]
    # Node 1 again, with the fault hook: it exits right after the log took its token write.
    assert cluster.servers[0].stop() == 0
    cluster.servers[0] = cluster.start(1, env={"AEROGRID_TEST_FAULT": "exit-after-append:token.create"})
    key = {"Idempotency-Key": "4f7c1d2e-retry-me"}
    try:
        answer = cluster.client(1, admin).post("/api/v1/tokens", json_body={"name": "ci", "role": "viewer"}, headers=key)
        raise AssertionError(f"node 1 answered instead of exiting: {answer!r}")
    except (ConnectionError, http.client.HTTPException) as error:
        log(f"node 1 dropped the request: {error!r}")
    assert cluster.servers[0].wait(10) == 75

    def named_ci(index: int) -> list:
        return [t for t in expect(cluster.client(index, admin).get("/api/v1/tokens"), 200).json()["tokens"] if t["name"] == "ci"]

    # The log took it: nodes 2 and 3 have it, once.
    wait_until(lambda: len(named_ci(2)) == 1 and len(named_ci(3)) == 1, 2.0, "nodes 2 and 3 have the token")
    # The caller retries on node 2: answered as already made, not made twice.
    retry = expect(cluster.client(2, admin).post("/api/v1/tokens", json_body={"name": "ci", "role": "viewer"}, headers=key), 409, "conflict")
    assert "applied before" in retry.error["message"], retry
    assert len(named_ci(2)) == 1 and len(named_ci(3)) == 1
    # A retry of a write without a secret gets the first answer: the quota set once.
    quota = {"Idempotency-Key": "quota-1"}
    first = expect(cluster.operator(3).request("PUT", "/api/v1/tenants/acme/quota", json_body={"max_apps": 7}, headers=quota), 200)
    again = expect(cluster.operator(2).request("PUT", "/api/v1/tenants/acme/quota", json_body={"max_apps": 7}, headers=quota), 200)
    assert first.json()["max_apps"] == again.json()["max_apps"] == 7
    # A key is the caller's own: another token's request with the same key is another write.
    expect(cluster.client(2, admin).post("/api/v1/tokens", json_body={"name": "ci", "role": "viewer"},
                                         headers={"Idempotency-Key": "quota-1"}), 201)
    # The restarted node 1 reads what it wrote before it died.
    cluster.servers[0] = cluster.start(1)
    assert len(named_ci(1)) == 2


def test_a_node_stopped_and_started_again_catches_up_and_a_new_node_reads_it_all(cluster):
    node3 = cluster.servers[2]
    port = node3.port
    assert node3.stop() == 0
    made = [expect(cluster.operator(1 + n % 2).post("/api/v1/tenants", json_body={"name": f"t{n}"}), 201).json()
            for n in range(12)]
    expect(cluster.operator(2).delete("/api/v1/tenants/t3"), 204)
    cluster.servers[2] = cluster.start(3, port=port)
    fresh = cluster.start(4)
    cluster.servers.append(fresh)
    # Both answer only once their views have caught up; nodes 1 and 2 read each other's last
    # writes within milliseconds.
    seen, _ = wait_until(lambda: (lambda found: found if all(view == found[0] for view in found) else None)(views(cluster)), 2.0,
                         "every node has the same tenants")
    assert sorted(name for _, name, _ in seen[0]) == sorted(f"t{n}" for n in range(12) if n != 3)
    assert made[0]["tenant"]["id"] in {tenant_id for tenant_id, _, _ in seen[3]}
    # The deleted tenant's name stays retired on the new node too.
    expect(cluster.operator(4).post("/api/v1/tenants", json_body={"name": "t3"}), 409, "name_retired")


def test_a_node_refuses_a_log_that_does_not_know_its_view(testdir):
    kafka = KafkaCluster(testdir, name="kafka", topics=[f"{TOPIC}:2"], clusters=[CLUSTER])
    nodes = Nodes(testdir, kafka, count=1)
    try:
        expect(nodes.operator(1).post("/api/v1/tenants", json_body={"name": "acme"}), 201)
        assert nodes.servers[0].stop() == 0
    finally:
        nodes.terminate()
        kafka.terminate()
    # The embedded Kafka starts empty: this node's view is ahead of the log it finds.
    kafka = KafkaCluster(testdir, name="kafka-again", topics=[f"{TOPIC}:2"], clusters=[CLUSTER])
    nodes.kafka = kafka
    try:
        with pytest.raises(ProcessError):
            nodes.start(1)
        stderr = (testdir / "node1" / "node1.stderr").read_text()
        assert "the log was emptied or replaced" in stderr and "Refusing to start rather than diverge" in stderr, stderr[-2000:]
    finally:
        kafka.terminate()


def config_records(bootstrap: str, topic: str = f"_aerogrid.{CLUSTER}.config") -> list:
    """Every record the cluster's config log (or `topic`) still holds, as (offset, JSON or bytes)."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        found = []
        deadline = Deadline(30, "reading the config log")
        while len(found) < high - low and not deadline.expired:
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error() is None:
                    value = message.value()
                    found.append((message.offset(), json.loads(value) if topic.endswith(".config") else value))
        return found
    finally:
        consumer.close()


def test_beyond_the_logs_retention_new_and_stopped_nodes_reach_the_same_view(cluster):
    """More than the embedded cluster keeps (5 MB): its beginning is gone, so a node that
    was stopped since the start and a new node can only start from a snapshot."""
    from confluent_kafka import Producer
    created = expect(cluster.operator(1).post("/api/v1/tenants", json_body={"name": "bulk"}), 201).json()
    admin = created["admin_token"]["secret"]
    node3 = cluster.servers[2]
    port3 = node3.port
    assert node3.stop() == 0
    # Writes as nodes write them (format 1), produced straight into the log: 300 new tokens,
    # then 12,000 quota changes of about 500 bytes each (a larger state than the log keeps
    # could not be kept by any log: the writes change one row over and over).
    cluster_id = next(body["body"]["clusterId"] for _, body in config_records(cluster.kafka.bootstrap) if body["type"] == "cluster.init")
    producer = Producer({"bootstrap.servers": cluster.kafka.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    tokens_made, count = 300, 12_000
    started = time.monotonic()
    for n in range(tokens_made + count):
        if n < tokens_made:
            kind, body = "token.create", {"id": f"tok_bulk_{n:06d}", "tenant": "bulk", "name": f"bulk {n}", "role": "viewer",
                                          "secretSha256": f"{n:064x}"}
        else:
            kind, body = "tenant.quota", {"name": "bulk", "quota": {"numbers": {"max_apps": n % 100 + 1}, "reset": []}}
        # "note": a field this format does not know, which readers leave alone (padding here).
        record = {"v": 1, "type": kind, "write": f"w_bulk_{n}", "cluster": cluster_id, "at": 1765000000 + n, "body": body,
                  "note": "x" * 400}
        producer.produce(f"_aerogrid.{CLUSTER}.config", json.dumps(record).encode(), partition=0)
        if n % 1000 == 999:
            # As fast as nodes 1 and 2 apply them: a node the log outruns re-seeds from a
            # snapshot, and none can exist yet of what no node has read.
            marker = {"v": 1, "type": "tenant.acl", "write": f"w_mark_{n}", "cluster": cluster_id, "at": 1765000000 + n,
                      "body": {"name": "bulk", "topics": [f"bulk.mark{n}"]}}
            producer.produce(f"_aerogrid.{CLUSTER}.config", json.dumps(marker).encode(), partition=0)
            assert producer.flush(30) == 0
            for index in (1, 2):
                wait_until(lambda index=index, n=n: cluster.operator(index).get("/api/v1/tenants/bulk/acl").json()["topics"] == [f"bulk.mark{n}"],
                           30, f"node {index} applies the writes up to {n}")
    assert producer.flush(60) == 0
    log(f"produced {tokens_made + count} records in {time.monotonic() - started:.1f} s")

    def tokens(index: int) -> list:
        listed = expect(cluster.client(index, admin).get("/api/v1/tokens"), 200).json()["tokens"]
        return sorted((t["id"], t["name"], t["role"], t["revoked_at"]) for t in listed)

    def quota(index: int) -> dict:
        return expect(cluster.operator(index).get("/api/v1/tenants/bulk/quota"), 200).json()

    last = (tokens_made + count - 1) % 100 + 1
    wait_until(lambda: quota(1)["max_apps"] == last and quota(2)["max_apps"] == last, 120, "nodes 1 and 2 apply every write")
    # One node writes a snapshot: the one the due record's offset chose, or the next in turn
    # 10 s later (the chosen one may be node 3, stopped).
    records, _ = wait_until(lambda: (lambda found: found if any(body["type"] == "snapshot" for _, body in found) else None)(
        config_records(cluster.kafka.bootstrap)), 40, "a snapshot in the log")
    first_offset = records[0][0]
    snapshots = [offset for offset, body in records if body["type"] == "snapshot"]
    log(f"the log now holds offsets {first_offset}..{records[-1][0]}; snapshot parts at {snapshots[:8]}…")
    assert first_offset > 0, "the embedded cluster kept every record: the test did not go beyond its retention"
    assert snapshots, "no node wrote a snapshot"

    # A node stopped since the start, and a new one: neither can read the log from where it is.
    started = time.monotonic()
    cluster.servers[2] = cluster.start(3, port=port3)
    log(f"node 3 (stopped since the start) answered {time.monotonic() - started:.2f} s after its start")
    started = time.monotonic()
    cluster.servers.append(cluster.start(4))
    log(f"node 4 (new) answered {time.monotonic() - started:.2f} s after its start, after {tokens_made + count} writes")
    expected = tokens(1)
    assert len(expected) == tokens_made + 1
    for index in (2, 3, 4):
        wait_until(lambda index=index: tokens(index) == expected and quota(index) == quota(1), 2.0, f"node {index} has the same tokens and quota")
    wait_until(lambda: (lambda found: all(view == found[0] for view in found))(views(cluster)), 2.0, "every node has the same tenants")
    # And they keep following: a write through the new node reaches the restarted one.
    token = expect(cluster.client(4, admin).post("/api/v1/tokens", json_body={"name": "after", "role": "viewer"}), 201).json()
    wait_until(lambda: cluster.client(3, token["secret"]).get("/api/v1/apps").status == 200, 2.0, "node 3 knows the token made on node 4")


class Dev(Managed):
    """`aerogrid dev --no-demo` in `directory`, on ports of its own."""

    def __init__(self, testdir, directory, name: str) -> None:
        self.http_port = free_port()
        argv = [AEROGRID, "dev", "--no-demo", "--dir", directory, "--https-port", free_port(), "--http-port", self.http_port]
        super().__init__(name, argv, testdir, cwd=REPO)
        self.lines: list = []
        reader = threading.Thread(target=lambda: [self.lines.append(raw.decode().rstrip()) for raw in self.proc.stdout], daemon=True)
        reader.start()
        deadline = Deadline(60, "aerogrid dev's block")
        while not any("AeroGrid dev platform is ready" in line for line in self.lines):
            if not self.alive() or deadline.expired:
                raise ProcessError(f"{name}: no block (status {self.proc.poll()}); stdout {self.lines[-10:]}; stderr:\n{self.stderr_tail()}")
            time.sleep(0.1)
        time.sleep(0.5)  # the rest of the block
        self.tokens = {line.split(":")[0].strip(): line.split(":", 1)[1].split()[0] for line in self.lines if " token:" in line}

    def client(self, token: str) -> Client:
        return Client("127.0.0.1", self.http_port, token)


def test_aerogrid_dev_rerun_over_an_empty_embedded_kafka_keeps_its_tenants_and_tokens(testdir):
    directory = testdir / ".aerogrid"
    first = Dev(testdir, directory, "dev-first")
    try:
        operator = first.client(first.tokens["operator token"])
        extra = expect(operator.post("/api/v1/tenants", json_body={"name": "extra"}), 201).json()["admin_token"]["secret"]
        first.signal(signal.SIGINT)
        assert first.wait(60) == 0, first.stderr_tail()
    finally:
        first.terminate()
    # The embedded Kafka of the rerun starts empty: the view is published as a new cluster's.
    second = Dev(testdir, directory, "dev-second")
    try:
        assert second.tokens == first.tokens, (first.tokens, second.tokens)
        names = [t["name"] for t in expect(second.client(second.tokens["operator token"]).get("/api/v1/tenants"), 200).json()["tenants"]]
        assert sorted(names) == ["demo", "extra"], names
        expect(second.client(extra).get("/api/v1/apps"), 200)
        expect(second.client(second.tokens["viewer token"]).get("/api/v1/apps"), 200)
        # And the new cluster takes writes as before.
        expect(second.client(second.tokens["operator token"]).post("/api/v1/tenants", json_body={"name": "third"}), 201)
        assert "published this node's view" in second.stderr_path.read_text()
    finally:
        second.terminate()


def bundle_dirs(nodes: Nodes, index: int, tenant_id: str) -> set:
    """The digests of the bundles node `index` keeps for the tenant."""
    directory = nodes.testdir / f"node{index}" / "data" / "bundles" / tenant_id
    return {entry.name for entry in directory.iterdir()} if directory.exists() else set()


def test_bundles_reach_every_node_from_the_topic_or_from_a_peer(testdir):
    """An app deployed through node 2 shows on nodes 1 and 3 with its version and digest and
    runs on the node holding its slot; bundles totalling three times what the embedded
    cluster keeps reach a node started afterwards, from peers once the topic lost them."""
    kafka = KafkaCluster(testdir, name="kafka", topics=[f"{TOPIC}:2"], clusters=[CLUSTER])
    nodes = Nodes(testdir, kafka)
    try:
        created = expect(nodes.operator(1).post("/api/v1/tenants", json_body={"name": "acme", "topics": [TOPIC]}), 201).json()
        tenant_id, admin = created["tenant"]["id"], created["admin_token"]["secret"]
        for index in (2, 3):
            wait_until(lambda index=index: nodes.client(index, admin).get("/api/v1/apps").status == 200, 1.0, f"node {index} knows the token")
        app = expect(nodes.client(2, admin).deploy(orders_bundle("orders")), 201).json()
        for index in (1, 3):
            seen, _ = wait_until(lambda index=index: (lambda answer: answer.json() if answer.status == 200 else None)(nodes.client(index, admin).app("orders")),
                                 2.0, f"node {index} knows the app")
            assert (seen["version"], seen["bundle_digest"]) == (app["version"], app["bundle_digest"]), seen
        expect(nodes.client(3, admin).action("orders", "start"), 200)
        wait_until(lambda: any(nodes.client(i, admin).app("orders").json()["state"] == "running" for i in (1, 2, 3)), 30,
                   "a node runs the app deployed through node 2")

        # Bundles of about 4.5 MB of random bytes (nothing to compress): 18 MB in all.
        digests = {app["bundle_digest"]}
        for n in range(4):
            code = (ORDERSAPP / "app.py").read_text().replace("'ordersapp'", repr(f"big{n}"))
            manifest = f'name = "big{n}"\nentrypoint = "app.py"\nruntime = "python3.11"\n'.encode()
            big = zip_entries([("app.toml", manifest), ("app.py", code.encode()), ("data.bin", os.urandom(4_500_000))])
            digests.add(expect(nodes.client(2, admin).deploy(big), 201).json()["bundle_digest"])
        for index in (1, 2, 3):
            wait_until(lambda index=index: bundle_dirs(nodes, index, tenant_id) == digests, 60, f"node {index} has every bundle")
        records = config_records(kafka.bootstrap, topic=f"_aerogrid.{CLUSTER}.bundles")
        log(f"the bundles topic holds offsets {records[0][0] if records else '-'}..{records[-1][0] if records else '-'}")
        assert records and records[0][0] > 0, "the bundles topic kept everything: not beyond its retention"

        started = time.monotonic()
        nodes.servers.append(nodes.start(4))
        wait_until(lambda: bundle_dirs(nodes, 4, tenant_id) == digests, 60, "node 4 has every bundle")
        log(f"node 4 had every bundle {time.monotonic() - started:.1f} s after its start")
        for digest in digests:
            archive = testdir / "node4" / "data" / "bundles" / ".archives" / f"{tenant_id}-{digest}.zip"
            assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest
        stderr = (testdir / "node4" / "node4.stderr").read_text()
        assert "verified" in stderr
        # The peer route is the cluster's: no token, or a tenant's, gets nothing.
        path = f"/internal/v1/bundles/{tenant_id}/{app['bundle_digest']}"
        expect(nodes.servers[1].client().get(path), 401)
        expect(nodes.client(2, admin).get(path), 401)
    finally:
        nodes.terminate()
        kafka.terminate()
