"""Load on the stream from processes of their own, so that one can be stopped (SIGSTOP) while
the others go on: `python3 -m support.stream_load produce|watch|frozen …` (see `main`), and
`Program`, which starts one from a test.

- produce: orders at a steady rate, with a probe order every PROBE_INTERVAL whose count
  dates each change of the grid;
- watch: one subscription, every message noted with its arrival time and the probe's count;
- frozen: many subscriptions on one connection, the replicas written to a file as they change.

Each runs until SIGTERM, then writes its results as JSON and exits 0.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .harness import PRODUCTS, TOPIC
from .stream import Replica

TESTS = Path(__file__).resolve().parents[1]  # the directory `support` is imported from
PROBE = "Probe"  # a product of its own, one unit every PROBE_INTERVAL: its count dates each change
PROBE_INTERVAL = 0.05


class Program:
    """One of the programs of this module in its own process, with its stdout lines collected
    by a thread."""

    def __init__(self, name: str, args: list, directory: Path) -> None:
        self.name = name
        self.stderr_path = directory / f"{name}.stderr"
        self.proc = subprocess.Popen([sys.executable, "-m", "support.stream_load", *map(str, args)], cwd=TESTS,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "wb"), text=True)
        self.lines: list = []
        self.condition = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.condition:
                self.lines.append(line.strip())
                self.condition.notify_all()

    def wait_line(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        with self.condition:
            while text not in self.lines:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise AssertionError(f"{self.name}: no line {text!r} within {timeout} s (exit {self.proc.poll()}); "
                                         f"stderr:\n{self.stderr_path.read_text()[-2000:]}")
                self.condition.wait(0.2)

    def finish(self, timeout: float = 30.0) -> None:
        """SIGTERM: the program writes its results and exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not end within {timeout} s of SIGTERM") from None
        assert status == 0, f"{self.name} exited with {status}:\n{self.stderr_path.read_text()[-2000:]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


def run_producer(bootstrap: str, rate: int, out: str) -> None:
    """Orders at `rate` a second until SIGTERM, with a probe order every PROBE_INTERVAL (all
    probes to partition 0, in order); writes the totals and each probe's produce time."""
    from confluent_kafka import Producer
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Orders in batches of 50 ms: the embedded cluster looks message sets up one by one, so
    # small ones (linger 5 ms) make it slower by the second (p99 over 2 s within a minute).
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "queue.buffering.max.messages": 1_000_000})
    prober = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    rnd = random.Random(11)
    weights = [1 / (rank + 1) for rank in range(len(PRODUCTS))]
    totals: dict = {}
    probes: list = []
    count = 0
    started = time.monotonic()
    next_probe = started
    print("producing", flush=True)
    while not stop.is_set():
        now = time.monotonic()
        while count < (now - started) * rate:
            product = rnd.choices(PRODUCTS, weights)[0]
            quantity = rnd.choice([1, 2, 3, 5])
            totals[product] = totals.get(product, 0) + quantity
            try:
                producer.produce(TOPIC, key=f"order-{count}", value=json.dumps({"product": product, "quantity": quantity}))
            except BufferError:
                producer.poll(0.05)
                continue
            count += 1
        if now >= next_probe:
            probes.append([len(probes) + 1, time.monotonic()])
            prober.produce(TOPIC, key=f"probe-{len(probes)}", partition=0,
                           value=json.dumps({"product": PROBE, "quantity": 1}))
            prober.poll(0)
            totals[PROBE] = len(probes)
            next_probe += PROBE_INTERVAL
        producer.poll(0)
        time.sleep(0.002)
    ended = time.monotonic()
    assert producer.flush(60) == 0 and prober.flush(60) == 0, "orders left unsent"
    Path(out).write_text(json.dumps({"totals": totals, "orders": count + len(probes), "probes": probes,
                                     "started": started, "ended": ended}))


def stream_connection(url: str, token: str, **options):
    from websockets.sync.client import connect
    # No client pings: a stopped process would time its own ping out when it continues.
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None, ping_interval=None,
                   **options)


def run_watcher(url: str, token: str, app: str, grid: str, rate: int, out: str) -> None:
    """One subscription until SIGTERM: every snapshot and delta noted with its arrival time,
    its version and the probe's count; writes them and the final rows."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    replica = Replica()
    noted = []
    with stream_connection(url, token) as ws:
        ws.send(json.dumps({"op": "subscribe", "id": "w", "app": app, "grid": grid, "max_rate": rate}))
        announced = False
        while not stop.is_set():
            try:
                text = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            received = time.monotonic()
            message = json.loads(text)
            if message["type"] not in ("snapshot", "delta"):
                continue
            replica.apply(message)
            probe = next((cells.get("units_sold") for key, cells in message["rows"] if key == PROBE and cells), None)
            noted.append([received, message["type"], message["version"], probe, len(message["rows"])])
            if not announced:
                print("subscribed", flush=True)
                announced = True
    Path(out).write_text(json.dumps({"records": noted, "rows": replica.by_text_key(), "problems": replica.problems,
                                     "version_regressions": replica.version_regressions}))


def run_frozen(url: str, token: str, app: str, grid: str, subscriptions: int, state_path: str) -> None:
    """`subscriptions` subscriptions at max_rate 50 on one connection; writes the replicas
    to `state_path` (with the time) whenever it has read all there is, at most 4 times a
    second, until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    replicas = {f"f{index}": Replica() for index in range(subscriptions)}
    messages, dirty, written = 0, False, 0.0
    with stream_connection(url, token) as ws:
        for sub in replicas:
            ws.send(json.dumps({"op": "subscribe", "id": sub, "app": app, "grid": grid, "max_rate": 50}))
        announced = False
        while not stop.is_set():
            try:
                message = json.loads(ws.recv(timeout=0.1))
                if message.get("type") in ("snapshot", "delta"):
                    replicas[message["id"]].apply(message)
                messages += 1
                dirty = True
            except TimeoutError:
                pass
            if not announced and all(r.snapshots for r in replicas.values()):
                print("subscribed", flush=True)
                announced = True
            now = time.monotonic()
            if dirty and now - written >= 0.25:
                rows = {sub: r.by_text_key() for sub, r in replicas.items()}
                state = {"t": now, "messages": messages, "snapshots": sum(r.snapshots for r in replicas.values()),
                         "rows": rows,
                         "problems": [p for r in replicas.values() for p in r.problems]}
                temporary = Path(state_path + ".tmp")
                temporary.write_text(json.dumps(state))
                temporary.rename(state_path)
                written, dirty = now, False


def main() -> None:
    parser = argparse.ArgumentParser(description="load on the stream: orders, a watching client, a frozen client")
    commands = parser.add_subparsers(dest="command", required=True)
    produce_command = commands.add_parser("produce")
    produce_command.add_argument("bootstrap")
    produce_command.add_argument("rate", type=int)
    produce_command.add_argument("out")
    for name in ("watch", "frozen"):
        command = commands.add_parser(name)
        for argument in ("url", "token", "app", "grid"):
            command.add_argument(argument)
        command.add_argument("number", type=int)
        command.add_argument("out")
    args = parser.parse_args()
    if args.command == "produce":
        run_producer(args.bootstrap, args.rate, args.out)
    elif args.command == "watch":
        run_watcher(args.url, args.token, args.app, args.grid, args.number, args.out)
    else:
        run_frozen(args.url, args.token, args.app, args.grid, args.number, args.out)


if __name__ == "__main__":
    main()
