"""Processes and data for the suites: the embedded Kafka cluster, the supervisor (`aerogrid
app run`) with a thread reading its JSON lines, orders written with kcat, the ground truth
computed from the generated orders alone, and what a process uses (memory, CPU).

Every wait here has a deadline: a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AEROGRID = Path(os.environ.get("AEROGRID_BIN", REPO / ".build" / "debug" / "aerogrid"))
ORDERSAPP = REPO / "Examples" / "ordersapp"
CGROUP_ROOT = Path("/sys/fs/cgroup")
TOPIC = "orders"
PARTITIONS = 8
E2E_ORDERS = 200_000

# Product names with spaces, punctuation and non-ASCII text: grid keys must survive the trip
# through Kafka, the app, the IPC frames, the checkpoint and the grids line unchanged.
PRODUCTS = ["Widget", "Gadget", "Gizmo", "Sprocket", "Doohickey", "Thingamajig",
            "How to Win Friends", "Flux Capacitor", "Left-handed Spanner", "Crème brûlée"]
QUANTITIES = [1, 2, 3, 5, 10, 25]


RAW_APP_TEMPLATE = REPO / "Tests" / "raw_protocol_app.py.template"


def raw_app_code(app: str, body: str, grids: list | None = None, topic: str = TOPIC) -> str:
    """The code of an app that speaks the IPC protocol itself (Tests/raw_protocol_app.py.template):
    hello for `app` reading `topic`, then `body` once the first batch has come."""
    grids = grids if grids is not None else [{"name": "g", "columns": ["c"]}]
    return (RAW_APP_TEMPLATE.read_text().replace("@APP@", app).replace("@TOPIC@", topic)
            .replace("@GRIDS@", json.dumps(grids)).replace("@BODY@", body))


def log(message: str) -> None:
    """A line that shows with `pytest -s` (and in the captured output of a failure)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Deadline:
    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    @property
    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end


class ProcessError(AssertionError):
    pass


# --------------------------------------------------------------------------------------------
# Orders and ground truth


class Orders:
    """Orders written to files for kcat, with the expected grid computed from them alone:
    units per product and (for the raw client's second column) orders per product."""

    def __init__(self, directory: Path, seed: int) -> None:
        self.directory = directory
        self.rnd = random.Random(seed)
        self.count = 0
        self.units: Counter = Counter()
        self.orders: Counter = Counter()
        self.files = 0

    def write_wave(self, count: int, products: list | None = None) -> Path:
        """A file of `count` new orders, `order-<n>|{"product": ..., "quantity": ...}` per line."""
        self.files += 1
        path = self.directory / f"orders-{self.files:03}.txt"
        products = products or PRODUCTS
        weights = [1 / (rank + 1) for rank in range(len(products))]
        lines = []
        for _ in range(count):
            product = self.rnd.choices(products, weights)[0]
            quantity = self.rnd.choices(QUANTITIES, [50, 20, 12, 10, 6, 2])[0]
            self.units[product] += quantity
            self.orders[product] += 1
            value = json.dumps({"product": product, "quantity": quantity}, ensure_ascii=False)
            lines.append(f"order-{self.count}|{value}\n")
            self.count += 1
        path.write_text("".join(lines), encoding="utf-8")
        return path

    def expected_units(self) -> dict:
        return {product: {"units_sold": units} for product, units in sorted(self.units.items())}


def kcat_produce(bootstrap: str, path: Path, timeout: float = 60.0) -> float:
    """Writes every line of `path` to the orders topic with kcat; returns the seconds taken."""
    started = time.monotonic()
    result = subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", TOPIC, "-K", "|", "-l", str(path)],
        capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ProcessError(f"kcat failed ({result.returncode}): {result.stderr.strip()}")
    return time.monotonic() - started


def produce(cluster: KafkaCluster, orders: Orders, count: int, products: list | None = None) -> float:
    """A wave of `count` new orders written with kcat; checks they all landed. Returns the
    seconds kcat took."""
    path = orders.write_wave(count, products)
    seconds = kcat_produce(cluster.bootstrap, path)
    landed = total_records(cluster.bootstrap)
    assert landed == orders.count, f"the topic holds {landed} records, {orders.count} were produced"
    return seconds


def watermarks(bootstrap: str, topic: str = TOPIC, partitions: int = PARTITIONS) -> dict:
    """{partition: (low, high)} from the cluster, with confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "aerogrid-it-watermarks",
                         "enable.auto.commit": False})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in range(partitions)}
    finally:
        consumer.close()


def total_records(bootstrap: str) -> int:
    return sum(high - low for low, high in watermarks(bootstrap).values())


# --------------------------------------------------------------------------------------------
# Processes


class Managed:
    """A child process we started, in its own session; stopped by its pid only."""

    def __init__(self, name: str, argv: list, log_dir: Path, **popen) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.stderr_path = log_dir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, start_new_session=True, **popen)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL past `timeout`; returns the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._stderr.close()
        return self.proc.returncode

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class KafkaCluster(Managed):
    """`aerogrid kafka up --topic orders:8` (or `topics`, NAME:PARTITIONS each; and the
    internal topics of each cluster of nodes in `clusters`) in its own process."""

    def __init__(self, log_dir: Path, name: str = "kafka", topics: list | None = None, clusters: list | None = None,
                 slots: int | None = None) -> None:
        topic_args = [arg for topic in (topics or [f"{TOPIC}:{PARTITIONS}"]) for arg in ("--topic", topic)]
        topic_args += [arg for cluster in (clusters or []) for arg in ("--cluster", cluster)]
        topic_args += ["--slots", str(slots)] if slots else []
        super().__init__(name, [AEROGRID, "kafka", "up", *topic_args], log_dir)
        self.bootstrap = self._read_bootstrap(Deadline(30, "kafka up"))
        # Drain whatever else it prints, so it never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        log(f"{name}: bootstrap.servers={self.bootstrap} (pid {self.pid})")

    def _read_bootstrap(self, deadline: Deadline) -> str:
        found: list = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(deadline.remaining)
        line = found[0].decode().strip() if found else ""
        if not line.startswith("bootstrap.servers="):
            self.terminate()
            raise ProcessError(f"kafka up printed {line!r} within {deadline.seconds} s; stderr:\n{self.stderr_tail()}")
        return line.split("=", 1)[1]


class Supervisor(Managed):
    """`aerogrid app run DIR ...`, with a thread that collects its JSON lines."""

    def __init__(self, app_dir: Path, bootstrap: str, data_dir: Path, tenant: str, log_dir: Path,
                 name: str = "supervisor", checkpoint_interval: float = 0.2,
                 status_interval: float = 0.1, app_name: str = "ordersapp") -> None:
        self.tenant = tenant
        self.app_name = app_name
        self.data_dir = data_dir
        self.lines: list = []          # (monotonic time, parsed JSON)
        self.raw_lines: list = []      # lines that were not JSON
        self.condition = threading.Condition()
        self.eof = False
        self.stdout_path = log_dir / f"{name}.stdout"  # the lines, with seconds since the start
        super().__init__(name, [
            AEROGRID, "app", "run", app_dir, "--bootstrap", bootstrap, "--data-dir", data_dir,
            "--tenant", tenant, "--checkpoint-interval", checkpoint_interval,
            "--status-interval", status_interval], log_dir)
        self.reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self.reader.start()
        log(f"{name}: started (pid {self.pid}, tenant {tenant}, data dir {data_dir})")

    def _read(self) -> None:
        with open(self.stdout_path, "w") as copy:
            self._read_lines(copy)

    def _read_lines(self, copy) -> None:
        for raw in self.proc.stdout:
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            copy.write(f"{time.monotonic() - self.started:8.3f} {text}\n")
            copy.flush()
            try:
                obj = json.loads(text)
            except ValueError:
                with self.condition:
                    self.raw_lines.append(text)
                continue
            with self.condition:
                self.lines.append((time.monotonic(), obj))
                self.condition.notify_all()
        with self.condition:
            self.eof = True
            self.condition.notify_all()

    # ---- status lines

    def statuses(self) -> list:
        with self.condition:
            return [(t, o) for t, o in self.lines if o.get("event") == "status"]

    def last_status(self) -> dict | None:
        found = self.statuses()
        return found[-1][1] if found else None

    def wait_status(self, predicate, timeout: float, what: str, after: float | None = None) -> tuple:
        """The first status line (received after `after`, a monotonic time) for which
        `predicate` holds, as (time, status). Fails after `timeout` seconds."""
        deadline = Deadline(timeout, what)
        seen = 0
        with self.condition:
            while True:
                while seen < len(self.lines):
                    at, obj = self.lines[seen]
                    seen += 1
                    if obj.get("event") != "status" or (after is not None and at < after):
                        continue
                    if predicate(obj):
                        return at, obj
                if self.eof:
                    raise ProcessError(
                        f"{self.name} ended (status {self.proc.poll()}) while waiting for {what}; "
                        f"last status {self.last_status_unlocked()}; stderr:\n{self.stderr_tail()}")
                if deadline.expired:
                    raise ProcessError(
                        f"timed out after {timeout} s waiting for {what}; last status "
                        f"{self.last_status_unlocked()}; stderr:\n{self.stderr_tail()}")
                self.condition.wait(min(0.5, deadline.remaining) or 0.01)

    def last_status_unlocked(self) -> dict | None:
        for _, obj in reversed(self.lines):
            if obj.get("event") == "status":
                return obj
        return None

    # ---- the app's processes

    def cgroup_dirs(self) -> list:
        """This app's cgroup directories, in every v1 controller (or the v2 tree) that has
        an aerogrid root."""
        dirs = []
        for controller in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
            if (controller / "aerogrid").is_dir():
                dirs.append(controller / "aerogrid" / self.tenant / self.app_name)
        if (CGROUP_ROOT / "aerogrid").is_dir():
            dirs.append(CGROUP_ROOT / "aerogrid" / self.tenant / self.app_name)
        return dirs

    def procs_file(self) -> Path:
        pids = CGROUP_ROOT / "pids" / "aerogrid" / self.tenant / self.app_name / "cgroup.procs"
        if pids.parent.parent.parent.is_dir():
            return pids
        return CGROUP_ROOT / "aerogrid" / self.tenant / self.app_name / "cgroup.procs"

    def sandbox_pids(self) -> list:
        """The pids in the app's cgroup: none when the app's group is gone (its processes
        ended and it was removed), an error when there is no aerogrid cgroup root at all to
        look in (an empty answer would then prove nothing)."""
        procs = self.procs_file()
        if not procs.parent.parent.parent.is_dir():
            raise AssertionError(f"no aerogrid cgroup root at {procs.parent.parent.parent}: cannot list the sandbox's processes")
        try:
            text = procs.read_text()
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split()]

    def app_pid(self) -> int | None:
        """The app's python3 process (not the sandbox's init)."""
        for pid in self.sandbox_pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and b"python" in os.path.basename(cmdline[0]) and b"aerogrid" in b" ".join(cmdline):
                return pid
        return None

    def wait_app_pid(self, timeout: float, exclude: int | None = None) -> int:
        deadline = Deadline(timeout, "the app's python process")
        while not deadline.expired:
            pid = self.app_pid()
            if pid is not None and pid != exclude:
                return pid
            if not self.alive():
                raise ProcessError(f"{self.name} ended while waiting for the app process:\n{self.stderr_tail()}")
            time.sleep(0.02)
        raise ProcessError(f"no app process in {self.procs_file()} within {timeout} s; last status {self.last_status()}")

    # ---- stopping

    def stop(self, timeout: float = 30.0) -> tuple:
        """SIGTERM and a clean exit: returns (final status, grids line)."""
        self.signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise ProcessError(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.stderr_tail()}") from None
        self.reader.join(10)
        self._stderr.close()
        if status != 0:
            raise ProcessError(f"{self.name} exited with {status} after SIGTERM:\n{self.stderr_tail()}")
        with self.condition:
            grids = [o for _, o in self.lines if o.get("event") == "grids"]
            final = self.last_status_unlocked()
        if len(grids) != 1:
            raise ProcessError(f"{self.name} printed {len(grids)} grids lines; non-JSON output: {self.raw_lines[-5:]}")
        return final, grids[0]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.reader.join(10)
        self._stderr.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def assert_cgroups_removed(supervisor: Supervisor) -> None:
    """After a clean stop the app's cgroup is gone, in every controller. With no aerogrid
    cgroup root anywhere there is nothing to look in, and the check fails rather than pass."""
    directories = supervisor.cgroup_dirs()
    assert directories, f"no aerogrid cgroup root under {CGROUP_ROOT}: cannot check that the app's cgroup was removed"
    for directory in directories:
        if directory.exists():
            procs = (directory / "cgroup.procs").read_text().split() if (directory / "cgroup.procs").exists() else "?"
            raise AssertionError(f"{directory} is left after a clean stop (processes in it: {procs})")


# --------------------------------------------------------------------------------------------
# The checkpoint database


def checkpointed_offsets(data_dir: Path, app: str) -> dict:
    """{(topic, partition): next_offset} from the supervisor's SQLite checkpoint."""
    db = sqlite3.connect(data_dir / "aerogrid.sqlite", timeout=10)
    try:
        rows = db.execute("SELECT topic, partition, next_offset FROM source_offsets WHERE app = ?", (app,)).fetchall()
    finally:
        db.close()
    return {(topic, partition): offset for topic, partition, offset in rows}


def checkpointed_rows(data_dir: Path, app: str, grid: str) -> dict:
    db = sqlite3.connect(data_dir / "aerogrid.sqlite", timeout=10)
    try:
        rows = db.execute("SELECT key, row FROM grid_rows WHERE app = ? AND grid = ?", (app, grid)).fetchall()
    finally:
        db.close()
    return {key: json.loads(row) for key, row in rows}


def grid_rows(grids_line: dict, grid: str) -> dict:
    assert grid in grids_line["grids"], f"no grid {grid!r} in {sorted(grids_line['grids'])}"
    return grids_line["grids"][grid]["rows"]


def aerogrid_cgroup_roots() -> list:
    """aerogrid/ in the unified tree (v2) and in every controller's hierarchy (v1)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [CGROUP_ROOT / "aerogrid"] + [path / "aerogrid" for path in CGROUP_ROOT.iterdir() if path.is_dir()]


def tenant_cgroups() -> set:
    """The names of the tenant directories under aerogrid/, in any hierarchy."""
    return {entry.name for root in aerogrid_cgroup_roots() if root.is_dir() for entry in root.iterdir() if entry.is_dir()}


def remove_tenant_cgroups(tenants: list) -> None:
    """The empty cgroup directories a server leaves for these tenants, in every controller
    (v1) or the unified tree (v2): aerogrid/<tenant>/ and its apps' below it. rmdir removes
    only empty directories, so a cgroup still in use stays."""
    for root in aerogrid_cgroup_roots():
        for tenant in tenants:
            directory = root / tenant
            if not directory.is_dir():
                continue
            for app in [path for path in directory.iterdir() if path.is_dir()]:
                try:
                    app.rmdir()
                except OSError:
                    pass
            try:
                directory.rmdir()
            except OSError:
                pass


def run_with_sdk(app: Path, bootstrap: str, timeout: float = 180) -> dict[str, list]:
    """`python -m aerogrid run APP --print-grids` against `bootstrap`: the SDK's own runner,
    alone, until the topics have been idle for 2 s. Returns each grid's printed rows (a
    list of [key, row]); fails the test if the runner fails or logged a handler error."""
    result = subprocess.run(
        [sys.executable, "-m", "aerogrid", "run", str(app), "--broker", bootstrap, "--print-grids", "--quiet", "--idle-exit", "2"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO / "python")), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"the runner exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert " error in " not in result.stderr, result.stderr[-2000:]
    grids = {}
    for line in result.stdout.splitlines():
        printed = json.loads(line)
        grids[printed["grid"]] = printed["rows"]
    return grids
