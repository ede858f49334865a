"""Apps spread over a cluster's nodes by Kafka's group protocol, their grids kept in the
cluster's changelog topic: a node killed with SIGKILL loses nothing, its apps run on the
others with exact grids (docs/cluster.md, "Placement" and "The changelog")."""

from __future__ import annotations

import os
import signal
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from support.harness import TOPIC, KafkaCluster, Orders, log, produce
from support.server import expect, orders_bundle
from support.stream import StreamClient
from test_cluster import CLUSTER, Nodes, wait_until

# Short, so a lost node's slots move within seconds (the default is 10 s).
SETTINGS = {"session_timeout": 6, "heartbeat_interval": 1}
APPS = [f"sum{n}" for n in range(1, 7)]


@pytest.fixture
def placed(testdir):
    kafka = KafkaCluster(testdir, name="kafka", topics=[f"{TOPIC}:8"], clusters=[CLUSTER])
    nodes = None
    try:
        nodes = Nodes(testdir, kafka, settings=SETTINGS)
        yield nodes
    finally:
        if nodes is not None:
            nodes.terminate()
        kafka.terminate()


def owners(nodes: Nodes, admin: str, alive: list, app: str) -> list:
    """The nodes (of `alive`) where the app runs now."""
    found = []
    for index in alive:
        answer = nodes.client(index, admin).app(app)
        if answer.status == 200 and answer.json()["state"] == "running":
            found.append(index)
    return found


def placement(nodes: Nodes, admin: str, alive: list) -> dict | None:
    """{app: node} once every app runs on exactly one node, else None."""
    where = {app: owners(nodes, admin, alive, app) for app in APPS}
    return {app: found[0] for app, found in where.items()} if all(len(f) == 1 for f in where.values()) else None


def grid_of(nodes: Nodes, admin: str, index: int, app: str) -> dict:
    answer = nodes.client(index, admin).grid(app, "product_sum")
    return answer.json()["rows"] if answer.status == 200 else {}


def changelog_claims(bootstrap: str) -> list:
    """Every claim in the changelog: (app id, node), in no particular order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "aerogrid-it-changelog", "enable.auto.commit": False})
    topic = f"_aerogrid.{CLUSTER}.changelog"
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(64)])
        claims, quiet = [], time.monotonic()
        while time.monotonic() - quiet < 2:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            quiet = time.monotonic()
            if b'"kind":"claim"' in message.value():
                claims.append((message.key().decode(), message.value()))
        return claims
    finally:
        consumer.close()


def test_a_killed_nodes_apps_move_to_the_others_with_exact_grids(placed, testdir):
    nodes = placed
    created = expect(nodes.operator(1).post("/api/v1/tenants", json_body={"name": "acme", "topics": [TOPIC]}), 201).json()
    admin = created["admin_token"]["secret"]
    expect(nodes.operator(1).request("PUT", "/api/v1/tenants/acme/quota", json_body={"cpus": 8, "memory_bytes": 4 << 30}), 200)
    for index in (2, 3):
        wait_until(lambda index=index: nodes.client(index, admin).get("/api/v1/apps").status == 200, 2.0, f"node {index} knows the token")
    for app in APPS:
        expect(nodes.client(1, admin).deploy(orders_bundle(app)), 201)
        expect(nodes.client(1, admin).action(app, "start"), 200)
    where, took = wait_until(lambda: placement(nodes, admin, [1, 2, 3]), 60, "every app runs on exactly one node")
    log(f"placement after {took:.1f} s: {where}")
    spread = {index: sum(1 for node in where.values() if node == index) for index in (1, 2, 3)}
    log(f"apps per node: {spread}")

    orders = Orders(testdir, seed=20)
    produce(nodes.kafka, orders, 3000)
    expected = orders.expected_units()
    for app, index in where.items():
        wait_until(lambda app=app, index=index: grid_of(nodes, admin, index, app) == expected, 60, f"{app} on node {index} is exact")

    # The node with the most apps dies; orders keep coming meanwhile.
    victim = max(spread, key=lambda index: (spread[index], index))
    moved = [app for app, index in where.items() if index == victim]
    assert moved, where
    survivors = [index for index in (1, 2, 3) if index != victim]
    # Watched from every node: the survivors serve the moved apps' grids from replicas of
    # the changelog, the victim from its runners.
    streams = {index: StreamClient(nodes.servers[index - 1], admin) for index in (1, 2, 3)}
    before = {}
    for index, stream in streams.items():
        for app in moved:
            snapshot = stream.subscribe(app, app, "product_sum")
            before[index, app] = snapshot["epoch"]
            stream.wait_rows(app, expected, 30)
    log(f"epochs of the moved apps before the kill: {sorted(set(before.values()))}")
    killed_at = time.monotonic()
    server = nodes.servers[victim - 1]
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    produce(nodes.kafka, orders, 2000)
    after, took = wait_until(lambda: placement(nodes, admin, survivors), 90, "every app runs on a surviving node")
    log(f"node {victim} killed: its {len(moved)} apps ran on the survivors {took:.1f} s later: {after}")
    produce(nodes.kafka, orders, 1000)
    expected = orders.expected_units()
    for app, index in after.items():
        wait_until(lambda app=app, index=index: grid_of(nodes, admin, index, app) == expected, 60, f"{app} on node {index} is exact")
    log(f"every grid exact {time.monotonic() - killed_at:.1f} s after the kill")

    # Clients on the survivors saw each moved app's new epoch as a snapshot, then its exact grid.
    for index in survivors:
        for app in moved:
            replica = streams[index].wait_rows(app, expected, 30)
            assert replica.epoch != before[index, app] and replica.snapshots >= 2, (index, app, replica.epoch, replica.snapshots)
            assert not replica.problems, replica.problems
    # The victim's clients lost their connection; connected again to a survivor, they converge.
    assert streams[victim].wait_closed(10) is not None
    again = StreamClient(nodes.servers[survivors[0] - 1], admin)
    for app in moved:
        again.subscribe(app, app, "product_sum")
        again.wait_rows(app, expected, 30)
    # With the producers stopped, every node's REST read of every grid is the same: rows,
    # epoch and version.
    def reads(app):
        answers = [nodes.client(index, admin).grid(app, "product_sum") for index in survivors]
        return [(a.json()["rows"], a.json()["epoch"], a.json()["version"]) for a in answers if a.status == 200]
    for app in APPS:
        same, _ = wait_until(lambda app=app: (lambda seen: len(seen) == len(survivors) and seen.count(seen[0]) == len(seen))(reads(app)),
                             30, f"every node reads {app} alike")
        assert reads(app)[0][0] == expected
    for stream in [*streams.values(), again]:
        stream.close()

    # A deleted app made again under its name is a new app: it starts from nothing of the old
    # one's (it reads every order itself), under another id in the changelog.
    gone = APPS[0]
    expect(nodes.client(1, admin).delete(f"/api/v1/apps/{gone}"), 204)
    expect(nodes.client(1, admin).deploy(orders_bundle(gone)), 201)
    expect(nodes.client(1, admin).action(gone, "start"), 200)
    again, _ = wait_until(lambda: placement(nodes, admin, survivors), 60, "the re-created app runs")
    wait_until(lambda: grid_of(nodes, admin, again[gone], gone) == expected, 60, "the re-created app is exact")
    ids = {key for key, value in changelog_claims(nodes.kafka.bootstrap) if f'"app":"{key}"'.encode() in value}
    log(f"{len(ids)} app ids have claims in the changelog")
    assert len(ids) == len(APPS) + 1, ids
