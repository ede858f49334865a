"""The stream (`/api/v1/stream`, docs/protocol.md) with real WebSocket clients (the
`websockets` package) against `aerogrid serve` and the embedded Kafka cluster: a snapshot then
deltas, applied, equal the grid (GET …/grids/{grid}) and the sums of the orders produced, at
most max_rate deltas a second; key and column filters, only the changed cells, deleted rows
as null, integer keys as integers; two subscriptions on one connection and an unsubscribe
that stops only its own; a restarted app, and a server killed (-9) and started again on its
data directory: a new epoch and the exact grid.

Run with `make test-integration PYTEST_ARGS="-s test_stream_snapshots.py"` to see the numbers.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streaming import APP, GRID, WAVE, cells_bundle, create_tenant, expected_stats, metric, send_commands, wait_grid
from support.harness import log, produce
from support.server import Server, expect, new_operator_token, orders_bundle, poll, wait_state
from support.stream import StreamClient, assert_clean

pytestmark = pytest.mark.platform(seed=47)  # the same orders in each stream module
PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


# --------------------------------------------------------------------------------------------
# Snapshot and deltas


def test_snapshot_then_deltas_equal_the_grid(st):
    client = StreamClient(st.server, st.tenant.token)
    try:
        ready = client.wait_type("ready")
        assert ready == {"type": "ready", "tenant": st.tenant.name, "role": "admin", "protocol": 1}, ready

        # The snapshot is the grid, as GET answers it: rows sorted by key, same version and epoch.
        grid = wait_grid(st.tenant.admin, APP, GRID, st.orders.expected_units())
        snapshot = client.subscribe("s1", APP, GRID)
        assert snapshot["app"] == APP and snapshot["grid"] == GRID and snapshot["columns"] == ["units_sold"], snapshot
        assert (snapshot["epoch"], snapshot["version"]) == (grid["epoch"], grid["version"]), (snapshot, grid)
        assert [key for key, _ in snapshot["rows"]] == sorted(grid["rows"]), snapshot["rows"]
        assert dict(snapshot["rows"]) == grid["rows"]
        subscribed = next(m for _, m in client.messages if m.get("type") == "subscribed")
        assert subscribed == {"type": "subscribed", "id": "s1", "app": APP, "grid": GRID, "max_rate": 4}, subscribed

        # N orders in five waves: the deltas, applied, give the sums; no more than 4 deltas a second.
        start = client.mark()
        began = time.monotonic()
        for _ in range(5):
            produce(st.cluster, st.orders, WAVE // 5)
        replica = client.wait_rows("s1", st.orders.expected_units(), timeout=60)
        converged = time.monotonic() - began
        grid = expect(st.tenant.admin.grid(APP, GRID), 200).json()
        assert replica.by_text_key() == grid["rows"] == st.orders.expected_units()
        assert (replica.epoch, replica.version) == (grid["epoch"], grid["version"]), (replica.version, grid["version"])
        deltas = [(t, m) for t, m in client.of("s1", start=start)]
        assert deltas and all(m["type"] == "delta" for _, m in deltas), [m["type"] for _, m in deltas]
        for _, delta in deltas:
            assert set(delta) == {"type", "id", "app", "grid", "epoch", "version", "rows"}, delta
            assert all(cells is not None and set(cells) == {"units_sold"} for _, cells in delta["rows"]), delta
        time.sleep(1.0)  # a last delta after the grid settled would be a repeat
        deltas = client.of("s1", start=start)
        span = deltas[-1][0] - deltas[0][0]
        assert len(deltas) <= span * 4 + 2, f"{len(deltas)} deltas in {span:.2f} s at max_rate 4"
        log(f"stream: {WAVE} orders → {len(deltas)} deltas over {span:.2f} s (versions {deltas[0][1]['version']}"
            f"…{deltas[-1][1]['version']}); the replica exact {converged:.2f} s after kcat started")
        assert_clean(client, "s1")
    finally:
        client.close()


def test_key_and_column_filters(st):
    client = StreamClient(st.server, st.tenant.token, header=False)  # the auth message instead of the header
    try:
        client.wait_type("ready")
        wanted = ["Gadget", "Crème brûlée", "Not a product"]
        keyed = client.subscribe("keys", "statsapp", "stats", keys=wanted)
        units = client.subscribe("units", "statsapp", "stats", columns=["units"], max_rate=10)
        both = client.subscribe("both", "statsapp", "stats", keys=["Widget"], columns=["units", "orders"])
        assert keyed["columns"] == ["orders", "units"] and units["columns"] == ["units"], (keyed, units)
        assert both["columns"] == ["units", "orders"], both
        assert [key for key, _ in keyed["rows"]] == ["Crème brûlée", "Gadget"], keyed["rows"]

        start = client.mark()
        produce(st.cluster, st.orders, WAVE)
        stats = expected_stats(st.orders)
        client.wait_rows("keys", {k: v for k, v in stats.items() if k in wanted})
        client.wait_rows("units", {k: {"units": v["units"]} for k, v in stats.items()})
        client.wait_rows("both", {"Widget": stats["Widget"]})
        assert expect(st.tenant.admin.grid("statsapp", "stats"), 200).json()["rows"] == stats

        for _, delta in client.of("keys", start=start):
            assert {key for key, _ in delta["rows"]} <= set(wanted), f"a key outside the filter: {delta}"
        for _, delta in client.of("units", start=start):
            assert all(list(cells) == ["units"] for _, cells in delta["rows"]), f"a cell outside the filter: {delta}"
        for _, delta in client.of("both", start=start):
            assert [key for key, _ in delta["rows"]] == ["Widget"], delta
            assert all(list(cells) == ["units", "orders"] for _, cells in delta["rows"]), \
                f"cells not in the order asked for: {delta}"
        assert client.of("units", start=start), "no delta for the column filter"
        assert_clean(client, "keys", "units", "both")
    finally:
        client.close()


def test_the_documented_client_follows_the_grid(st, testdir):
    """The minimal client of docs/protocol.md, run as it is printed there."""
    code = re.search(r"## A minimal client.*?```python\n(.*?)```", PROTOCOL_DOC.read_text(), re.S)
    assert code, f"no Python client in {PROTOCOL_DOC}"
    script = testdir / "watch_grid.py"
    script.write_text(code.group(1))
    url = f"ws://{st.server.host}:{st.server.port}/api/v1/stream"
    lines: list = []
    process = subprocess.Popen([sys.executable, str(script), url, st.tenant.token, "statsapp", "stats"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()

    def printed() -> dict | None:
        return json.loads(lines[-1])["rows"] if lines else None
    try:
        poll(printed, lambda rows: rows == expected_stats(st.orders), 30, "the client to print the grid", interval=0.1)
        produce(st.cluster, st.orders, WAVE // 5)
        poll(printed, lambda rows: rows == expected_stats(st.orders), 30, "the client to print the new grid", interval=0.1)
        assert json.loads(lines[-1])["version"] == expect(st.tenant.admin.grid("statsapp", "stats"), 200).json()["version"]
    finally:
        process.kill()
        _, errors = process.communicate(timeout=10)
    assert not errors.strip(), f"the client wrote on stderr: {errors}"


def test_changed_cells_deleted_rows_and_integer_keys(st):
    """Only the cells that changed travel; a deleted row is null; an integer key stays one."""
    topic = f"{st.tenant.name}.cells"
    send_commands(st.cluster.bootstrap, topic, [{"key": "x", "set": {"a": 1, "b": "one"}}, {"key": 42, "set": {"a": 2}}])
    expect(st.tenant.admin.deploy(cells_bundle("cellsapp", topic)), 201)
    expect(st.tenant.admin.action("cellsapp", "start"), 200)
    wait_grid(st.tenant.admin, "cellsapp", "cells", {"x": {"a": 1, "b": "one"}, "42": {"a": 2, "b": None}})
    client = StreamClient(st.server, st.tenant.token)
    try:
        snapshot = client.subscribe("c", "cellsapp", "cells", max_rate=50)
        assert snapshot["rows"] == [[42, {"a": 2, "b": None}], ["x", {"a": 1, "b": "one"}]], snapshot["rows"]
        keyed = client.subscribe("k", "cellsapp", "cells", keys=[42])
        assert keyed["rows"] == [[42, {"a": 2, "b": None}]], keyed

        start = client.mark()
        send_commands(st.cluster.bootstrap, topic, [{"key": "x", "set": {"b": "two"}}])
        delta = client.wait_type("delta", 20, start, id="c")
        assert delta["rows"] == [["x", {"b": "two"}]], f"only the changed cell, b: {delta}"

        start = client.mark()
        send_commands(st.cluster.bootstrap, topic, [{"key": 42, "delete": True}, {"key": 7, "set": {"b": True}}])
        client.wait_rows("c", {"x": {"a": 1, "b": "two"}, 7: {"a": None, "b": True}}, text_keys=False)
        rows = [row for _, m in client.of("c", start=start) for row in m["rows"]]
        assert [42, None] in rows, f"the deleted row is not null: {rows}"
        assert [7, {"a": None, "b": True}] in rows, f"a new row comes whole: {rows}"
        client.wait_rows("k", {}, text_keys=False)
        assert [m["rows"] for _, m in client.of("k", start=start)] == [[[42, None]]], client.of("k", start=start)
        assert_clean(client, "c", "k")
    finally:
        client.close()
        expect(st.tenant.admin.delete("/api/v1/apps/cellsapp"), 204)


def test_two_subscriptions_and_unsubscribe(st):
    client = StreamClient(st.server, st.tenant.token)
    try:
        client.subscribe("sum", APP, GRID)
        client.subscribe("stats", "statsapp", "stats")
        assert metric(st.server.operator, "aerogrid_stream_subscriptions") >= 2
        assert metric(st.server.operator, "aerogrid_stream_connections") >= 1

        produce(st.cluster, st.orders, WAVE)
        client.wait_rows("sum", st.orders.expected_units())
        client.wait_rows("stats", expected_stats(st.orders))

        start = client.mark()
        client.send({"op": "unsubscribe", "id": "sum"})
        done = client.wait(lambda m: m.get("type") in ("unsubscribed", "error"), 10, "the answer to unsubscribe", start)
        assert done == {"type": "unsubscribed", "id": "sum"}, done
        after = client.mark()
        produce(st.cluster, st.orders, WAVE)
        client.wait_rows("stats", expected_stats(st.orders))
        time.sleep(1.0)  # a tick's worth and more for any late message
        late = client.of("sum", kinds=("snapshot", "delta", "error"), start=after)
        assert late == [], f"messages for the unsubscribed subscription: {late}"
        assert client.of("stats", start=after), "the other subscription stopped too"

        start = client.mark()
        client.send({"op": "unsubscribe", "id": "sum"})
        again = client.wait(lambda m: m.get("type") in ("unsubscribed", "error"), 10, "the second unsubscribe", start)
        assert again["type"] == "error" and again["code"] == "not_found" and again["id"] == "sum", again
        assert_clean(client, "sum", "stats")
    finally:
        client.close()


def test_a_duplicate_subscription_id_is_refused(st):
    """An id already in use on the connection is an error, and the first subscription stays."""
    client = StreamClient(st.server, st.tenant.token)
    try:
        client.subscribe("d", APP, GRID)
        start = client.mark()
        client.send({"op": "subscribe", "id": "d", "app": "statsapp", "grid": "stats"})
        error = client.wait_type("error", 10, start, id="d")
        assert error["code"] == "bad_request", error
        answers = [m for _, m in client.messages[start:] if m.get("id") == "d"]
        assert answers == [error], f"the refused subscribe got more than its error: {answers}"
    finally:
        client.close()


def test_a_restarted_app_is_a_new_epoch_and_a_new_snapshot(st):
    """POST …/restart gives the app a new runner: every subscriber gets a snapshot of the new
    epoch, and stays subscribed."""
    client = StreamClient(st.server, st.tenant.token)
    try:
        first = client.subscribe("r", "statsapp", "stats")
        epochs = [first["epoch"]]
        for _ in range(2):
            start = client.mark()
            expect(st.tenant.admin.action("statsapp", "restart"), 200)
            snapshot = client.wait(lambda m: m.get("id") == "r" and m.get("type") == "snapshot" and m["epoch"] != epochs[-1],
                                   30, "a snapshot of a new epoch", start)
            epochs.append(snapshot["epoch"])
            assert dict(snapshot["rows"]) == expected_stats(st.orders), snapshot
            errors = [m for _, m in client.messages[start:] if m.get("type") == "error"]
            assert errors == [], f"errors while the app restarted: {errors}"
        wait_state(st.tenant.admin, "statsapp", "running")
        produce(st.cluster, st.orders, WAVE // 5)
        client.wait_rows("r", expected_stats(st.orders))
        assert epochs == sorted(set(epochs)), f"epochs not increasing: {epochs}"
        assert_clean(client, "r")
    finally:
        client.close()


def test_subscribers_that_come_and_go_do_not_take_the_server_down(st, testdir):
    """Connections that subscribe (at max_rate 50) and close, one after another: the server
    lives on. Its own server, so a crash here does not fail the other tests."""
    server = Server(testdir, st.cluster.bootstrap, name="churn", operator_token=new_operator_token())
    try:
        tenant = create_tenant(server, "churn")
        expect(tenant.admin.deploy(orders_bundle()), 201)
        expect(tenant.admin.action(APP, "start"), 200)
        wait_grid(tenant.admin, APP, GRID, st.orders.expected_units())
        for attempt in range(1, 201):
            client = None
            try:
                client = StreamClient(server, tenant.token)
                client.subscribe("s", APP, GRID, max_rate=50)
            except Exception as error:  # noqa: BLE001 - the server's state is the message
                time.sleep(0.5)
                raise AssertionError(f"connection {attempt}: {error!r}; the server "
                                     f"{'runs' if server.alive() else f'exited with {server.proc.poll()}'}; "
                                     f"its stderr: {[line for line in server.stderr_tail(400).splitlines() if 'Fatal' in line]}") from None
            finally:
                if client is not None:
                    client.close()
        assert server.alive(), f"the server died after the last connection: {server.stderr_tail(5)}"
        expect(server.client().get("/healthz"), 200)
    finally:
        if server.alive():
            server.stop(timeout=60)


# --------------------------------------------------------------------------------------------
# kill -9 and a restart on the same data directory


def test_a_restarted_server_is_a_new_epoch_with_the_exact_grid(st, testdir):
    token = new_operator_token()
    first = Server(testdir, st.cluster.bootstrap, name="first", operator_token=token)
    second = None
    try:
        tenant = create_tenant(first, "restart")
        expect(tenant.admin.deploy(orders_bundle()), 201)
        expect(tenant.admin.action(APP, "start"), 200)
        wait_grid(tenant.admin, APP, GRID, st.orders.expected_units())
        client = StreamClient(first, tenant.token)
        snapshot = client.subscribe("g", APP, GRID)
        produce(st.cluster, st.orders, WAVE)
        client.wait_rows("g", st.orders.expected_units())
        time.sleep(1.5)  # a checkpoint a second

        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        closed = client.wait_closed(10)
        assert closed is not None, "the client did not see the connection end"
        client.close()
        produce(st.cluster, st.orders, WAVE)  # while the server is down

        began = time.monotonic()
        second = Server(testdir, st.cluster.bootstrap, name="second", operator_token=token, data_dir=first.data_dir)
        reconnected = None
        while reconnected is None:  # as a client would: reconnect and subscribe again
            try:
                reconnected = StreamClient(second, tenant.token)
                again = reconnected.subscribe("g", APP, GRID, timeout=30)
            except (OSError, AssertionError):
                if time.monotonic() - began > 60:
                    raise
                reconnected = None
                time.sleep(0.2)
        assert again["epoch"] != snapshot["epoch"], f"the same epoch {again['epoch']} after a restart"
        reconnected.wait_rows("g", st.orders.expected_units(), timeout=60)
        converged = time.monotonic() - began
        grid = expect(second.client(tenant.token).grid(APP, GRID), 200).json()
        replica = reconnected.replicas["g"]
        assert replica.by_text_key() == grid["rows"] and (replica.epoch, replica.version) == (grid["epoch"], grid["version"])
        log(f"restart: epoch {snapshot['epoch']} → {again['epoch']}; the client exact {converged:.2f} s after the "
            f"server started again ({WAVE} orders produced while it was down)")
        assert_clean(reconnected, "g")
        reconnected.close()
    finally:
        if first.alive():
            first.signal(signal.SIGKILL)
        if second is not None:
            second.stop(timeout=60)
