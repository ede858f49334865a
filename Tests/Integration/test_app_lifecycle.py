"""An app's whole life through the control plane's API (docs/api.md): deploy, start, grids
exact against the produced orders, logs (followed, and their tail), CSV, stop, resume from
the checkpoint without double counting, restart, a new version running its own code, delete,
and deployed again with no state; concurrent starts and stops converge.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest

from control_plane import (
    APP,
    GRID,
    WAVE,
    LogFollower,
    app_names,
    assert_bundle_private,
    audit,
    bundle_path,
    check_app,
    create_tenant,
    create_token,
    rfc3339,
    wait_grid,
)
from support.harness import ORDERSAPP, PRODUCTS, log, produce
from support.server import Client, Response, digest, expect, poll, regular, wait_state, zip_directory, zip_entries

pytestmark = pytest.mark.platform(seed=21)  # the same orders in each control-plane module


# Grid keys a CSV writer must quote: a comma, a double quote, a line break.
TRICKY_PRODUCTS = ["Comma, Inc.", 'The "Quoted" One', "Line\nBreak"]


# --------------------------------------------------------------------------------------------
# An app's life


def csv_rows(text: str) -> tuple:
    reader = list(csv.reader(io.StringIO(text)))
    assert reader, f"empty CSV: {text!r}"
    return reader[0], {row[0]: {"units_sold": int(row[1])} for row in reader[1:] if row}


def test_app_lifecycle(platform):
    server, cluster, orders = platform.server, platform.cluster, platform.orders
    op = server.operator
    tenant = create_tenant(platform, "life")
    developer, developer_token = create_token(tenant.admin, "developer")
    viewer, _ = create_token(tenant.admin, "viewer")

    # Deploy: a new app, version 1, not running; its bundle unpacked read-only under its digest.
    bundle = zip_directory(ORDERSAPP)
    app = check_app(expect(developer.deploy(bundle), 201).json())
    assert app["name"] == APP and app["version"] == 1 and app["state"] in {"created", "stopped"}, app
    assert app["entrypoint"] == "app.py" and app["runtime"] == "python3.11", app
    assert app["lag"] is None and app["usage"] is None, f"lag and usage must be null while the app does not run: {app}"
    assert digest(bundle) in app["bundle_digest"], \
        f"bundle_digest {app['bundle_digest']} is not the zip's SHA-256 {digest(bundle)}"
    unpacked = bundle_path(server, tenant, bundle)
    assert (unpacked / "app.toml").read_bytes() == (ORDERSAPP / "app.toml").read_bytes()
    assert_bundle_private(unpacked, tenant)
    assert expect(op.get(f"/api/v1/tenants/{tenant.name}"), 200).json()["apps"] == 1
    assert app_names(viewer) == [APP]

    # Start, and the grid equals the sums of everything produced.
    produce(cluster, orders, WAVE)
    started = check_app(expect(developer.action(APP, "start"), 200).json())
    assert started["desired_state"] == "running", started
    began = time.monotonic()
    grid = wait_grid(viewer, APP, orders.expected_units())
    log(f"lifecycle: {orders.count} orders in the grid {time.monotonic() - began:.2f} s after the start")
    assert grid["name"] == GRID and grid["columns"] == ["units_sold"], grid
    running = check_app(wait_state(viewer, APP, "running"))
    assert running["desired_state"] == "running" and running["restarts"] == 0, running

    summaries = expect(viewer.get(f"/api/v1/apps/{APP}/grids"), 200).json()["grids"]
    assert [(g["name"], g["rows"], g["columns"]) for g in summaries] == [(GRID, len(orders.units), ["units_sold"])], \
        summaries
    expect(viewer.grid(APP, "no_such_grid"), 404, "not_found")

    # CSV, by the query and by Accept.
    for options in [{"query": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}]:
        answer = expect(viewer.grid(APP, GRID, **options), 200)
        assert answer.content_type.startswith("text/csv"), f"{options}: Content-Type {answer.content_type!r}"
        header, rows = csv_rows(answer.text)
        assert header == ["key", "units_sold"], header
        assert rows == orders.expected_units(), f"{options}: the CSV rows differ from the expected sums"

    # Stop, with a follower on the log: the app's last words arrive as NDJSON.
    follower = LogFollower(viewer, APP)
    follower.start()
    follower.headers_seen.wait(5)
    stopped = check_app(expect(developer.action(APP, "stop"), 200).json())
    assert stopped["desired_state"] == "stopped", stopped
    stopped = check_app(wait_state(viewer, APP, "stopped", timeout=40))
    assert stopped["desired_state"] == "stopped" and stopped["lag"] is None and stopped["usage"] is None, stopped
    poll(lambda: list(follower.lines), bool, 10, "a line on the followed log after the stop", interval=0.1)
    follower.close()
    assert follower.status == 200, f"logs?follow=true answered {follower.status}"
    assert follower.content_type.startswith("application/x-ndjson"), follower.content_type
    for line in follower.lines:
        entry = json.loads(line)
        assert {"time", "source", "level", "message"} <= set(entry), entry

    lines = expect(viewer.get(f"/api/v1/apps/{APP}/logs"), 200).json()["lines"]
    assert lines, "the stopped app's log is empty (it printed its shutdown line on stderr)"
    for line in lines:
        assert {"time", "source", "level", "message"} <= set(line), line
        rfc3339(line["time"], "a log line's time")
        assert line["source"] in {"stdout", "stderr", "app"}, line
    log(f"lifecycle: {len(lines)} log lines, the last {lines[-1]}")
    assert len(expect(viewer.get(f"/api/v1/apps/{APP}/logs", query={"tail": 1}), 200).json()["lines"]) == 1

    # More orders while stopped, some with keys CSV must quote; started again it resumes
    # from its checkpoint: exact sums.
    produce(cluster, orders, WAVE, PRODUCTS + TRICKY_PRODUCTS)
    expect(developer.action(APP, "start"), 200)
    wait_grid(viewer, APP, orders.expected_units())
    time.sleep(1.5)  # anything re-applied would show by now
    assert expect(viewer.grid(APP, GRID), 200).json()["rows"] == orders.expected_units(), "records were applied twice"
    log(f"lifecycle: resumed and exact; the App now {check_app(wait_state(viewer, APP, 'running'))}")
    header, rows = csv_rows(expect(viewer.grid(APP, GRID, query={"format": "csv"}), 200).text)
    assert rows == orders.expected_units(), \
        f"CSV keys not quoted? {sorted(set(rows) ^ set(orders.expected_units()))}"

    # Restart: running again, still exact.
    restarted = check_app(expect(developer.action(APP, "restart"), 200).json())
    assert restarted["desired_state"] == "running", restarted
    wait_state(viewer, APP, "running")
    produce(cluster, orders, WAVE // 4)
    wait_grid(viewer, APP, orders.expected_units())

    # A new version: 200, version 2, the running app restarts on it: the new code runs (it
    # prints a line, which the log shows from stdout), its grid still exact.
    bundle2 = zip_entries([(regular("app.toml"), (ORDERSAPP / "app.toml").read_bytes()),
                           (regular("app.py"), b'print("ordersapp version 2", flush=True)\n' +
                            (ORDERSAPP / "app.py").read_bytes())])
    app2 = check_app(expect(developer.deploy(bundle2), 200).json())
    assert app2["name"] == APP and app2["version"] == 2 and digest(bundle2) in app2["bundle_digest"], app2
    assert (bundle_path(server, tenant, bundle2) / "app.toml").exists()
    poll(lambda: viewer.app(APP), lambda r: r.status == 200 and r.json()["version"] == 2 and r.json()["state"] == "running",
         60, "version 2 running")
    poll(lambda: expect(viewer.get(f"/api/v1/apps/{APP}/logs"), 200).json()["lines"],
         lambda lines: any(line["source"] == "stdout" and line["message"] == "ordersapp version 2" for line in lines),
         20, "version 2's line on stdout in the log")
    produce(cluster, orders, WAVE // 4)
    wait_grid(viewer, APP, orders.expected_units())

    # The tenant's audit has the developer's actions, newest first.
    entries = audit(tenant.admin)
    assert all(entry["tenant"] == tenant.name for entry in entries), entries[:5]
    assert any(entry["actor"] == developer_token["id"] for entry in entries), \
        f"no audit entry with the developer's token id {developer_token['id']}: {entries[:5]}"
    assert all(entry["source"] == "127.0.0.1" for entry in entries), f"audit source is not the client address: {entries[:3]}"
    times = [rfc3339(entry["time"], "an audit entry's time") for entry in entries]
    assert times == sorted(times, reverse=True), "audit entries are not newest first"
    assert len(audit(tenant.admin, limit=1)) == 1

    # Delete: 204, then the app, its grids and its log are gone.
    expect(developer.delete(f"/api/v1/apps/{APP}"), 204)
    expect(viewer.app(APP), 404, "not_found")
    expect(viewer.grid(APP, GRID), 404, "not_found")
    expect(viewer.get(f"/api/v1/apps/{APP}/grids"), 404, "not_found")
    expect(viewer.get(f"/api/v1/apps/{APP}/logs"), 404, "not_found")
    expect(developer.action(APP, "start"), 404, "not_found")
    assert app_names(viewer) == []
    assert expect(op.get(f"/api/v1/tenants/{tenant.name}"), 200).json()["apps"] == 0
    kept = [entry for entry in audit(tenant.admin) if entry["target"] == APP]
    assert len(kept) >= 5, f"the deleted app's audit entries are gone (docs/api.md: the audit stays): {kept}"

    # Deployed again it is a new app with no state: version 1, no grids; started, it reads
    # the topic from the beginning (were its offsets kept, the grid would lack the orders).
    again = check_app(expect(developer.deploy(bundle), 201).json())
    assert again["version"] == 1 and again["records"] == 0, again
    assert expect(viewer.get(f"/api/v1/apps/{APP}/grids"), 200).json()["grids"] == [], "a deleted app's grids came back"
    expect(developer.action(APP, "start"), 200)
    wait_grid(viewer, APP, orders.expected_units())
    expect(developer.delete(f"/api/v1/apps/{APP}"), 204)


def at_once(client: Client, actions: list) -> list:
    """The answers to POST /apps/{APP}/{action} for every action of `actions`, all sent at
    the same moment (a thread each)."""
    barrier = threading.Barrier(len(actions))
    answers: list = [None] * len(actions)

    def act(index: int) -> None:
        barrier.wait(10)
        answers[index] = client.action(APP, actions[index])

    threads = [threading.Thread(target=act, args=(n,)) for n in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_concurrent_starts_and_stops_converge(platform):
    """Starts and stops of one app at once, in rounds: every request answers 200, the app
    ends in the state its desired state says, and once running its grid is exact (no batch
    applied twice across the churn)."""
    tenant = create_tenant(platform, "churn")
    developer, _ = create_token(tenant.admin, "developer")
    expect(developer.deploy(zip_directory(ORDERSAPP)), 201)
    if platform.orders.count == 0:
        produce(platform.cluster, platform.orders, WAVE)
    rounds = [["start", "stop"] * 4, ["stop", "start"] * 4, ["start"] * 3 + ["stop"] * 3]
    for actions in rounds:
        for answer in at_once(developer, actions):
            assert answer is not None and answer.status == 200, answer

        def settled(answer: Response) -> bool:
            app = answer.json()
            return (app["desired_state"], app["state"]) in {("running", "running"), ("stopped", "stopped")}

        app = poll(lambda: developer.app(APP), settled, 30, f"the app to settle after {actions}", interval=0.25).json()
        log(f"churn: {actions} -> desired {app['desired_state']}, state {app['state']}")
    expect(developer.action(APP, "start"), 200)
    wait_grid(developer, APP, platform.orders.expected_units())
    expect(developer.delete(f"/api/v1/apps/{APP}"), 204)


def test_logs_tail(platform):
    """`tail`: the last N lines, oldest first; 100 without it."""
    tenant = create_tenant(platform, "tail")
    developer, _ = create_token(tenant.admin, "developer")
    code = b"for n in range(300):\n    print('line', n)\nimport sys\nsys.stdout.flush()\n" + \
        (ORDERSAPP / "app.py").read_bytes()
    expect(developer.deploy(zip_entries([(regular("app.toml"), (ORDERSAPP / "app.toml").read_bytes()),
                                         (regular("app.py"), code)])), 201)
    expect(developer.action(APP, "start"), 200)

    def printed() -> list:
        lines = expect(developer.get(f"/api/v1/apps/{APP}/logs", query={"tail": 10000}), 200).json()["lines"]
        return [line["message"] for line in lines if line["source"] == "stdout"]

    everything = poll(printed, lambda found: "line 299" in found, 30, "the app's 300 lines in its log")
    assert everything == [f"line {n}" for n in range(300)], everything[:5]
    default = expect(developer.get(f"/api/v1/apps/{APP}/logs"), 200).json()["lines"]
    assert len(default) == 100, f"{len(default)} lines without tail, not 100"
    five = [line["message"] for line in
            expect(developer.get(f"/api/v1/apps/{APP}/logs", query={"tail": 5}), 200).json()["lines"]]
    assert five == [f"line {n}" for n in range(295, 300)], five
    expect(developer.delete(f"/api/v1/apps/{APP}"), 204)
