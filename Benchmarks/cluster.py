#!/usr/bin/env python3
"""What running apps on a cluster costs (`make bench-cluster`): release builds of
`aerogrid serve` on one embedded Kafka, three parts per run.

- **Failover.** Three nodes, six copies of the seed app, orders arriving throughout; the
  node with the most apps is killed (SIGKILL). Measured: from the kill to each of its apps
  running on a survivor (as the survivors' API says), and to the first delta of the app's
  new epoch at a client subscribed on a survivor. Fails when a grid is not exact after.
- **The changelog's cost.** The seed app reads the same 400,000 orders as a single node
  (grids checkpointed to SQLite) and as a cluster of one (every batch to the changelog),
  side by side in each run. Measured: records applied per second from its first record to
  its last; the result is the ratio, cluster / single. Fails when a grid is not exact.
- **Replica lag.** Two nodes; an app changing one cell per record at 10,000 records a second
  for 15 s. A client subscribes on the node that runs it, another on the other node (a
  replica of the changelog), both at 50 messages a second. Measured: for each version the
  replica's client saw, how much later it saw it than the owner's client saw that version or
  a later one (p50, p99). Fails when the two clients' grids differ at the end.

    PYTHONPATH=Tests python3 Benchmarks/cluster.py --runs 3 [--json FILE]  (root; after `swift build -c release`)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Before support.harness reads it: the benchmark measures the release build.
os.environ.setdefault("AEROGRID_BIN", str(REPO / ".build" / "release" / "aerogrid"))

import bench_report  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from support.harness import ORDERSAPP, KafkaCluster, Orders, kcat_produce, log, percentile  # noqa: E402
from support.server import Server, bundle, expect, free_port, new_operator_token  # noqa: E402
from support.stream import StreamClient  # noqa: E402

CLUSTER = "bench"
SETTINGS = {"session_timeout": 6, "heartbeat_interval": 1}

CELLS_APP = """
import aerogrid

app = aerogrid.App('cells', broker=BROKER_URI)

class Tick(aerogrid.Record):
    n: int

ticks = app.topic('ticks', key_type=str, value_type=Tick)
cells = app.Grid('cells', columns=['n'])

@app.stream(ticks)
async def keep(items):
    async for key, tick in items.items():
        cells[key] = {'n': tick.n}
"""


def node(testdir: Path, kafka: KafkaCluster, token: str, index: int, cluster: bool = True) -> Server:
    directory = testdir / f"node{index}"
    directory.mkdir(exist_ok=True)
    port = free_port()
    tables = {"cluster": {"name": CLUSTER, "node_id": f"node{index}", "advertised_url": f"http://127.0.0.1:{port}", **SETTINGS}} if cluster else None
    return Server(directory, kafka.bootstrap, name=f"node{index}", operator_token=token, port=port, data_dir=directory / "data",
                  tables=tables)


def tenant(server: Server, token: str) -> str:
    created = expect(server.client(token).post("/api/v1/tenants", json_body={"name": "bench", "topics": ["*"]}), 201).json()
    expect(server.client(token).request("PUT", "/api/v1/tenants/bench/quota", json_body={"cpus": 16, "memory_bytes": 8 << 30}), 200)
    return created["admin_token"]["secret"]


def wait(check, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"not within {timeout} s: {what}")


def running_on(servers: dict, admin: str) -> dict:
    """{app: node index} as each node says of the apps it runs itself."""
    where = {}
    for index, server in servers.items():
        answer = server.client(admin).get("/api/v1/apps")
        if answer.status != 200:
            continue
        for app in answer.json()["apps"]:
            if app["state"] == "running" and app["node"] == f"node{index}":
                where[app["name"]] = index
    return where


def failover(testdir: Path) -> dict:
    kafka = KafkaCluster(testdir, name="kafka", topics=["orders:4"], clusters=[CLUSTER])
    token = new_operator_token()
    servers = {}
    try:
        servers = {index: node(testdir, kafka, token, index) for index in (1, 2, 3)}
        admin = tenant(servers[1], token)
        apps = [f"sum{n}" for n in range(1, 7)]
        code = (ORDERSAPP / "app.py").read_text()
        for app in apps:
            expect(servers[1].client(admin).deploy(bundle(app, code.replace("'ordersapp'", repr(app)))), 201)
            expect(servers[1].client(admin).action(app, "start"), 200)
        where = wait(lambda: (lambda w: w if len(w) == len(apps) else None)(running_on(servers, admin)), 120, "every app runs")
        spread = {index: [a for a, n in where.items() if n == index] for index in servers}
        victim = max(spread, key=lambda index: (len(spread[index]), index))
        survivors = {index: server for index, server in servers.items() if index != victim}
        watcher = StreamClient(next(iter(survivors.values())), admin)
        epochs = {app: watcher.subscribe(app, app, "product_sum")["epoch"] for app in spread[victim]}
        orders = Orders(testdir, seed=1)
        stop = threading.Event()

        def feed():
            while not stop.is_set():
                kcat_produce(kafka.bootstrap, orders.write_wave(50))
                stop.wait(0.1)
        producer = threading.Thread(target=feed, daemon=True)
        producer.start()
        time.sleep(2)
        killed = time.monotonic()
        os.kill(servers[victim].pid, signal.SIGKILL)
        servers[victim].proc.wait(timeout=10)
        moved_at: dict = {}
        while len(moved_at) < len(spread[victim]) and time.monotonic() - killed < 120:
            now = running_on(survivors, admin)
            for app in spread[victim]:
                if app in now and app not in moved_at:
                    moved_at[app] = time.monotonic() - killed
            time.sleep(0.05)
        time.sleep(2)
        stop.set()
        producer.join(30)
        first_delta = []
        for app in spread[victim]:
            watcher.wait_rows(app, orders.expected_units(), 60)
            times = [at for at, message in watcher.of(app, kinds=("delta",)) if at > killed and message["epoch"] != epochs[app]]
            first_delta.append(min(times) - killed if times else float("nan"))
        watcher.close()
        if len(moved_at) < len(spread[victim]):
            raise RuntimeError(f"apps never ran elsewhere: {sorted(set(spread[victim]) - set(moved_at))}")
        # Each survivor logs every claim with how long its restore from the changelog took.
        restores = []
        for index in survivors:
            for line in (testdir / f"node{index}" / f"node{index}.stderr").read_text(errors="replace").splitlines():
                found = re.search(r"aerogrid\.app=(\S+) .*aerogrid\.restore=([0-9.]+) seconds", line)
                if found and found.group(1) in spread[victim] and "claimed the app" in line:
                    restores.append(float(found.group(2)))
        log(f"failover: {len(moved_at)} apps moved; running elsewhere after {sorted(round(v, 1) for v in moved_at.values())} s; "
            f"first delta after {sorted(round(v, 1) for v in first_delta)} s; restores took {sorted(round(v, 2) for v in restores)} s")
        return {"running": max(moved_at.values()), "first_delta": max(first_delta), "apps": len(moved_at),
                "restore": max(restores) if restores else float("nan")}
    finally:
        for server in servers.values():
            if server.proc.poll() is None:
                server.terminate()
        kafka.terminate()


def changelog_cost(testdir: Path, records: int) -> dict:
    kafka = KafkaCluster(testdir, name="kafka", topics=["orders:8"], clusters=[CLUSTER])
    token = new_operator_token()
    try:
        orders = Orders(testdir, seed=2)
        for _ in range(records // 50_000):
            kcat_produce(kafka.bootstrap, orders.write_wave(50_000), timeout=120)
        rates = {}
        for label, cluster in (("single", False), ("cluster", True)):
            (testdir / label).mkdir(exist_ok=True)
            server = node(testdir / label, kafka, token, 1, cluster=cluster)
            try:
                admin = tenant(server, token)
                code = (ORDERSAPP / "app.py").read_text()
                expect(server.client(admin).deploy(bundle("ordersapp", code)), 201)
                expect(server.client(admin).action("ordersapp", "start"), 200)
                samples = []
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    answer = server.client(admin).app("ordersapp")
                    applied = answer.json()["records"] if answer.status == 200 else 0
                    if applied:
                        samples.append((time.monotonic(), applied))
                    if applied >= records:
                        break
                    time.sleep(0.02)
                (t0, r0), (t1, r1) = samples[0], samples[-1]
                if r1 < records:
                    raise RuntimeError(f"{label}: {r1} of {records} records applied in 300 s")
                grid = expect(server.client(admin).grid("ordersapp", "product_sum"), 200).json()["rows"]
                if grid != orders.expected_units():
                    raise RuntimeError(f"{label}: the grid is not exact")
                rates[label] = (r1 - r0) / (t1 - t0)
            finally:
                server.terminate()
        log(f"changelog cost: {rates['single']:.0f} records/s on a single node, {rates['cluster']:.0f} as a cluster of one")
        return rates
    finally:
        kafka.terminate()


def replica_lag(testdir: Path, rate: int, seconds: float) -> dict:
    kafka = KafkaCluster(testdir, name="kafka", topics=["ticks:4"], clusters=[CLUSTER])
    token = new_operator_token()
    servers = {}
    try:
        servers = {index: node(testdir, kafka, token, index) for index in (1, 2)}
        admin = tenant(servers[1], token)
        expect(servers[1].client(admin).deploy(bundle("cells", CELLS_APP)), 201)
        expect(servers[1].client(admin).action("cells", "start"), 200)
        owner = wait(lambda: running_on(servers, admin).get("cells"), 60, "the app runs")
        other = 3 - owner
        near, far = StreamClient(servers[owner], admin), StreamClient(servers[other], admin)
        near.subscribe("c", "cells", "cells", max_rate=50)
        far.subscribe("c", "cells", "cells", max_rate=50)
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
        started = time.monotonic()
        sent = 0
        expected: dict = {}
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                key = f"k{sent % 1000}"
                producer.produce("ticks", key=key, value=json.dumps({"n": sent}))
                expected[key] = {"n": sent}
                sent += 1
            producer.poll(0)
            time.sleep(0.005)
        producer.flush(30)
        near.wait_rows("c", expected, 60)
        far.wait_rows("c", expected, 60)
        seen_near = [(at, m["version"]) for at, m in near.of("c") if at >= started]
        lags = []
        for at, message in far.of("c"):
            if at < started:
                continue
            earlier = [t for t, version in seen_near if version >= message["version"]]
            if earlier:
                lags.append((at - min(earlier)) * 1000)
        near.close()
        far.close()
        log(f"replica lag: {len(lags)} versions; p50 {percentile(lags, 0.5):.0f} ms, p99 {percentile(lags, 0.99):.0f} ms "
            f"({sent} records in {seconds:.0f} s)")
        return {"p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99), "records": sent}
    finally:
        for server in servers.values():
            server.terminate()
        kafka.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=400_000, help="orders for the changelog's cost")
    parser.add_argument("--rate", type=int, default=10_000, help="cell changes a second for the replica lag")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--directory", default="/tmp/aerogrid-cluster-bench")
    parser.add_argument("--json", metavar="FILE", help="also write the report (every run of every measure) to FILE")
    args = parser.parse_args()
    root = Path(args.directory)
    results: dict = {"failover": [], "cost": [], "lag": []}
    failures: list = []
    for run in range(args.runs):
        for part, measure in (("failover", lambda d: failover(d)), ("cost", lambda d: changelog_cost(d, args.records)),
                              ("lag", lambda d: replica_lag(d, args.rate, args.seconds))):
            directory = root / f"run{run + 1}-{part}"
            directory.mkdir(parents=True, exist_ok=True)
            try:
                results[part].append(measure(directory))
            except Exception as error:  # noqa: BLE001 - a failed run fails the benchmark, named
                failures.append(f"run {run + 1}, {part}: {error}")
                log(f"FAILED run {run + 1}, {part}: {error}")
    measures = []
    if results["failover"]:
        measures.append(bench_report.measure("failover: kill to every app running elsewhere", "s", [r["running"] for r in results["failover"]]))
        measures.append(bench_report.measure("failover: kill to the first delta of the new epoch at a client on another node", "s",
                                             [r["first_delta"] for r in results["failover"]]))
        measures.append(bench_report.measure("failover: the longest restore from the changelog (claim to grids)", "s",
                                             [r["restore"] for r in results["failover"]]))
    if results["cost"]:
        measures.append(bench_report.measure("seed app, single node (checkpoints)", "records/s", [r["single"] for r in results["cost"]]))
        measures.append(bench_report.measure("seed app, cluster of one (changelog)", "records/s", [r["cluster"] for r in results["cost"]],
                                             baseline="seed app, single node (checkpoints)"))
        measures.append(bench_report.measure("changelog / checkpoints throughput", "ratio", [r["cluster"] / r["single"] for r in results["cost"]]))
    if results["lag"]:
        measures.append(bench_report.measure(f"replica lag p50 at {args.rate} cell changes/s", "ms", [r["p50"] for r in results["lag"]]))
        measures.append(bench_report.measure(f"replica lag p99 at {args.rate} cell changes/s", "ms", [r["p99"] for r in results["lag"]]))
    for entry in measures:
        print(f"{entry['name']}: median {entry['median']:.2f} {entry['unit']} (min {entry['min']:.2f}, max {entry['max']:.2f})")
    document = bench_report.report(
        "cluster", "make bench-cluster", {"runs": args.runs, "records": args.records, "rate": args.rate, "seconds": args.seconds,
                                          "session_timeout": SETTINGS["session_timeout"]}, measures, failures)
    if args.json:
        bench_report.write(document, args.json)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
