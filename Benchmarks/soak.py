#!/usr/bin/env python3
"""One hostile tenant against one well-behaved one, on one server (`make bench-soak`).

The good tenant runs the orders app with 50 stream clients watching its grid while orders
arrive at a steady rate, with a probe order every 50 ms whose arrival each client times.
Each run has two windows of the same length: the good tenant alone, then with a hostile
tenant doing, all at once, what a review found could take the supervisor down:

- an app sending 8 MiB log frames and writing 8 MiB lines (one grapheme cluster each);
- an app that takes a batch, never confirms it and sends 8 MiB grid-updates for it;
- anonymous connections held with half-sent headers, from ten client networks, reopened as
  the server closes them, and request bodies trickled a byte at a time;
- 20 connections × 100 subscriptions with their own column lists on an app that does not run;
- 10 connections sending pings with 60 KiB ids and never reading, reconnecting when closed.

It reports, per window, the good clients' latency from a probe order's produce to the first
delta showing it (p50, p99), the server's RSS (max) and CPU, and at the end whether the good
tenant's grid
equals the orders produced. The result is the median over the runs of the p99 ratio
(hostile / alone); it fails (exit 1) when the server went down, the grid is not exact, the
RSS passed its bound, or the median ratio is above 1.5.

    PYTHONPATH=Tests python3 Benchmarks/soak.py --seconds 60 --runs 3 [--json FILE]  (root; after `swift build -c release`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
# Before support.harness reads it: the benchmark measures the release build.
os.environ.setdefault("AEROGRID_BIN", str(REPO / ".build" / "release" / "aerogrid"))

import bench_report  # noqa: E402

from support.harness import TOPIC, KafkaCluster, Managed, cpu_seconds, log, percentile, raw_app_code, rss_bytes  # noqa: E402
from support.server import Server, bundle, expect, new_operator_token, orders_bundle, poll, wait_state  # noqa: E402

GRID = "product_sum"
PROBE = "Probe"
RSS_BOUND = 512 << 20
RATIO_BOUND = 1.5

HOARD = r'''
big = 'x' * (8 << 20)
i = 0
while True:
    send(2, json.dumps({"grid": "g", "key": "k%d" % i, "row": {"c": big}}).encode())
    send(0x20, b'')
    i += 1
    time.sleep(0.2)
'''

SHOUT = r'''
import sys
grapheme = 'a' + '\u0301' * (4 << 20)
line = json.dumps({"level": "warning", "message": grapheme}, ensure_ascii=False).encode()
while True:
    for _ in range(5):
        send(5, line)
        send(0x20, b'')
        time.sleep(0.2)
    sys.stdout.write(grapheme + '\n')
    sys.stdout.flush()
'''


def raw_app(name: str, body: str) -> bytes:
    return bundle(name, raw_app_code(name, body))


# --------------------------------------------------------------------------------------------
# Helpers, each run as a process of its own: `soak.py watch|produce|hostile …`


def run_watch(url: str, token: str, app: str, clients: int, out: str) -> None:
    """`clients` connections, one subscription each, until SIGTERM; writes per client the
    (arrival time, probe count) of every message that carried the probe, and the rows."""
    import websockets

    stop = asyncio.Event()

    async def client(index: int, seen: list, rows: dict) -> None:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None,
                                      ping_interval=None) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": "w", "app": app, "grid": GRID}))
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                received = time.monotonic()
                message = json.loads(text)
                if message.get("type") == "snapshot":
                    rows.clear()
                if message.get("type") in ("snapshot", "delta"):
                    for key, cells in message["rows"]:
                        if cells is None:
                            rows.pop(key, None)
                        else:
                            rows.setdefault(key, {}).update(cells)
                        if key == PROBE and cells and "units_sold" in cells:
                            seen.append((received, cells["units_sold"]))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        seen = [[] for _ in range(clients)]
        rows = [{} for _ in range(clients)]
        tasks = [asyncio.create_task(client(index, seen[index], rows[index])) for index in range(clients)]
        print("watching", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        Path(out).write_text(json.dumps({"seen": seen, "rows": rows}))

    asyncio.run(main())


def run_hostile(host: str, port: int, token: str, stopped_app: str) -> None:
    """Anonymous connections, idle subscriptions and unread replies, until SIGTERM."""
    import websockets

    stop = asyncio.Event()
    url = f"ws://{host}:{port}/api/v1/stream"
    counts = {"held": 0, "reopened": 0, "subscriptions": 0, "pings": 0, "closed": 0}

    async def half_sent_header(source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
                writer.write(b"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bear")
                await writer.drain()
                counts["held"] += 1
                await reader.read()  # until the server closes it
                writer.close()
                counts["reopened"] += 1
            except OSError:
                await asyncio.sleep(0.2)

    async def trickled_body(source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
                writer.write(b"POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                             + b"\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"P")
                    await writer.drain()
                    await asyncio.sleep(1)
                writer.close()
            except OSError:
                await asyncio.sleep(0.2)

    async def idle_subscriber(number: int) -> None:
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:
                for index in range(100):
                    await ws.send(json.dumps({"op": "subscribe", "id": f"s{index}", "app": stopped_app, "grid": "g",
                                              "max_rate": 50, "columns": ["c", f"x{number}-{index}"]}))
                    counts["subscriptions"] += 1
                while not stop.is_set():  # reads what comes (the answers), and waits
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        pass
        except Exception:  # noqa: BLE001 - the server may refuse past the tenant's quota
            pass

    async def never_reads() -> None:
        long_id = "x" * (60 << 10)
        while not stop.is_set():
            try:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
                async with websockets.connect(url, sock=sock, additional_headers={"Authorization": f"Bearer {token}"},
                                              max_queue=1, max_size=None, ping_interval=None) as ws:
                    while not stop.is_set():
                        await ws.send(json.dumps({"op": "ping", "id": long_id}))
                        counts["pings"] += 1
                        await asyncio.sleep(0.01)
            except Exception:  # noqa: BLE001 - closed for not reading: again
                counts["closed"] += 1
                await asyncio.sleep(0.2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # Ten client networks (the server counts an IPv4 /24 as one), 64 connections each.
        sources = [f"127.0.{index}.1" for index in range(10, 20)]
        tasks = [asyncio.create_task(half_sent_header(source)) for source in sources for _ in range(64)]
        tasks += [asyncio.create_task(trickled_body(source)) for source in sources[:2] for _ in range(4)]
        tasks += [asyncio.create_task(idle_subscriber(number)) for number in range(20)]
        tasks += [asyncio.create_task(never_reads()) for _ in range(10)]
        print("hostile", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        # A connection's close handshake can hang on a socket that is never read: the counts
        # are what the run needs, so they go out after a bounded wait, and the process ends
        # without tearing the loop down connection by connection.
        await asyncio.wait(tasks, timeout=5)
        print(json.dumps(counts), flush=True)
        os._exit(0)

    asyncio.run(main())


class Helper(Managed):
    """This file (or, with `module`, that module: `python3 -m MODULE`) run as a helper."""

    def __init__(self, name: str, args: list, directory: Path, ready: str, module: str | None = None) -> None:
        argv = [sys.executable, "-m", module] if module else [sys.executable, str(HERE)]
        super().__init__(name, [*argv, *map(str, args)], directory, cwd=REPO / "Tests" if module else REPO)
        self.ready = ready

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.ready in (self.proc.stdout.readline() or b"").decode():
                return
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.name} did not start: {self.stderr_tail()}")

    def finish(self, timeout: float = 60.0) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            raise RuntimeError(f"the {self.name} helper did not stop within {timeout:.0f} s of SIGTERM: {self.stderr_tail()}") from None


# --------------------------------------------------------------------------------------------
# One run


def window(seen: list, probes: list, begin: float, end: float) -> list:
    """Latencies of the probes produced in [begin, end), as each client saw them."""
    produced = dict(probes)
    latencies = []
    for client in seen:
        best = 0
        for received, count in client:
            for number in range(best + 1, count + 1):
                at = produced.get(number)
                if at is not None and begin <= at < end:
                    latencies.append(received - at)
            best = max(best, count)
    return latencies


def one_run(directory: Path, seconds: float, clients: int, rate: int) -> dict:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    cluster = KafkaCluster(directory, name="kafka-soak")
    server = None
    helpers: list = []
    samples: list = []
    sampling = threading.Event()
    try:
        server = Server(directory, cluster.bootstrap, operator_token=new_operator_token())
        server.wait_ready()
        pid = server.pid

        def tenant(prefix: str) -> tuple:
            name = f"{prefix}-{secrets.token_hex(3)}"
            created = expect(server.operator.post("/api/v1/tenants", json_body={"name": name, "topics": [TOPIC, f"{name}.*"]}),
                             201).json()
            return name, created["admin_token"]["secret"]

        good_name, good_token = tenant("good")
        good = server.client(good_token)
        expect(good.deploy(orders_bundle("ordersapp")), 201)
        expect(good.action("ordersapp", "start"), 200)
        wait_state(good, "ordersapp", "running")
        bad_name, bad_token = tenant("hostile")
        bad = server.client(bad_token)
        for name, body in (("hoarder", HOARD), ("shouter", SHOUT), ("idle", "time.sleep(1e9)")):
            expect(bad.deploy(raw_app(name, body)), 201)

        def sample() -> None:
            while not sampling.is_set():
                try:
                    samples.append((time.monotonic(), rss_bytes(pid), cpu_seconds(pid)))
                except OSError:
                    return
                sampling.wait(0.25)
        threading.Thread(target=sample, daemon=True).start()

        url = f"ws://{server.host}:{server.port}/api/v1/stream"
        watcher = Helper("watch", ["watch", url, good_token, "ordersapp", clients, directory / "watch.json"], directory, "watching")
        helpers.append(watcher)
        watcher.wait_ready()
        # The stream tests' producer: orders at `rate`, a probe order every 50 ms.
        producer = Helper("produce", ["produce", cluster.bootstrap, rate, directory / "produced.json"], directory, "producing",
                          module="support.stream_load")
        helpers.append(producer)
        producer.wait_ready()
        time.sleep(5)  # warm up
        alone = (time.monotonic(), time.monotonic() + seconds)
        time.sleep(seconds)
        # The hostile tenant, all at once.
        for name in ("hoarder", "shouter"):
            expect(bad.action(name, "start"), 200)
        hostile = Helper("hostile", ["hostile", server.host, server.port, bad_token, "idle"], directory, "hostile")
        helpers.append(hostile)
        hostile.wait_ready()
        attacked = (time.monotonic(), time.monotonic() + seconds)
        time.sleep(seconds)
        alive = server.alive()
        hostile.finish()
        counts = hostile.proc.stdout.read().decode().strip().splitlines()
        for name in ("hoarder", "shouter"):
            bad.action(name, "stop")
        producer.finish()
        produced = json.loads((directory / "produced.json").read_text())
        expected = {product: {"units_sold": units} for product, units in produced["totals"].items()}
        exact = poll(lambda: good.grid("ordersapp", GRID), lambda a: a.status == 200 and a.json()["rows"] == expected, 120,
                     "the good tenant's grid").json()["rows"] == expected
        time.sleep(2)
        watcher.finish()
        sampling.set()
        watched = json.loads((directory / "watch.json").read_text())
        clients_exact = sum(1 for rows in watched["rows"] if rows == expected)
        hoarder = expect(bad.app("hoarder"), 200).json()

        def stats(span: tuple) -> dict:
            latencies = window(watched["seen"], produced["probes"], *span)
            # A window with no probe seen would make the ratio NaN, which no bound catches.
            if not latencies:
                raise SystemExit(f"soak: no probe was seen by the clients between {span[0]:.0f} and {span[1]:.0f} s")
            inside = [s for s in samples if span[0] <= s[0] <= span[1]]
            return {"p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
                    "observations": len(latencies), "rss_max_mib": max(s[1] for s in inside) / 2**20,
                    "server_cpus": (inside[-1][2] - inside[0][2]) / (inside[-1][0] - inside[0][0])}
        result = {"alone": stats(alone), "hostile": stats(attacked), "alive": alive, "grid_exact": exact,
                  "clients_exact": f"{clients_exact}/{clients}", "rss_max_mib": max(s[1] for s in samples) / 2**20,
                  "hostile_counts": counts[-1] if counts else "", "hoarder": f"{hoarder['state']} ({hoarder['crash_reason']}, "
                  f"{hoarder['restarts']} restarts)"}
        result["ratio"] = result["hostile"]["p99_ms"] / result["alone"]["p99_ms"]
        return result
    finally:
        sampling.set()
        for helper in helpers:
            if helper.alive():
                helper.signal(signal.SIGKILL)
        if server is not None and server.alive():
            server.stop()
        cluster.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    watch = commands.add_parser("watch")
    for name in ("url", "token", "app"):
        watch.add_argument(name)
    watch.add_argument("clients", type=int)
    watch.add_argument("out")
    hostile = commands.add_parser("hostile")
    hostile.add_argument("host")
    hostile.add_argument("port", type=int)
    hostile.add_argument("token")
    hostile.add_argument("app")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each window (alone, hostile)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=int, default=500, help="orders a second for the good tenant")
    parser.add_argument("--directory", default="/tmp/aerogrid-soak")
    parser.add_argument("--json", metavar="FILE", help="also write the report (every run of every measure) to FILE")
    args = parser.parse_args()
    if args.command == "watch":
        run_watch(args.url, args.token, args.app, args.clients, args.out)
        return 0
    if args.command == "hostile":
        run_hostile(args.host, args.port, args.token, args.app)
        return 0
    if os.geteuid() != 0:
        print("the soak needs root (the server makes namespaces and cgroups)", file=sys.stderr)
        return 2
    results = []
    for run in range(args.runs):
        directory = Path(args.directory) / f"run-{run + 1}-{secrets.token_hex(3)}"
        try:
            result = one_run(directory, args.seconds, args.clients, args.rate)
        except (RuntimeError, SystemExit) as error:
            print(f"FAILED: run {run + 1}: {error}", file=sys.stderr)
            return 1
        results.append(result)
        log(f"run {run + 1}: {json.dumps(result)}")
    ratios = [r["ratio"] for r in results]
    median = statistics.median(ratios)
    rss = max(r["rss_max_mib"] for r in results)
    print(f"\nsoak: {args.runs} runs of {args.seconds:.0f} s alone + {args.seconds:.0f} s with the hostile tenant, "
          f"{args.clients} clients, {args.rate} orders/s")
    for index, r in enumerate(results, 1):
        print(f"  run {index}: p99 alone {r['alone']['p99_ms']:.0f} ms, hostile {r['hostile']['p99_ms']:.0f} ms "
              f"(×{r['ratio']:.2f}); p50 {r['alone']['p50_ms']:.0f} / {r['hostile']['p50_ms']:.0f} ms; RSS max "
              f"{r['alone']['rss_max_mib']:.0f} / {r['hostile']['rss_max_mib']:.0f} MiB; server CPUs "
              f"{r['alone']['server_cpus']:.2f} / {r['hostile']['server_cpus']:.2f}; grid exact {r['grid_exact']}, "
              f"clients exact {r['clients_exact']}; hoarder {r['hoarder']}; {r['hostile_counts']}")
    print(f"  median p99 ratio ×{median:.2f} (bound ×{RATIO_BOUND}); RSS max {rss:.0f} MiB (bound {RSS_BOUND >> 20} MiB)")
    problems = []
    if not all(r["alive"] for r in results):
        problems.append("the server went down")
    if not all(r["grid_exact"] for r in results):
        problems.append("the good tenant's grid was not exact")
    if not all(r["clients_exact"] == f"{args.clients}/{args.clients}" for r in results):
        problems.append("a good client's copy of the grid was not exact")
    if rss > RSS_BOUND >> 20:
        problems.append(f"the server's RSS reached {rss:.0f} MiB")
    if median > RATIO_BOUND:
        problems.append(f"the good clients' p99 was ×{median:.2f} with the hostile tenant")
    if args.json:
        def runs(window: str, key: str) -> list[float]:
            return [r[window][key] for r in results]
        measures = [
            bench_report.measure("good clients' latency p99, alone", "ms", runs("alone", "p99_ms")),
            bench_report.measure("good clients' latency p99, with the hostile tenant", "ms", runs("hostile", "p99_ms"),
                                 baseline="good clients' latency p99, alone"),
            bench_report.measure("good clients' p99, hostile ÷ alone", "×", ratios),
            bench_report.measure("good clients' latency p50, alone", "ms", runs("alone", "p50_ms")),
            bench_report.measure("good clients' latency p50, with the hostile tenant", "ms", runs("hostile", "p50_ms"),
                                 baseline="good clients' latency p50, alone"),
            bench_report.measure("server RSS max, alone", "MiB", runs("alone", "rss_max_mib")),
            bench_report.measure("server RSS max, with the hostile tenant", "MiB", runs("hostile", "rss_max_mib"),
                                 baseline="server RSS max, alone"),
            bench_report.measure("server CPU, alone", "cores", runs("alone", "server_cpus")),
            bench_report.measure("server CPU, with the hostile tenant", "cores", runs("hostile", "server_cpus"),
                                 baseline="server CPU, alone"),
        ]
        bench_report.write(bench_report.report(
            "soak", "make bench-soak",
            {"seconds": args.seconds, "runs": args.runs, "clients": args.clients, "orders per second": args.rate},
            measures, problems, runs=results), args.json)
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
