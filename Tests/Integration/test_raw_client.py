"""docs/ipc.md is enough to write an app: a client written from it alone — socket, struct
and json, none of the SDK's code — drives the supervisor through hello, restore-done,
records, grid-update and batch-done, and the supervisor's grid equals the ground truth.

The supervisor starts every bundle through the SDK's runner, which executes app.py as
`__main__`; this app.py does all its work at module level and ends with os._exit(0), so
the runner never takes over."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from support.harness import E2E_ORDERS, Supervisor, assert_cgroups_removed, grid_rows, log

RAW_APP = r'''
import json
import os
import socket
import struct
import sys
import time

# Frame types (docs/ipc.md, "Frame types").
HELLO, GRID_UPDATE, BATCH_DONE, LOG = 0x01, 0x02, 0x03, 0x05
RESTORE, RESTORE_DONE, RECORDS, SHUTDOWN, HEARTBEAT = 0x11, 0x12, 0x13, 0x14, 0x20
MAX_FRAME = 16 * 1024 * 1024
RECORD = struct.Struct(">HiqqiiH")        # the fixed 32-byte block of a record
BATCH_DONE_LAYOUT = struct.Struct(">QIIII")  # batch_id, records, errors, updates, produced
GRID = "product_sum"


def fail(message):
    sys.stderr.write("rawclient: " + message + "\n")
    sys.stderr.flush()
    os._exit(3)


fd = int(os.environ.get("AEROGRID_IPC_FD", "3"))
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
sock.settimeout(0.25)
last_sent = time.monotonic()


def send(frame_type, payload=b""):
    global last_sent
    sock.sendall(struct.pack(">IB", len(payload) + 1, frame_type) + payload)
    last_sent = time.monotonic()


def send_json(frame_type, obj):
    send(frame_type, json.dumps(obj, ensure_ascii=False).encode("utf-8"))


buffer = bytearray()


def read_frame():
    """(type, payload); sends a heartbeat after a second of silence while waiting."""
    while True:
        if len(buffer) >= 4:
            (length,) = struct.unpack_from(">I", buffer, 0)
            if length < 1 or length > MAX_FRAME:
                fail("bad frame length %d" % length)
            if len(buffer) >= 4 + length:
                frame_type = buffer[4]
                payload = bytes(buffer[5:4 + length])
                del buffer[:4 + length]
                return frame_type, payload
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            if time.monotonic() - last_sent >= 1.0:
                send(HEARTBEAT)
            continue
        if not chunk:
            fail("the supervisor closed the socket")
        buffer.extend(chunk)


# The grid: product -> {"units_sold": n, "orders": n}.
rows = {}
batches = 0
records_seen = 0

send_json(HELLO, {
    "protocol": "1.0",
    "sdk": "rawclient/1.0 (integration test, written from docs/ipc.md)",
    "app": "rawclient",
    "topics": [{"name": "orders", "key_type": "str", "value_type": "dict"}],
    "grids": [{"name": GRID, "columns": ["units_sold", "orders"]}],
    "streams": [{"name": "sum_orders", "topic": "orders"}],
    "produces": [],
})

# Restore phase: restore frames (rows to start from), then restore-done.
while True:
    frame_type, payload = read_frame()
    if frame_type == RESTORE:
        message = json.loads(payload)
        if message["grid"] == GRID:
            for key, row in message["rows"]:
                rows[key] = row
    elif frame_type == RESTORE_DONE:
        break
    elif frame_type == SHUTDOWN:
        sock.close()
        os._exit(0)
    elif frame_type == RECORDS:
        fail("a records frame before restore-done")
    # heartbeats and unknown types are skipped

send_json(LOG, {"level": "info", "message": "rawclient running with %d restored rows" % len(rows)})


def handle_records(payload):
    global batches, records_seen
    pos = 0
    batch_id, topic_count = struct.unpack_from(">QH", payload, pos)
    pos += 10
    topics = []
    for _ in range(topic_count):
        (name_len,) = struct.unpack_from(">H", payload, pos)
        pos += 2
        topics.append(payload[pos:pos + name_len].decode("utf-8"))
        pos += name_len
    (count,) = struct.unpack_from(">I", payload, pos)
    pos += 4
    changed = {}
    for _ in range(count):
        topic_index, partition, offset, timestamp, key_len, value_len, header_count = RECORD.unpack_from(payload, pos)
        pos += RECORD.size
        if topic_index >= len(topics):
            fail("topic index %d outside the table" % topic_index)
        key = None
        if key_len >= 0:
            key = payload[pos:pos + key_len]
            pos += key_len
        value = None
        if value_len >= 0:
            value = payload[pos:pos + value_len]
            pos += value_len
        for _ in range(header_count):
            (name_len,) = struct.unpack_from(">H", payload, pos)
            pos += 2 + name_len
            (header_len,) = struct.unpack_from(">i", payload, pos)
            pos += 4 + max(header_len, 0)
        if topics[topic_index] != "orders" or value is None:
            continue
        order = json.loads(value)
        product = order["product"]
        row = rows.get(product) or {"units_sold": 0, "orders": 0}
        row = {"units_sold": row["units_sold"] + order["quantity"], "orders": row["orders"] + 1}
        rows[product] = row
        changed[product] = row
    if pos != len(payload):
        fail("records frame %d: %d trailing bytes" % (batch_id, len(payload) - pos))
    # One grid-update per changed key, then batch-done with the counts.
    for product, row in changed.items():
        send_json(GRID_UPDATE, {"grid": GRID, "key": product, "row": row})
    send(BATCH_DONE, BATCH_DONE_LAYOUT.pack(batch_id, count, 0, len(changed), 0))
    batches += 1
    records_seen += count


while True:
    frame_type, payload = read_frame()
    if frame_type == RECORDS:
        handle_records(payload)
    elif frame_type == SHUTDOWN:
        send_json(LOG, {"level": "info", "message": "rawclient: %d records in %d batches" % (records_seen, batches)})
        # "The supervisor sends no frame after shutdown": look for half a second (it closes its
        # side only once we close ours) and report what came, as a log frame (allowed after
        # shutdown).
        after = []
        sock.settimeout(0.1)
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            if len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack_from(">I", buffer, 0)[0]:
                (length,) = struct.unpack_from(">I", buffer, 0)
                after.append("%#04x" % buffer[4])
                del buffer[:4 + length]
                continue
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                break
            buffer.extend(chunk)
        send_json(LOG, {"level": "info", "message": "rawclient: frames after shutdown: [%s]" % ", ".join(after)})
        sock.close()
        os._exit(0)
    elif frame_type in (RESTORE, RESTORE_DONE):
        fail("frame type %#x after restore-done" % frame_type)
    # heartbeats and unknown frame types are skipped
'''


def write_bundle(directory: Path) -> Path:
    """The bundle: app.toml and app.py, readable by the sandbox's uid."""
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / "app.toml").write_text('name = "rawclient"\nentrypoint = "app.py"\n')
    (directory / "app.py").write_text(RAW_APP)
    for name in ("app.toml", "app.py"):
        (directory / name).chmod(0o644)
    return directory


@pytest.fixture(scope="module")
def raw_run(orders_cluster, workdir):
    """The raw client run once by the supervisor over the 200,000 orders, then stopped."""
    cluster, orders = orders_cluster
    directory = workdir / f"rawclient-{secrets.token_hex(3)}"
    directory.mkdir(mode=0o755)
    bundle = write_bundle(directory / "bundle")
    supervisor = Supervisor(bundle, cluster.bootstrap, directory / "data", f"it-{secrets.token_hex(4)}", directory,
                            app_name="rawclient", checkpoint_interval=0.5, status_interval=0.1)
    try:
        at, _ = supervisor.wait_status(
            lambda s: s["records"] >= E2E_ORDERS and s.get("lag") == 0, 120, f"{E2E_ORDERS} records applied")
        log(f"raw client: {E2E_ORDERS} records applied {at - supervisor.started:.2f} s after the supervisor started")
        running = supervisor.app_pid()
        final, grids = supervisor.stop()
        log(f"raw client: final status {final}")
        yield {"orders": orders, "final": final, "grids": grids, "supervisor": supervisor, "app_pid": running,
               "log": supervisor.stderr_path.read_text(errors="replace")}
    finally:
        supervisor.terminate()
        for path in supervisor.cgroup_dirs():
            for leftover in (path, path.parent):
                try:
                    leftover.rmdir()
                except OSError:
                    pass


def test_raw_protocol_client(raw_run):
    orders, final, grids = raw_run["orders"], raw_run["final"], raw_run["grids"]
    assert raw_run["app_pid"] is not None, "the raw client's process was not running"
    expected = {product: {"units_sold": orders.units[product], "orders": orders.orders[product]}
                for product in orders.units}
    assert grid_rows(grids, "product_sum") == expected
    assert grids["grids"]["product_sum"]["columns"] == ["units_sold", "orders"]
    assert final["records"] == E2E_ORDERS
    assert final["delivered_records"] == E2E_ORDERS
    assert final["restarts"] == 0, final
    assert "last_crash" not in final, final  # no protocol violation, no crash
    assert final["failed_records"] == 0
    # The log frames reach the supervisor's log.
    assert "rawclient running with 0 restored rows" in raw_run["log"]
    assert f"rawclient: {E2E_ORDERS} records in" in raw_run["log"]
    assert_cgroups_removed(raw_run["supervisor"])


def test_supervisor_sends_nothing_after_shutdown(raw_run):
    """docs/ipc.md: shutdown is "the last frame the supervisor sends"; "the supervisor sends
    no frame after shutdown". The raw client reports, in a log frame, the frame types it
    received in the half second after the first shutdown."""
    reports = [line for line in raw_run["log"].splitlines() if "rawclient: frames after shutdown" in line]
    assert reports, "the raw client's report of frames after shutdown is not in the supervisor's log"
    report = reports[-1].split("rawclient: ", 1)[1]
    log(f"raw client: {report}")
    assert report.rstrip().endswith("frames after shutdown: []"), (
        f"the supervisor sent frames after its shutdown frame (0x14 = shutdown, 0x13 = records): {report}")
