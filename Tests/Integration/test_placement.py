"""Apps spread over a cluster's nodes by Kafka's group protocol, their grids kept in the
cluster's changelog topic (docs/cluster.md, "Placement", "The changelog", "Fencing"): a
node killed, paused or added moves apps without losing or doubling anything, and every
node serves every grid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from support.harness import ORDERSAPP, KafkaCluster, Orders, log
from support.server import bundle, expect
from support.stream import StreamClient
from test_cluster import CLUSTER, Nodes, wait_until

# Short, so a lost node's slots move within seconds (the default is 10 s).
SETTINGS = {"session_timeout": 6, "heartbeat_interval": 1}
TOPICS = ["orders", "trades", "quotes"]
# 24 copies of the seed app, 8 on each topic.
APPS = {f"{topic[:-1]}{n}": topic for topic in TOPICS for n in range(1, 9)}


def app_bundle(name: str, topic: str) -> bytes:
    code = (ORDERSAPP / "app.py").read_text().replace("'ordersapp'", repr(name)).replace("app.topic('orders'", f"app.topic({topic!r}")
    # A line in its log at each start.
    return bundle(name, code.replace("import aerogrid\n", f"import aerogrid\nprint('{name} starting', flush=True)\n", 1))


class Feed:
    """Orders written to every topic by kcat, in small waves, from a thread while `running`:
    what each app's grid must come to is its topic's `expected()`."""

    def __init__(self, testdir, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.orders = {topic: Orders(testdir / topic, seed=index) for index, topic in enumerate(TOPICS)}
        for topic in TOPICS:
            (testdir / topic).mkdir(exist_ok=True)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def wave(self, count: int) -> None:
        for topic, orders in self.orders.items():
            path = orders.write_wave(count)
            result = subprocess.run(["kcat", "-P", "-b", self.bootstrap, "-t", topic, "-K", "|", "-l", str(path)],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr

    def start(self, per_wave: int = 100, pause: float = 0.3) -> None:
        def run():
            try:
                while not self.stop.is_set():
                    self.wave(per_wave)
                    self.stop.wait(pause)
            except BaseException as error:  # noqa: BLE001 - reported by finish()
                self.error = error
        self.stop.clear()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(60)
        assert self.error is None, self.error

    def expected(self, app: str) -> dict:
        return self.orders[APPS[app]].expected_units()


@pytest.fixture
def placed(testdir):
    kafka = KafkaCluster(testdir, name="kafka", topics=[f"{topic}:4" for topic in TOPICS], clusters=[CLUSTER])
    nodes = None
    try:
        nodes = Nodes(testdir, kafka, settings=SETTINGS)
        yield nodes
    finally:
        if nodes is not None:
            nodes.terminate()
        kafka.terminate()


def tenant_with_apps(nodes: Nodes, apps: dict) -> str:
    """Tenant acme with `apps` ({name: topic}) deployed and started; its admin token."""
    created = expect(nodes.operator(1).post("/api/v1/tenants", json_body={"name": "acme", "topics": ["*"]}), 201).json()
    admin = created["admin_token"]["secret"]
    expect(nodes.operator(1).request("PUT", "/api/v1/tenants/acme/quota",
                                     json_body={"cpus": 32, "memory_bytes": 16 << 30, "max_apps": 100}), 200)
    for name, topic in apps.items():
        expect(nodes.client(1, admin).deploy(app_bundle(name, topic)), 201)
        expect(nodes.client(1, admin).action(name, "start"), 200)
    return admin


def live(nodes: Nodes) -> list:
    return [index for index, server in enumerate(nodes.servers, 1) if server.proc.poll() is None]


def placement(nodes: Nodes, admin: str, alive: list, apps) -> dict | None:
    """{app: node} once every app runs on exactly one of `alive`, else None."""
    running: dict = {app: [] for app in apps}
    for index in alive:
        answer = nodes.client(index, admin).get("/api/v1/apps")
        if answer.status != 200:
            return None
        for app in answer.json()["apps"]:
            # Each node describes every app; the one it names as its own, it runs.
            if app["name"] in running and app["state"] == "running" and app["node"] == f"node{index}":
                running[app["name"]].append(index)
    return {app: found[0] for app, found in running.items()} if all(len(f) == 1 for f in running.values()) else None


def grid_of(nodes: Nodes, admin: str, index: int, app: str) -> dict:
    answer = nodes.client(index, admin).grid(app, "product_sum")
    return answer.json()["rows"] if answer.status == 200 else {}


def all_exact(nodes: Nodes, admin: str, where: dict, feed: Feed, timeout: float = 90) -> float:
    started = time.monotonic()
    for app, index in where.items():
        wait_until(lambda app=app, index=index: grid_of(nodes, admin, index, app) == feed.expected(app), timeout,
                   f"{app} on node {index} is exact")
    return time.monotonic() - started


def reads_alike(nodes: Nodes, admin: str, apps, feed: Feed) -> None:
    """Every live node's REST read of every grid: the same rows, epoch and version."""
    def reads(app):
        answers = [nodes.client(index, admin).grid(app, "product_sum") for index in live(nodes)]
        return [(a.json()["rows"], a.json()["epoch"], a.json()["version"]) for a in answers if a.status == 200]
    for app in apps:
        wait_until(lambda app=app: (lambda seen: len(seen) == len(live(nodes)) and seen.count(seen[0]) == len(seen))(reads(app)),
                   30, f"every node reads {app} alike")
        assert reads(app)[0][0] == feed.expected(app)


def stderr(nodes: Nodes, index: int) -> str:
    return (nodes.testdir / f"node{index}" / f"node{index}.stderr").read_text(errors="replace")


def slots_gained(nodes: Nodes, index: int) -> int:
    return sum(int(n) for n in re.findall(r"this node holds (\d+) more slots", stderr(nodes, index)))


def changelog_claim_ids(bootstrap: str) -> set:
    """The app ids that have a claim in the changelog."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "aerogrid-it-changelog", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(f"_aerogrid.{CLUSTER}.changelog", p, 0) for p in range(64)])
        ids, quiet = set(), time.monotonic()
        while time.monotonic() - quiet < 2:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            quiet = time.monotonic()
            if b'"kind":"claim"' in message.value():
                ids.add(message.key().decode())
        return ids
    finally:
        consumer.close()


def test_a_killed_nodes_apps_move_to_the_others_with_exact_grids(placed, testdir):
    nodes = placed
    admin = tenant_with_apps(nodes, APPS)
    where, took = wait_until(lambda: placement(nodes, admin, [1, 2, 3], APPS), 120, "every app runs on exactly one node")
    spread = {index: sum(1 for node in where.values() if node == index) for index in (1, 2, 3)}
    log(f"24 apps placed {took:.1f} s after the last start: {spread} per node")
    feed = Feed(testdir, nodes.kafka.bootstrap)
    feed.wave(500)
    all_exact(nodes, admin, where, feed)

    victim = max(spread, key=lambda index: (spread[index], index))
    moved = sorted(app for app, index in where.items() if index == victim)
    survivors = [index for index in (1, 2, 3) if index != victim]
    # Watched from every node: the survivors serve the moved apps' grids from changelog
    # replicas, the victim from its own runners.
    streams = {index: StreamClient(nodes.servers[index - 1], admin) for index in (1, 2, 3)}
    before = {}
    for index, stream in streams.items():
        for app in moved:
            before[index, app] = stream.subscribe(app, app, "product_sum")["epoch"]
            stream.wait_rows(app, feed.expected(app), 30)

    feed.start()
    time.sleep(1)
    killed_at = time.monotonic()
    server = nodes.servers[victim - 1]
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    after, took = wait_until(lambda: placement(nodes, admin, survivors, APPS), 120, "every app runs on a surviving node")
    first_delta = None
    log(f"node {victim} killed with {len(moved)} apps: all ran on the survivors {took:.1f} s later")
    time.sleep(2)
    feed.finish()
    exact = all_exact(nodes, admin, after, feed)
    log(f"every grid exact {time.monotonic() - killed_at:.1f} s after the kill ({exact:.1f} s after the producers stopped)")

    # Clients on the survivors saw each moved app's new epoch as a snapshot, then its exact grid.
    for index in survivors:
        for app in moved:
            replica = streams[index].wait_rows(app, feed.expected(app), 30)
            assert replica.epoch != before[index, app] and replica.snapshots >= 2, (index, app, replica.epoch, replica.snapshots)
            assert not replica.problems, replica.problems
            for at, message in streams[index].of(app, kinds=("delta",)):
                if at > killed_at and message["epoch"] != before[index, app]:
                    first_delta = min(first_delta or at, at)
                    break
    if first_delta:
        log(f"first delta of a new epoch at a client on a survivor {first_delta - killed_at:.1f} s after the kill")
    # The victim's clients lost their connection; connected again to a survivor, they converge.
    assert streams[victim].wait_closed(10) is not None
    again = StreamClient(nodes.servers[survivors[0] - 1], admin)
    for app in moved:
        again.subscribe(app, app, "product_sum")
        again.wait_rows(app, feed.expected(app), 30)
    for stream in [*streams.values(), again]:
        stream.close()
    reads_alike(nodes, admin, APPS, feed)
    # Every node names the node that runs each app, in the API and in discovery's list.
    for index in survivors:
        listed = {app["name"]: app for app in expect(nodes.client(index, admin).get("/api/v1/apps"), 200).json()["apps"]}
        assert {name: listed[name]["node"] for name in APPS} == {name: f"node{after[name]}" for name in APPS}, index
        assert all(listed[name]["state"] == "running" and listed[name]["records"] > 0 for name in APPS), listed
        watcher = StreamClient(nodes.servers[index - 1], admin)
        watcher.send({"op": "watch_apps"})
        seen = watcher.wait_type("apps", 10)
        assert {app["name"]: app["node"] for app in seen["apps"]} == {name: f"node{after[name]}" for name in APPS}
        watcher.close()
    # An app's log reads the same on any node: forwarded to the node that runs it.
    app = moved[0]
    owner_lines = expect(nodes.client(after[app], admin).get(f"/api/v1/apps/{app}/logs?tail=50"), 200).json()["lines"]
    assert owner_lines, "the app's log is empty"
    other = next(index for index in survivors if index != after[app])
    assert expect(nodes.client(other, admin).get(f"/api/v1/apps/{app}/logs?tail=50"), 200).json()["lines"][:len(owner_lines)] == owner_lines

    # The killed node starts again and rejoins: some slots move back to it, grids stay exact.
    nodes.servers[victim - 1] = nodes.start(victim, port=server.port)
    feed.start()
    back, _ = wait_until(lambda: (lambda w: w if w and victim in w.values() else None)(placement(nodes, admin, [1, 2, 3], APPS)), 120,
                         f"node {victim} runs apps again")
    feed.finish()
    all_exact(nodes, admin, back, feed)
    log(f"node {victim} rejoined: it holds {slots_gained(nodes, victim)} of the 64 slots and runs "
        f"{sum(1 for n in back.values() if n == victim)} apps; {sum(1 for a in APPS if back[a] != after[a])} apps moved")

    # A deleted app made again under its name is a new app, with another id in the changelog.
    gone = "order1"
    expect(nodes.client(1, admin).delete(f"/api/v1/apps/{gone}"), 204)
    expect(nodes.client(1, admin).deploy(app_bundle(gone, "orders")), 201)
    expect(nodes.client(1, admin).action(gone, "start"), 200)
    again_where, _ = wait_until(lambda: placement(nodes, admin, [1, 2, 3], [gone]), 60, "the re-created app runs")
    all_exact(nodes, admin, again_where, feed)
    assert "aerogrid.rows=0" in [line for line in stderr(nodes, again_where[gone]).splitlines()
                                 if "aerogrid.app=order1" in line and "claimed the app" in line][-1]
    assert len(changelog_claim_ids(nodes.kafka.bootstrap)) == len(APPS) + 1


def test_a_paused_nodes_late_writes_are_fenced(placed, testdir):
    nodes = placed
    apps = dict(list(APPS.items())[:9])
    admin = tenant_with_apps(nodes, apps)
    where, _ = wait_until(lambda: placement(nodes, admin, [1, 2, 3], apps), 120, "every app runs on exactly one node")
    feed = Feed(testdir, nodes.kafka.bootstrap)
    feed.wave(300)
    all_exact(nodes, admin, where, feed)
    spread = {index: sum(1 for node in where.values() if node == index) for index in (1, 2, 3)}
    victim = max(spread, key=lambda index: (spread[index], index))
    others = [index for index in (1, 2, 3) if index != victim]

    feed.start()
    server = nodes.servers[victim - 1]
    os.kill(server.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        moved, took = wait_until(lambda: placement(nodes, admin, others, apps), 90, "the paused node's apps run on the others")
        log(f"node {victim} paused with {spread[victim]} apps: they ran on the others {took:.1f} s later")
        time.sleep(2)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    log(f"node {victim} resumed after {time.monotonic() - paused_at:.1f} s")
    # It notices it was away, stops its apps' writes, rejoins; nothing it wrote late counts.
    wait_until(lambda: "past the session timeout" in stderr(nodes, victim) or "were lost to other nodes" in stderr(nodes, victim), 30,
               f"node {victim} knows it lost its slots")
    final, _ = wait_until(lambda: placement(nodes, admin, [1, 2, 3], apps), 90, "every app runs on exactly one node again")
    time.sleep(2)
    feed.finish()
    all_exact(nodes, admin, final, feed)
    reads_alike(nodes, admin, apps, feed)


def test_scaling_from_three_to_five_nodes_spreads_the_slots(placed, testdir):
    nodes = placed
    admin = tenant_with_apps(nodes, APPS)
    where, _ = wait_until(lambda: placement(nodes, admin, [1, 2, 3], APPS), 120, "every app runs on exactly one node")
    feed = Feed(testdir, nodes.kafka.bootstrap)
    feed.start()
    nodes.servers.append(nodes.start(4))
    nodes.servers.append(nodes.start(5))
    wait_until(lambda: slots_gained(nodes, 4) > 0 and slots_gained(nodes, 5) > 0, 60, "nodes 4 and 5 hold slots")
    spread, _ = wait_until(lambda: placement(nodes, admin, [1, 2, 3, 4, 5], APPS), 120, "every app runs on exactly one of five nodes")
    time.sleep(2)
    feed.finish()
    all_exact(nodes, admin, spread, feed)
    per_node = {index: sum(1 for n in spread.values() if n == index) for index in range(1, 6)}
    log(f"five nodes: apps per node {per_node}; slots gained by nodes 4 and 5: {slots_gained(nodes, 4)}, {slots_gained(nodes, 5)}; "
        f"{sum(1 for a in APPS if spread[a] != where[a])} apps moved")


def test_a_quiet_app_beside_a_busy_one_still_moves_exactly(testdir):
    """One slot for everything: a busy app writes its partition of the changelog past three
    times what the embedded cluster keeps, while a quiet app in the same slot idles. The
    quiet app's snapshots keep up (each half the retention), so after its node dies it
    restores exactly on another."""
    kafka = KafkaCluster(testdir, name="kafka", topics=["orders:4", "quiet:1"], clusters=[CLUSTER], slots=1)
    nodes = Nodes(testdir, kafka, count=2, settings={**SETTINGS, "slots": 1})
    try:
        created = expect(nodes.operator(1).post("/api/v1/tenants", json_body={"name": "acme", "topics": ["*"]}), 201).json()
        admin = created["admin_token"]["secret"]
        busy_code = (ORDERSAPP / "app.py").read_text().replace("'ordersapp'", "'busy'") + BUSY_GRID
        expect(nodes.client(1, admin).deploy(bundle("busy", busy_code)), 201)
        expect(nodes.client(1, admin).deploy(app_bundle("quiet", "quiet")), 201)
        for name in ("busy", "quiet"):
            expect(nodes.client(1, admin).action(name, "start"), 200)
        where, _ = wait_until(lambda: placement(nodes, admin, [1, 2], ["busy", "quiet"]), 60, "both apps run")
        assert where["busy"] == where["quiet"], where
        quiet = Orders(testdir, seed=7)
        path = quiet.write_wave(200)
        subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", "quiet", "-K", "|", "-l", str(path)], check=True, timeout=60)
        wait_until(lambda: grid_of(nodes, admin, where["quiet"], "quiet") == quiet.expected_units(), 60, "the quiet app is exact")

        busy = Orders(testdir, seed=8)
        for _ in range(10):
            path = busy.write_wave(10_000)
            subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", "orders", "-K", "|", "-l", str(path)], check=True, timeout=120)
        wait_until(lambda: grid_of(nodes, admin, where["busy"], "busy", ) == busy.expected_units(), 180, "the busy app is exact")
        consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "aerogrid-it-marks"})
        low, high = consumer.get_watermark_offsets(TopicPartition(f"_aerogrid.{CLUSTER}.changelog", 0), timeout=10, cached=False)
        consumer.close()
        log(f"the changelog's one partition: offsets {low}..{high}")
        assert low > 0, "the changelog kept everything: not past its retention"

        victim = where["quiet"]
        os.kill(nodes.servers[victim - 1].pid, signal.SIGKILL)
        nodes.servers[victim - 1].proc.wait(timeout=10)
        other = 3 - victim
        moved, took = wait_until(lambda: placement(nodes, admin, [other], ["busy", "quiet"]), 90, "both apps run on the other node")
        log(f"both apps restored on node {other} {took:.1f} s after the kill")
        assert grid_of(nodes, admin, other, "quiet") == quiet.expected_units()
        # From its snapshot, not by reading its topic again: the claims are long gone.
        restored = [line for line in stderr(nodes, other).splitlines() if "aerogrid.app=quiet" in line and "claimed the app" in line][-1]
        assert "aerogrid.rows=0 " not in restored, restored
        wait_until(lambda: grid_of(nodes, admin, other, "busy") == busy.expected_units(), 60, "the busy app is exact after the move")

        # Stopped, the quiet app snapshots no more: once the busy app has written past the
        # retention, its grids are gone from the changelog, and a start says so instead of
        # starting from nothing (the out-of-range policy of `aerogrid serve`: fail).
        expect(nodes.client(other, admin).action("quiet", "stop"), 200)
        for _ in range(10):
            path = busy.write_wave(10_000)
            subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", "orders", "-K", "|", "-l", str(path)], check=True, timeout=120)
        wait_until(lambda: grid_of(nodes, admin, other, "busy") == busy.expected_units(), 180, "the busy app is exact again")
        expect(nodes.client(other, admin).action("quiet", "start"), 200)
        failed, _ = wait_until(lambda: (lambda app: app if app["last_crash"] else None)(nodes.client(other, admin).app("quiet").json()), 60,
                               "the quiet app's start fails")
        assert "no longer holds the app's grids" in failed["last_crash"] and "delete the app and deploy it again" in failed["last_crash"], failed
    finally:
        nodes.terminate()
        kafka.terminate()


# A second grid for the busy app: the last order of 3,000 slots, each row about 300 bytes,
# so each batch writes up to about 900 KB to the changelog while its grids stay under a
# quarter of what the embedded cluster keeps.
BUSY_GRID = """
recent = app.Grid('recent', columns=['product', 'padding'])

@app.stream(orders_topic)
async def keep_recent(orders):
    async for order_id, order in orders.items():
        recent[int(order_id.split('-')[1]) % 3000] = {'product': order.product, 'padding': 'x' * 250}
"""
