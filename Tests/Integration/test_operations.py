"""Operating the platform (the quotas, topic ACLs, reconcile, metrics and CLI issue's
acceptance), against docs/api.md and docs/operations.md over a real server with embedded Kafka:

- an app quota changed on a running app reaches its cgroup within a second, without a restart;
- a start beyond the tenant's memory quota is refused with the numbers (and a deploy beyond
  max_apps, an app quota beyond the tenant's);
- a topic outside the tenant's ACL ends the app with crash reason `acl`, the topic and the
  rules; allowed, the app runs;
- the server stopped and started again with three apps: the two that should run come back by
  themselves, exact from their checkpoints; the stopped one stays stopped;
- /metrics parses as Prometheus text and its counters follow the traffic;
- the `aerogrid` CLI against the server: output, --json, exit codes.

One server and one Kafka cluster for the module (the restart test has a server of its own on
the same cluster), a tenant of its own for each test. Every order goes through `ops.orders`, so
an ordersapp that has read the whole topic has the grid `ops.orders.expected_units()`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.harness import AEROGRID, CGROUP_ROOT, ORDERSAPP, REPO, TOPIC, log, produce
from support.server import Client, Server, expect, free_port, new_operator_token, poll, zip_directory

APP = "ordersapp"
GRID = "product_sum"
WAVE = 1_000
MIB = 1 << 20
# The server's defaults (docs/api.md): an app's quota from sandbox-profiles/python.json, a tenant's.
APP_DEFAULTS = {"memory_bytes": 256 * MIB, "cpus": 0.5, "pids": 64, "grid_rows": 100_000}
TENANT_DEFAULTS = {"max_apps": 20, "memory_bytes": 4 << 30, "cpus": 2, "max_connections": 200, "max_subscriptions": 2000}
CGROUP_V2 = (CGROUP_ROOT / "cgroup.controllers").exists()
CFS_PERIOD = 100_000


# --------------------------------------------------------------------------------------------
# The module's server


pytestmark = pytest.mark.platform(seed=33)


@pytest.fixture(scope="module")
def ops(request):
    """The module's platform, started once the binary is known to have the CLI's commands
    these tests run."""
    probe = subprocess.run([str(AEROGRID), "quota", "--help"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:  # a broken binary fails every test here, it does not skip them
        pytest.fail(f"`{AEROGRID} quota --help` failed ({probe.returncode}): {probe.stderr.strip()[:500]}")
    return request.getfixturevalue("platform")


def tenant_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def create_tenant(server: Server, prefix: str, topics: list | None = None) -> SimpleNamespace:
    """A new tenant with an admin, a developer and a viewer. `topics`: its ACL (None: the default)."""
    name = tenant_name(prefix)
    body = {"name": name} if topics is None else {"name": name, "topics": topics}
    created = expect(server.operator.post("/api/v1/tenants", json_body=body), 201).json()
    admin = server.client(created["admin_token"]["secret"])
    tenant = SimpleNamespace(name=name, admin=admin)
    for role in ("developer", "viewer"):
        token = expect(admin.post("/api/v1/tokens", json_body={"name": role, "role": role}), 201).json()
        setattr(tenant, role, admin.as_token(token["secret"]))
    return tenant


def named_bundle(name: str) -> bytes:
    """The ordersapp as an app called `name` (its app.toml's name rewritten)."""
    directory = named_directory(name)
    try:
        return zip_directory(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def named_directory(name: str) -> Path:
    """A copy of the ordersapp's directory whose app.toml names it `name`."""
    import tempfile
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    directory.chmod(0o755)
    for path in ORDERSAPP.iterdir():
        if path.is_file():
            shutil.copy(path, directory / path.name)
    manifest = (ORDERSAPP / "app.toml").read_text()
    (directory / "app.toml").write_text(re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', manifest))
    return directory


def app_json(client: Client, app: str) -> dict:
    return expect(client.app(app), 200).json()


def wait_running(client: Client, app: str, timeout: float = 60.0) -> dict:
    """Polls the app until it runs; an app that crashes or backs off meanwhile fails at once."""
    def reached(answer) -> bool:
        if answer.status != 200:
            return False
        found = answer.json()
        if found["state"] in ("crashed", "backoff"):
            raise AssertionError(f"app {app} failed while waiting for it to run: {found}")
        return found["state"] == "running"
    return poll(lambda: client.app(app), reached, timeout, f"app {app} running").json()


def wait_grid(client: Client, app: str, expected: dict, timeout: float = 60.0) -> dict:
    answer = poll(lambda: client.grid(app, GRID), lambda r: r.status == 200 and r.json().get("rows") == expected,
                  timeout, f"grid {app}/{GRID} to equal the sums of {sum(v['units_sold'] for v in expected.values())} units")
    return answer.json()


# --------------------------------------------------------------------------------------------
# cgroups


def cgroup_file(tenant: str, app: str, controller: str, name: str) -> Path:
    if CGROUP_V2:
        return CGROUP_ROOT / "aerogrid" / tenant / app / name
    return CGROUP_ROOT / controller / "aerogrid" / tenant / app / name


def cgroup_limits(tenant: str, app: str) -> dict | None:
    """The app's cgroup limits as {memory_bytes, pids, cpu_quota_us, cpu_period_us} (a value
    of None is "max"/unlimited); None when the cgroup is not there."""
    def number(text: str):
        text = text.strip()
        return None if text in ("max", "-1") else int(text)
    try:
        if CGROUP_V2:
            quota, period = cgroup_file(tenant, app, "cpu", "cpu.max").read_text().split()
            memory = cgroup_file(tenant, app, "memory", "memory.max").read_text()
        else:
            quota = cgroup_file(tenant, app, "cpu", "cpu.cfs_quota_us").read_text()
            period = cgroup_file(tenant, app, "cpu", "cpu.cfs_period_us").read_text()
            memory = cgroup_file(tenant, app, "memory", "memory.limit_in_bytes").read_text()
        pids = cgroup_file(tenant, app, "pids", "pids.max").read_text()
    except OSError:
        return None
    return {"memory_bytes": number(memory), "pids": number(pids), "cpu_quota_us": number(quota),
            "cpu_period_us": number(period)}


def expected_limits(quota: dict) -> dict:
    return {"memory_bytes": quota["memory_bytes"], "pids": quota["pids"],
            "cpu_quota_us": round(quota["cpus"] * CFS_PERIOD), "cpu_period_us": CFS_PERIOD}


def cgroup_processes(tenant: str, app: str) -> list:
    """The app's processes: none once its group is gone; an error when the controller has
    no aerogrid root at all (an empty list would then prove nothing)."""
    procs = cgroup_file(tenant, app, "pids", "cgroup.procs")
    if not procs.parent.parent.parent.is_dir():
        raise AssertionError(f"no aerogrid cgroup root at {procs.parent.parent.parent}")
    try:
        return sorted(int(p) for p in procs.read_text().split())
    except FileNotFoundError:
        return []


def wait_cgroup(tenant: str, app: str, expected: dict, timeout: float) -> float:
    """Seconds until the app's cgroup has `expected` limits; fails after `timeout` with what
    the files held."""
    began = time.monotonic()
    while True:
        found = cgroup_limits(tenant, app)
        elapsed = time.monotonic() - began
        if found == expected:
            return elapsed
        if elapsed > timeout:
            where = cgroup_file(tenant, app, "memory", "").parent
            raise AssertionError(f"the cgroup of {tenant}/{app} ({where}, v{2 if CGROUP_V2 else 1}) has {found}, "
                                 f"not {expected}, {elapsed:.3f} s after the quota change")
        time.sleep(0.005)


# --------------------------------------------------------------------------------------------
# Quotas


def test_a_quota_change_reaches_the_running_apps_cgroup_at_once(ops):
    server = ops.server
    op = server.operator
    tenant = create_tenant(server, "live", topics=[TOPIC])
    expect(tenant.developer.deploy(zip_directory(ORDERSAPP)), 201)
    expect(tenant.developer.action(APP, "start"), 200)
    before = wait_running(tenant.viewer, APP)
    assert before["quota"] == APP_DEFAULTS, before
    processes = poll(lambda: cgroup_processes(tenant.name, APP), bool, 20, f"processes in {tenant.name}/{APP}'s cgroup")
    assert cgroup_limits(tenant.name, APP) == expected_limits(APP_DEFAULTS), \
        f"the running app's cgroup does not have the default quota {APP_DEFAULTS}: {cgroup_limits(tenant.name, APP)}"

    wanted = {"memory_bytes": 192 * MIB, "pids": 48, "cpus": 0.25}
    began = time.monotonic()
    answer = op.request("PUT", f"/api/v1/tenants/{tenant.name}/apps/{APP}/quota", json_body=wanted)
    answered = time.monotonic() - began
    assert answer.status == 200, answer
    quota = {**APP_DEFAULTS, **wanted}
    assert answer.json() == quota, answer
    seconds = answered + wait_cgroup(tenant.name, APP, expected_limits(quota), timeout=1.0 - answered)
    log(f"quota: the new limits were in {tenant.name}/{APP}'s cgroup (v{2 if CGROUP_V2 else 1}) {seconds * 1000:.1f} ms "
        f"after the PUT was sent (the PUT answered in {answered * 1000:.1f} ms); cpu quota "
        f"{cgroup_limits(tenant.name, APP)['cpu_quota_us']} us per {CFS_PERIOD} us")
    assert seconds <= 1.0

    # The app kept running: the same processes, no restart.
    time.sleep(0.5)
    after = app_json(tenant.viewer, APP)
    assert (after["state"], after["restarts"], after["crash_reason"]) == ("running", before["restarts"], None), after
    assert cgroup_processes(tenant.name, APP) == processes, \
        f"the app's processes changed: {processes} before the quota change, {cgroup_processes(tenant.name, APP)} after"
    assert after["quota"] == quota, after
    assert expect(op.get(f"/api/v1/tenants/{tenant.name}/apps/{APP}/quota"), 200).json() == quota
    used = expect(op.get(f"/api/v1/tenants/{tenant.name}/quota"), 200).json()["used"]
    assert used == {"apps": 1, "running_apps": 1, "memory_bytes": 192 * MIB, "cpus": 0.25}, used

    # null: back to the defaults, in the cgroup too.
    began = time.monotonic()
    answer = op.request("PUT", f"/api/v1/tenants/{tenant.name}/apps/{APP}/quota",
                        json_body={"memory_bytes": None, "pids": None, "cpus": None})
    assert expect(answer, 200).json() == APP_DEFAULTS, answer
    assert time.monotonic() - began + wait_cgroup(tenant.name, APP, expected_limits(APP_DEFAULTS), timeout=1.0) <= 1.0
    assert cgroup_processes(tenant.name, APP) == processes
    assert app_json(tenant.viewer, APP)["restarts"] == before["restarts"]
    expect(tenant.developer.action(APP, "stop"), 200)


def test_an_app_over_its_tenants_memory_quota_cannot_start(ops):
    server = ops.server
    op = server.operator
    tenant = create_tenant(server, "over", topics=[TOPIC])
    quota_path = f"/api/v1/tenants/{tenant.name}/quota"
    app_quota_path = f"/api/v1/tenants/{tenant.name}/apps/{APP}/quota"
    assert {k: v for k, v in expect(op.get(quota_path), 200).json().items() if k != "used"} == TENANT_DEFAULTS
    created = expect(tenant.developer.deploy(zip_directory(ORDERSAPP)), 201).json()
    assert created["quota"] == APP_DEFAULTS, created

    limited = expect(op.request("PUT", quota_path, json_body={"memory_bytes": 128 * MIB}), 200).json()
    assert limited["memory_bytes"] == 128 * MIB and limited["max_apps"] == 20, limited

    for action in ("start", "restart"):
        answer = expect(tenant.developer.action(APP, action), 403, "over_quota")
        message = answer.error["message"]
        log(f"over quota: {action} refused: {message}")
        assert "256 MiB" in message and "128 MiB" in message, f"the refusal lacks the numbers: {message!r}"
        app = app_json(tenant.viewer, APP)
        assert (app["desired_state"], app["state"]) == ("stopped", "created"), f"a refused {action} changed the app: {app}"
    assert cgroup_limits(tenant.name, APP) is None, "a refused start made a cgroup"

    # An app quota beyond the tenant's whole quota is refused too, and nothing is stored.
    answer = expect(op.request("PUT", app_quota_path, json_body={"memory_bytes": 512 * MIB}), 403, "over_quota")
    assert str(512 * MIB) in answer.error["message"] and str(128 * MIB) in answer.error["message"], answer
    assert expect(op.get(app_quota_path), 200).json() == APP_DEFAULTS

    # Within it, the app starts; a second one would take the tenant over and is refused with
    # what the first uses.
    expect(op.request("PUT", app_quota_path, json_body={"memory_bytes": 96 * MIB}), 200)
    assert expect(tenant.developer.action(APP, "start"), 200).json()["desired_state"] == "running"
    assert expect(op.get(quota_path), 200).json()["used"] == \
        {"apps": 1, "running_apps": 1, "memory_bytes": 96 * MIB, "cpus": 0.5}
    expect(tenant.developer.deploy(named_bundle("second")), 201)
    answer = expect(tenant.developer.action("second", "start"), 403, "over_quota")
    message = answer.error["message"]
    assert all(number in message for number in ("256 MiB", "128 MiB", "96 MiB")), message
    assert app_json(tenant.viewer, "second")["desired_state"] == "stopped"

    # max_apps: a third app is refused at deploy; a new version of an existing one is not.
    expect(op.request("PUT", quota_path, json_body={"max_apps": 2}), 200)
    answer = expect(tenant.developer.deploy(named_bundle("third")), 403, "over_quota")
    assert "max_apps 2" in answer.error["message"], answer
    expect(tenant.developer.app("third"), 404, "not_found")
    assert expect(tenant.developer.deploy(named_bundle("second")), 200).json()["version"] == 2
    reset = expect(op.request("PUT", quota_path, json_body={"max_apps": None, "memory_bytes": None}), 200).json()
    assert {k: v for k, v in reset.items() if k != "used"} == TENANT_DEFAULTS, reset

    # The tenant sees its own quota and ACL.
    own = expect(tenant.viewer.get("/api/v1/quota"), 200).json()
    assert own["topics"] == [TOPIC] and own["quota"]["used"]["running_apps"] == 1, own
    expect(tenant.developer.action(APP, "stop"), 200)


# --------------------------------------------------------------------------------------------
# Topic ACLs


def test_a_topic_outside_the_acl_is_refused_with_the_topic_and_the_rules(ops):
    server, op = ops.server, ops.server.operator
    produce(ops.cluster, ops.orders, WAVE)
    tenant = create_tenant(server, "acl")
    acl_path = f"/api/v1/tenants/{tenant.name}/acl"
    rules = [f"{tenant.name}.*"]
    assert expect(op.get(acl_path), 200).json() == {"topics": rules}, "the default ACL is the tenant's own prefix"

    expect(tenant.developer.deploy(zip_directory(ORDERSAPP)), 201)
    expect(tenant.developer.action(APP, "start"), 200)
    refused = poll(lambda: tenant.viewer.app(APP), lambda r: r.status == 200 and r.json()["crash_reason"] is not None,
                   30, "the app's crash").json()
    log(f"acl: {refused['state']}, {refused['crash_reason']}: {refused['last_crash']}")
    assert refused["state"] in ("crashed", "backoff") and refused["crash_reason"] == "acl", refused
    assert refused["desired_state"] == "running", refused
    assert f"'{TOPIC}'" in refused["last_crash"] or f" {TOPIC} " in refused["last_crash"], refused["last_crash"]
    assert all(rule in refused["last_crash"] for rule in rules), refused["last_crash"]
    unread = tenant.viewer.grid(APP, GRID)  # nothing was read
    assert unread.status == 404 or unread.json()["rows"] == {}, unread

    allowed = expect(op.request("PUT", acl_path, json_body={"topics": [TOPIC, f"{tenant.name}.*"]}), 200).json()
    assert allowed == {"topics": [TOPIC, f"{tenant.name}.*"]}, allowed
    assert expect(op.get(acl_path), 200).json() == allowed
    assert expect(tenant.viewer.get("/api/v1/quota"), 200).json()["topics"] == allowed["topics"]
    expect(tenant.developer.action(APP, "restart"), 200)
    running = wait_running(tenant.viewer, APP)
    assert running["crash_reason"] is None, running
    wait_grid(tenant.viewer, APP, ops.orders.expected_units())

    # Rules are checked for their form.
    for bad in (["or*ders"], ["bad topic"], [""], "orders", [1]):
        expect(op.request("PUT", acl_path, json_body={"topics": bad}), 400, "bad_request")
    # A rule naming internal topics (AeroGrid's control plane, Kafka's own) is refused, saying why.
    for internal in (["_aerogrid.*"], ["_aerogrid.prod.config"], ["__consumer_offsets"]):
        refused = expect(op.request("PUT", acl_path, json_body={"topics": internal}), 400, "bad_request")
        assert "internal topics" in refused.error["message"], refused
    assert expect(op.get(acl_path), 200).json() == allowed
    expect(tenant.developer.action(APP, "stop"), 200)


# --------------------------------------------------------------------------------------------
# Reconcile: the server stopped and started again


def test_restart_the_server_with_three_apps(ops, testdir):
    cluster, orders = ops.cluster, ops.orders
    token = new_operator_token()
    names = ["orders-a", "orders-b", "orders-c", "orders-d"]  # three to run, one stopped
    first = Server(testdir, cluster.bootstrap, name="first", operator_token=token)
    try:
        tenant = create_tenant(first, "reboot", topics=[TOPIC])
        for name in names:
            expect(tenant.developer.deploy(named_bundle(name)), 201)
            expect(tenant.developer.action(name, "start"), 200)
        produce(cluster, orders, WAVE)
        for name in names:
            wait_grid(tenant.viewer, name, orders.expected_units())
        stopped = expect(tenant.developer.action("orders-d", "stop"), 200).json()
        assert stopped["desired_state"] == "stopped", stopped
        poll(lambda: tenant.viewer.app("orders-d"), lambda r: r.json()["state"] == "stopped", 40, "orders-d stopped")
        before_stop = expect(tenant.viewer.grid("orders-d", GRID), 200).json()["rows"]
        assert before_stop == orders.expected_units()
    finally:
        began = time.monotonic()
        status = first.stop(timeout=60)
    log(f"restart: the server with 3 running apps exited with {status} {time.monotonic() - began:.2f} s after SIGTERM")
    assert status == 0, f"exit status {status} after SIGTERM:\n{first.stderr_tail()}"

    produce(cluster, orders, WAVE)
    began = time.monotonic()
    again = Server(testdir, cluster.bootstrap, name="again", operator_token=token, data_dir=first.data_dir)
    try:
        viewer = again.client(tenant.viewer.token)
        for name in names[:3]:
            app = wait_running(viewer, name, timeout=30)
            assert app["desired_state"] == "running", app
        log(f"restart: all three apps running {time.monotonic() - began:.2f} s after the server started, without a start call")
        for name in names[:3]:
            wait_grid(viewer, name, orders.expected_units())
        log(f"restart: all three grids exact {time.monotonic() - began:.2f} s after the server started")
        time.sleep(1.5)  # anything applied twice would show by now
        for name in names[:3]:
            app = app_json(viewer, name)
            assert expect(viewer.grid(name, GRID), 200).json()["rows"] == orders.expected_units(), \
                f"{name}: records were applied twice (or lost) across the restart"
            assert app["restarts"] == 0 and app["crash_reason"] is None, app
            log(f"restart: {name} applied {app['records']} records since the server started ({WAVE} were new)")

        stopped = app_json(viewer, "orders-d")
        assert stopped["desired_state"] == "stopped" and stopped["state"] in ("created", "stopped"), stopped
        assert stopped["usage"] is None and stopped["lag"] is None, stopped
        assert cgroup_processes(tenant.name, "orders-d") == [], "the stopped app has processes"
        assert expect(viewer.get("/api/v1/apps/orders-d/logs"), 200).json() == {"lines": []}, \
            "the stopped app has a log: a runner ran it after the restart"
        kept = expect(viewer.grid("orders-d", GRID), 200).json()["rows"]
        assert kept == before_stop, "the stopped app's grid is not the one it had when it stopped"
        assert kept != orders.expected_units()
    finally:
        assert again.stop(timeout=60) == 0, again.stderr_tail()


# --------------------------------------------------------------------------------------------
# Metrics


def scrape(client: Client) -> dict:
    """{family name: family} of the server's /metrics, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    answer = expect(client.get("/metrics", headers={"Accept": "text/plain"}), 200)
    assert answer.content_type.startswith("text/plain"), answer.content_type
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    assert families, f"no metrics in {answer.text[:500]!r}"
    return families


def sample(families: dict, family: str, sample_name: str, **labels) -> float | None:
    for found in families[family].samples if family in families else []:
        if found.name == sample_name and all(found.labels.get(k) == v for k, v in labels.items()):
            return found.value
    return None


def requests_total(families: dict, **labels) -> float:
    return sum(s.value for s in families["aerogrid_http_requests"].samples
               if s.name == "aerogrid_http_requests_total" and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_parse_and_follow_the_traffic(ops):
    pytest.importorskip("prometheus_client", reason="pip install prometheus-client")
    server, op = ops.server, ops.server.operator
    tenant = create_tenant(server, "metrics", topics=[TOPIC])
    expect(tenant.developer.deploy(zip_directory(ORDERSAPP)), 201)
    expect(tenant.developer.action(APP, "start"), 200)
    wait_running(tenant.viewer, APP)
    wait_grid(tenant.viewer, APP, ops.orders.expected_units())
    labels = {"tenant": tenant.name, "app": APP}

    before = scrape(op)
    assert before["aerogrid_http_requests"].type == "counter" and before["aerogrid_app_records"].type == "counter"
    records_before = sample(before, "aerogrid_app_records", "aerogrid_app_records_total", **labels)
    assert records_before is not None, f"no aerogrid_app_records_total for {labels}"
    requests_before = requests_total(before)
    forbidden_before = requests_total(before, method="GET", status="403")

    # Tenant tokens may not read the metrics; no token is 401.
    for client in (tenant.admin, tenant.viewer):
        expect(client.get("/metrics"), 403, "forbidden")
    expect(server.client().get("/metrics"), 401, "unauthorized")
    produce(ops.cluster, ops.orders, WAVE)
    polls = 0

    def fetch():
        nonlocal polls
        polls += 1
        return tenant.viewer.grid(APP, GRID)
    poll(fetch, lambda r: r.status == 200 and r.json()["rows"] == ops.orders.expected_units(), 60, "the new orders")

    after = scrape(op)
    records_after = sample(after, "aerogrid_app_records", "aerogrid_app_records_total", **labels)
    log(f"metrics: records_total {records_before:.0f} -> {records_after:.0f} ({WAVE} produced); http requests "
        f"{requests_before:.0f} -> {requests_total(after):.0f} ({polls} grid reads, 4 on /metrics between the scrapes)")
    assert records_after - records_before == WAVE, f"records_total grew by {records_after - records_before}, not {WAVE}"
    assert requests_total(after) - requests_before >= polls + 4, "aerogrid_http_requests_total did not count the requests"
    assert requests_total(after, method="GET", status="403") - forbidden_before == 2, \
        "the two 403s on /metrics are not counted as status 403"
    assert sample(after, "aerogrid_app_running", "aerogrid_app_running", **labels) == 1.0
    assert sample(after, "aerogrid_apps_running", "aerogrid_apps_running") >= 1
    assert sample(after, "aerogrid_app_lag_records", "aerogrid_app_lag_records", **labels) == 0
    assert sample(after, "aerogrid_app_memory_bytes", "aerogrid_app_memory_bytes", **labels) > 0
    assert sample(after, "aerogrid_app_pids", "aerogrid_app_pids", **labels) >= 1
    assert sample(after, "aerogrid_app_restarts", "aerogrid_app_restarts_total", **labels) == 0
    batches = sample(after, "aerogrid_app_batch_latency_seconds", "aerogrid_app_batch_latency_seconds_count", **labels)
    assert batches is not None and batches > 0, "no batch latencies after the new orders"
    expect(tenant.developer.action(APP, "stop"), 200)


# --------------------------------------------------------------------------------------------
# The CLI


def cli(*args: str, token: str | None = None, server: Server | None = None, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """`aerogrid ARGS…` with AEROGRID_SERVER and AEROGRID_TOKEN from `server` and `token`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AEROGRID_")}
    if server is not None:
        environment["AEROGRID_SERVER"] = f"http://{server.host}:{server.port}"
    if token is not None:
        environment["AEROGRID_TOKEN"] = token
    environment.update(env or {})
    result = subprocess.run([str(AEROGRID), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            env=environment)
    log(f"cli: aerogrid {' '.join(args)} -> {result.returncode}; stdout {result.stdout.strip()[:200]!r}; "
        f"stderr {result.stderr.strip()[-200:]!r}")
    return result


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args[1:]} exited with {result.returncode}:\n{result.stderr}"
    return result


def secret_in(output: str) -> str:
    found = re.search(r"\(shown once\): (agt_[A-Za-z0-9_-]{43})$", output, re.MULTILINE)
    assert found, f"no secret in {output!r}"
    return found.group(1)


def test_cli_against_the_server(ops):
    server = ops.server
    operator = server.operator_token
    name = tenant_name("cli")

    created = ok(cli("tenant", "create", name, "--topics", f"{TOPIC},{name}.*", server=server, token=operator))
    assert f"created tenant {name}" in created.stdout, created.stdout
    admin = secret_in(created.stdout)
    made = ok(cli("token", "create", "ci", "--role", "developer", server=server, token=admin))
    assert "(developer)" in made.stdout, made.stdout
    developer = secret_in(made.stdout)
    viewer = json.loads(ok(cli("token", "create", "dash", "--role", "viewer", "--json", server=server, token=admin)).stdout)
    assert viewer["role"] == "viewer" and viewer["tenant"] == name, viewer

    deployed = ok(cli("app", "deploy", "Examples/ordersapp", server=server, token=developer))
    assert re.search(r"uploading ordersapp: 100% of \d+ bytes", deployed.stderr), f"no progress line: {deployed.stderr!r}"
    assert re.search(r"^deployed ordersapp version 1\b", deployed.stdout, re.MULTILINE), deployed.stdout
    started = ok(cli("app", "start", APP, server=server, token=developer))
    assert "(desired running)" in started.stdout, started.stdout

    produce(ops.cluster, ops.orders, WAVE)
    api = server.client(developer)
    wait_running(api, APP)
    wait_grid(api, APP, ops.orders.expected_units())
    grid = ok(cli("grid", "get", APP, GRID, "--csv", server=server, token=viewer["secret"]))
    rows = list(csv.reader(io.StringIO(grid.stdout)))
    assert rows[0] == ["key", "units_sold"], rows[:2]
    assert {row[0]: {"units_sold": int(row[1])} for row in rows[1:] if row} == ops.orders.expected_units()
    table = ok(cli("grid", "get", APP, GRID, server=server, token=viewer["secret"]))
    assert table.stdout.splitlines()[0].split() == ["KEY", "UNITS_SOLD"], table.stdout

    ok(cli("app", "logs", APP, server=server, token=viewer["secret"]))
    status = json.loads(ok(cli("app", "status", APP, "--json", server=server, token=viewer["secret"])).stdout)
    assert (status["name"], status["state"], status["desired_state"]) == (APP, "running", "running"), status
    assert status["quota"] == APP_DEFAULTS, status
    table = ok(cli("app", "status", APP, server=server, token=viewer["secret"])).stdout
    assert re.search(r"^state\s+running$", table, re.MULTILINE), table
    listed = ok(cli("app", "list", server=server, token=viewer["secret"])).stdout
    assert re.search(rf"^{APP}\s+1\s+running\s+running\b", listed, re.MULTILINE), listed

    # --server and --token instead of the environment.
    url = f"http://{server.host}:{server.port}"
    flagged = json.loads(ok(cli("app", "status", APP, "--server", url, "--token", viewer["secret"], "--json")).stdout)
    assert flagged["name"] == APP, flagged

    # Exit codes: 2 not found, 3 not allowed, 4 unreachable, 1 refused (over quota), 64 usage.
    missing = cli("app", "status", "nope", server=server, token=viewer["secret"])
    assert missing.returncode == 2 and "not_found" in missing.stderr, missing
    forbidden = cli("app", "start", APP, server=server, token=viewer["secret"])
    assert forbidden.returncode == 3 and "forbidden" in forbidden.stderr, forbidden
    unreachable = cli("app", "status", APP, "--server", f"http://127.0.0.1:{free_port()}", "--token", developer)
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr, unreachable
    for usage in (["app", "status"], ["app", "frobnicate"], ["quota", "set", name, "--pids", "5"],
                  ["app", "start", APP, "--no-such-flag"]):
        result = cli(*usage, server=server, token=operator)
        assert result.returncode == 64, f"aerogrid {' '.join(usage)}: exit {result.returncode}, not 64: {result.stderr}"
    without_token = cli("app", "status", APP, server=server)
    assert without_token.returncode == 64 and "token" in without_token.stderr, without_token

    # quota and acl with the operator's token.
    ok(cli("quota", "set", name, APP, "--memory", "192M", "--cpus", "0.25", server=server, token=operator))
    assert expect(server.operator.get(f"/api/v1/tenants/{name}/apps/{APP}/quota"), 200).json() == \
        {**APP_DEFAULTS, "memory_bytes": 192 * MIB, "cpus": 0.25}
    shown = ok(cli("quota", "get", name, server=server, token=operator)).stdout
    assert re.search(rf"^memory_bytes\s+{4 << 30}\s+{192 * MIB}$", shown, re.MULTILINE), shown
    refused = cli("quota", "set", name, APP, "--memory", "8G", server=server, token=operator)
    assert refused.returncode == 1 and "over_quota" in refused.stderr, refused
    set_rules = ok(cli("acl", "set", name, TOPIC, "market.*", server=server, token=operator)).stdout
    assert f"tenant {name} may read: {TOPIC} market.*" in set_rules, set_rules
    assert ok(cli("acl", "get", name, server=server, token=operator)).stdout.split() == [TOPIC, "market.*"]
    assert expect(server.operator.get(f"/api/v1/tenants/{name}/acl"), 200).json() == {"topics": [TOPIC, "market.*"]}

    stopped = ok(cli("app", "stop", APP, server=server, token=developer))
    assert "(desired stopped)" in stopped.stdout, stopped.stdout
    logs = ok(cli("app", "logs", APP, server=server, token=viewer["secret"])).stdout.splitlines()
    assert logs and all(re.match(r"^\S+ (stdout|stderr|app) \S+: ", line) for line in logs), logs
    deleted = ok(cli("app", "delete", APP, server=server, token=developer))
    assert f"deleted {APP}" in deleted.stdout, deleted.stdout
    expect(api.app(APP), 404, "not_found")
    gone = cli("app", "status", APP, server=server, token=developer)
    assert gone.returncode == 2, gone
