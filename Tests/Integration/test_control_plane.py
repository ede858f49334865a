"""The control plane (`aerogrid serve`) over real HTTP, against docs/api.md: one server and
one embedded Kafka cluster for the module, a tenant (or two) of its own for each test.

- an app's whole life through the API: deploy, start, grids exact against the produced
  orders, logs, CSV, stop, resume from the checkpoint without double counting, restart, a
  new version running its own code, delete, and deployed again with no state;
- bundles the server must refuse (zip slip, symlinks, bombs …), each leaving nothing on
  disk; concurrent deploys; concurrent starts and stops;
- tokens and roles: 401, 403, another tenant's app as 404, and nothing changed by a refusal;
- the process: the operator token printed once, HTTPS beside plain HTTP, /readyz without
  Kafka, a bad configuration, SIGTERM with a running app and a followed log;
- the OpenAPI document: valid, served as in the repository, every route reached, and
  schemathesis finds no 5xx and no answer outside the document.

Every order produced goes through the module's `Orders`, so an ordersapp that has read the
whole topic has the grid `cp.orders.expected_units()`.
"""

from __future__ import annotations

import csv
import datetime
import functools
import http.client
import io
import json
import os
import re
import secrets
import shutil
import ssl
import stat
import struct
import subprocess
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import (AEROGRID, ORDERSAPP, PRODUCTS, TOPIC, KafkaCluster, Orders, log, produce,
                     remove_tenant_cgroups)
from server import (OPENAPI, Client, Response, Server, digest, expect, failed, free_port, new_operator_token, poll, regular,
                    tree, wait_state, zip_directory, zip_entries)

APP = "ordersapp"
GRID = "product_sum"
WAVE = 2_000
STATES = {"created", "starting", "running", "stopping", "stopped", "crashed", "backoff"}
CRASH_REASONS = {None, "exit", "signal", "oom", "seccomp", "protocol", "heartbeat", "startup", "quota", "acl"}
# Grid keys a CSV writer must quote: a comma, a double quote, a line break.
TRICKY_PRODUCTS = ["Comma, Inc.", 'The "Quoted" One', "Line\nBreak"]
APP_FIELDS = {"name", "version", "bundle_digest", "entrypoint", "runtime", "desired_state", "state", "crash_reason",
              "last_crash", "restarts", "records", "lag", "usage", "quota", "created_at", "updated_at"}
TENANTS: list = []  # every tenant name made here: its cgroup directories are removed at the end
TOKEN_FIELDS = {"id", "name", "role", "tenant", "created_at", "last_used_at", "revoked_at"}


# --------------------------------------------------------------------------------------------
# The module's server


@pytest.fixture(scope="module")
def cp(workdir):
    """The control plane under test: (server, cluster, orders). Every order produced in this
    module goes through `orders`, so the expected grid is always orders.expected_units()."""
    probe = subprocess.run([str(AEROGRID), "serve", "--help"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:  # a broken binary fails every test here, it does not skip them
        pytest.fail(f"`{AEROGRID} serve --help` failed ({probe.returncode}): {probe.stderr.strip()[:500]}")
    directory = workdir / "control-plane"
    directory.mkdir(mode=0o755)
    cluster = KafkaCluster(directory, name="kafka-cp")
    server = None
    try:
        orders = Orders(directory, seed=21)
        server = Server(directory, cluster.bootstrap, operator_token=new_operator_token())
        server.wait_ready()
        yield SimpleNamespace(server=server, cluster=cluster, orders=orders, directory=directory)
    finally:
        try:
            if server is not None:
                status = server.stop()
                log(f"server: exited with {status} after SIGTERM")
        finally:
            cluster.terminate()
            remove_tenant_cgroups(TENANTS)


def tenant_name(prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    TENANTS.append(name)
    return name


def create_tenant(cp, prefix: str, orders: bool = True) -> SimpleNamespace:
    """A new tenant: its name, its admin client and the admin's NewToken. With `orders`, its
    topic ACL lets its apps read the orders topic (besides its own `<tenant>.*` topics)."""
    name = tenant_name(prefix)
    body = {"name": name, "topics": [TOPIC, f"{name}.*"]} if orders else {"name": name}
    created = expect(cp.server.operator.post("/api/v1/tenants", json_body=body), 201).json()
    assert created["tenant"]["name"] == name and created["tenant"]["apps"] == 0, created
    token = created["admin_token"]
    assert token["role"] == "admin" and token["tenant"] == name, created
    assert re.fullmatch(r"ten_[0-9a-f]{16}", created["tenant"]["id"]), created
    return SimpleNamespace(name=name, admin=cp.server.client(token["secret"]), admin_token=token, id=created["tenant"]["id"],
                           host_uid=created["tenant"]["host_uid"])


def bundle_path(server: Server, tenant: SimpleNamespace, bundle: bytes) -> Path:
    """Where the server keeps a tenant's bundle: under the tenant's id, then the zip's digest."""
    return server.data_dir / "bundles" / tenant.id / digest(bundle)


def assert_bundle_private(root: Path, tenant: SimpleNamespace) -> None:
    """Unpacked read-only, root's and the tenant's group's (its apps' uid), nobody else's."""
    for path in [root, *root.rglob("*")]:
        info = path.stat()
        expected = 0o550 if path.is_dir() else 0o440
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, tenant.host_uid, expected), \
            f"{path}: uid {info.st_uid} gid {info.st_gid} mode {oct(stat.S_IMODE(info.st_mode))}; expected root, the tenant's " \
            f"gid {tenant.host_uid} and {oct(expected)}"


def create_token(admin: Client, role: str, name: "str | None" = None) -> tuple:
    """(a client with the new token, its NewToken)."""
    token = expect(admin.post("/api/v1/tokens", json_body={"name": name or f"{role}-token", "role": role}), 201).json()
    assert token["role"] == role, token
    return admin.as_token(token["secret"]), token


def wait_grid(client: Client, app: str, expected: dict, timeout: float = 60.0) -> dict:
    """Polls the grid until its rows equal `expected`; returns the Grid."""
    def fetch():
        return client.grid(app, GRID)

    def done(answer: Response) -> bool:
        if answer.status == 200 and answer.json().get("rows") == expected:
            return True
        state = client.app(app)
        if state.status == 200 and failed(state.json()):
            raise AssertionError(f"app {app} failed while waiting for its grid: {state.json()}")
        return False

    answer = poll(fetch, done, timeout,
                  f"grid {app}/{GRID} to equal the sums of {sum(v['units_sold'] for v in expected.values())} units")
    return answer.json()


def rfc3339(value, what: str = "a timestamp") -> datetime.datetime:
    """docs/api.md: timestamps are RFC 3339, UTC."""
    assert isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]00:00)", value), \
        f"{what} is not an RFC 3339 UTC time: {value!r}"
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_app(app: dict) -> dict:
    """An App has every field of docs/api.md, with values in their enums."""
    assert APP_FIELDS <= set(app), f"the App lacks {sorted(APP_FIELDS - set(app))}: {app}"
    assert rfc3339(app["created_at"], "created_at") <= rfc3339(app["updated_at"], "updated_at"), app
    assert app["state"] in STATES, app
    assert app["desired_state"] in {"running", "stopped"}, app
    assert app["crash_reason"] in CRASH_REASONS, app
    assert isinstance(app["version"], int) and app["version"] >= 1, app
    if app["usage"] is not None:
        assert {"cpu_seconds", "memory_bytes", "pids"} <= set(app["usage"]), app
    assert set(app["quota"]) == {"memory_bytes", "cpus", "pids", "grid_rows"}, app
    return app


def app_names(client: Client) -> list:
    return sorted(app["name"] for app in expect(client.get("/api/v1/apps"), 200).json()["apps"])


def audit(client: Client, limit: int = 1000) -> list:
    return expect(client.get("/api/v1/audit", query={"limit": limit}), 200).json()["entries"]


# --------------------------------------------------------------------------------------------
# Health, readiness, the document


def test_health_and_readiness(cp):
    assert expect(cp.server.client().get("/healthz"), 200).json() == {"status": "ok"}
    assert expect(cp.server.client().get("/readyz"), 200).json() == {"status": "ready"}


def test_not_ready_without_kafka(cp, testdir):
    """A server whose Kafka does not answer serves (/healthz 200) but is not ready: /readyz
    503 not_ready, saying what is missing."""
    server = Server(testdir, f"127.0.0.1:{free_port()}", name="no-kafka", operator_token=new_operator_token())
    try:
        assert expect(server.client().get("/healthz"), 200).json() == {"status": "ok"}
        answer = expect(server.client().get("/readyz", timeout=15), 503, "not_ready")
        log(f"no kafka: /readyz says {answer.error['message']!r}")
    finally:
        assert server.stop(timeout=30) == 0


def test_served_openapi_is_the_repository_file(cp):
    served = expect(cp.server.client().get("/api/v1/openapi.json"), 200)
    assert served.json() == json.loads(OPENAPI.read_text()), "the served OpenAPI document differs from " + str(OPENAPI)


def test_openapi_document_is_valid():
    validator = pytest.importorskip("openapi_spec_validator")
    document = json.loads(OPENAPI.read_text())
    validator.validate(document)
    assert document["openapi"] == "3.0.3"


def test_every_documented_route_is_served(cp):
    """Each operation of the document reaches a handler: with the operator's token a tenant
    route is 403 (not an unknown route's 404 or 405), an operator route answers."""
    document = json.loads(OPENAPI.read_text())
    scratch = create_tenant(cp, "routes")
    developer, _ = create_token(scratch.admin, "developer")
    expect(developer.deploy(zip_directory(ORDERSAPP)), 201)  # for the app's quota routes
    values = {"tenant": scratch.name, "id": scratch.admin_token["id"], "app": APP, "grid": GRID}
    bodies = {"createTenant": {"name": tenant_name("route")}, "createToken": {"name": "x", "role": "viewer"},
              "setTenantQuota": {"max_apps": 20}, "setAppQuota": {"pids": 64}, "setTenantACL": {"topics": [TOPIC]}}
    order = {"get": 0, "put": 1, "post": 2, "delete": 3}
    operations = sorted(((path, method) for path, item in document["paths"].items() for method in item
                         if method in order), key=lambda op: (order[op[1]], op[0]))
    assert {method for _, method in operations} == set(order), "the document has methods this test does not try"
    for path, method in operations:
        operation = document["paths"][path][method]
        concrete = path.format(**values)
        public = operation.get("security") == []
        client = cp.server.client() if public else cp.server.operator
        options = {}
        if operation["operationId"] == "stream":  # a WebSocket upgrade: the token is checked on the socket
            answer = client.request("GET", concrete, headers=WEBSOCKET_UPGRADE)
            assert answer.status == 101, f"the WebSocket upgrade of {path}: {answer!r}"
            expect(client.request("GET", concrete), 404, "not_found")  # not an upgrade: not routed, as documented
            continue
        if "requestBody" in operation:
            content = operation["requestBody"]["content"]
            if "application/zip" in content:
                options = {"body": zip_directory(ORDERSAPP), "content_type": "application/zip"}
            else:
                options = {"json_body": bodies[operation["operationId"]]}
        answer = client.request(method.upper(), concrete, **options)
        operator_route = path.startswith("/api/v1/tenants") or path in ("/api/v1/audit", "/metrics")
        if public:
            assert answer.status == 200, answer
        elif operator_route:
            assert answer.status in (200, 201, 204), f"the operator's {method.upper()} {path}: {answer!r}"
        else:
            assert answer.status == 403 and answer.error["code"] == "forbidden", \
                f"the operator on {method.upper()} {path}: {answer!r}"
        assert str(answer.status) in operation["responses"], \
            f"{method.upper()} {path} answered {answer.status}, not documented"
        if answer.status == 200 and "text/plain" in operation["responses"]["200"].get("content", {}):
            assert answer.content_type.startswith("text/plain"), f"{method.upper()} {path}: {answer.content_type}"


WEBSOCKET_UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_undocumented_routes_are_refused(cp):
    """Routes outside the document answer with the API's error shape, never a 2xx."""
    tenant = create_tenant(cp, "routes")
    for method, path in [("GET", "/api/v1/nothing-here"), ("GET", "/api/v2/apps"), ("PUT", "/api/v1/apps"),
                         ("PATCH", "/api/v1/tokens"), ("PUT", "/api/v1/tenants")]:
        answer = tenant.admin.request(method, path)
        assert answer.status in (404, 405), f"{method} {path}: {answer!r}"
        answer.error  # the {"error": {"code", "message"}} shape


# --------------------------------------------------------------------------------------------
# Tenants and tokens


def test_tenants_and_tokens(cp):
    op = cp.server.operator
    tenant = create_tenant(cp, "tt")
    secret = tenant.admin_token["secret"]
    assert secret.startswith("agt_") and len(secret) == 47, tenant.admin_token
    assert tenant.admin_token["id"].startswith("tok_") and len(tenant.admin_token["id"]) == 20, tenant.admin_token

    expect(op.post("/api/v1/tenants", json_body={"name": tenant.name}), 409, "conflict")
    expect(op.post("/api/v1/tenants", body=b"{not json", content_type="application/json"), 400, "bad_request")
    expect(op.post("/api/v1/tenants", json_body={}), 400, "bad_request")

    listed = expect(op.get("/api/v1/tenants"), 200).json()["tenants"]
    assert tenant.name in [t["name"] for t in listed]
    one = expect(op.get(f"/api/v1/tenants/{tenant.name}"), 200).json()
    assert one["name"] == tenant.name and one["apps"] == 0, one
    rfc3339(one["created_at"], "a tenant's created_at")
    expect(op.get(f"/api/v1/tenants/{tenant_name('nobody')}"), 404, "not_found")

    # Tokens: created with a role, listed without secrets, revoked from then on.
    viewer, viewer_token = create_token(tenant.admin, "viewer", "dashboards")
    developer, developer_token = create_token(tenant.admin, "developer")
    for token in (viewer_token, developer_token):
        assert token["tenant"] == tenant.name and token["secret"].startswith("agt_") and len(token["secret"]) == 47, token
    answer = tenant.admin.post("/api/v1/tokens", json_body={"name": "x", "role": "operator"})
    assert answer.status in (400, 403) and answer.error["code"] in ("bad_request", "forbidden"), answer
    for body in [{"name": "x", "role": "root"}, {"name": "", "role": "viewer"},
                 {"name": "x" * 65, "role": "viewer"}, {"role": "viewer"}, {"name": "x"}]:
        expect(tenant.admin.post("/api/v1/tokens", json_body=body), 400, "bad_request")
    expect(tenant.admin.post("/api/v1/tokens", body=b"[", content_type="application/json"), 400, "bad_request")

    expect(viewer.get("/api/v1/apps"), 200)  # the viewer's token works, and is now used
    tokens = expect(tenant.admin.get("/api/v1/tokens"), 200).json()["tokens"]
    assert {t["id"] for t in tokens} == {tenant.admin_token["id"], viewer_token["id"], developer_token["id"]}, tokens
    for token in tokens:
        assert TOKEN_FIELDS <= set(token), token
        rfc3339(token["created_at"], "a token's created_at")
        assert "secret" not in token and secret not in json.dumps(token), f"a listed token shows its secret: {token}"
        assert token["revoked_at"] is None, token
    used = next(t for t in tokens if t["id"] == viewer_token["id"])
    assert used["last_used_at"] is not None, f"the viewer's token was used but last_used_at is null: {used}"

    expect(tenant.admin.delete(f"/api/v1/tokens/{viewer_token['id']}"), 204)
    expect(viewer.get("/api/v1/apps"), 401, "unauthorized")
    expect(tenant.admin.delete("/api/v1/tokens/tok_0123456789abcdef"), 404, "not_found")
    tokens = expect(tenant.admin.get("/api/v1/tokens"), 200).json()["tokens"]
    revoked = next(t for t in tokens if t["id"] == viewer_token["id"])
    assert revoked["revoked_at"] is not None, revoked
    expect(developer.get("/api/v1/apps"), 200)  # the others still work


@pytest.mark.parametrize("name", ["Upper", "-dash", "_under", "a" * 64, "", "sp ace", "dot.ted", "trailing\n"])
def test_a_bad_tenant_name_is_400(cp, name):
    """Tenant names: a lowercase letter or digit, then lowercase letters, digits, '-' and
    '_'; 1 to 63 (the OpenAPI document's pattern). Nothing is created."""
    op = cp.server.operator
    before = sorted(t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"])
    answer = expect(op.post("/api/v1/tenants", json_body={"name": name}), 400, "bad_request")
    assert "name" in answer.error["message"], answer
    assert sorted(t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"]) == before


def test_deleting_a_tenant_stops_its_apps_and_revokes_its_tokens(cp):
    op = cp.server.operator
    tenant = create_tenant(cp, "gone")
    developer, _ = create_token(tenant.admin, "developer")
    expect(developer.deploy(zip_directory(ORDERSAPP)), 201)
    expect(developer.action(APP, "start"), 200)
    wait_state(developer, APP, "running")
    expect(op.get(f"/api/v1/tenants/{tenant.name}"), 200)
    sandboxed = tenant_processes(tenant.name)
    log(f"tenant delete: {len(sandboxed)} processes in the tenant's cgroups before")

    expect(op.delete(f"/api/v1/tenants/{tenant.name}"), 204)
    expect(op.get(f"/api/v1/tenants/{tenant.name}"), 404, "not_found")
    assert tenant.name not in [t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"]]
    expect(tenant.admin.get("/api/v1/tokens"), 401, "unauthorized")
    expect(developer.get("/api/v1/apps"), 401, "unauthorized")
    expect(op.delete(f"/api/v1/tenants/{tenant.name}"), 404, "not_found")
    kept = [e for e in audit(op) if e["tenant"] == tenant.name]
    assert kept, "the deleted tenant's audit entries are gone; docs/api.md: the audit stays"
    expect(cp.server.client().get("/healthz"), 200)
    if sandboxed:  # the app's processes are gone (where its cgroup could be found at all)
        poll(lambda: tenant_processes(tenant.name), lambda found: not found, 15, "the deleted tenant's processes to end")

    # The name is retired: a new owner would inherit its topics (<tenant>.*, the dead
    # letters among them) and could be confused with it in the audit.
    refused = expect(op.post("/api/v1/tenants", json_body={"name": tenant.name}), 409, "name_retired")
    assert "never" in refused.error["message"], refused
    assert tenant.name not in [t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"]]


def tenant_processes(tenant: str) -> list:
    """Pids whose cgroup path has the tenant's directory (the supervisor's layout:
    aerogrid/<tenant>/<app>)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"/aerogrid/{tenant}/" in (entry / "cgroup").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# --------------------------------------------------------------------------------------------
# An app's life


class LogFollower(threading.Thread):
    """GET logs?follow=true read line by line in the background."""

    def __init__(self, client: Client, app: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.app = app
        self.connection = client.connection(timeout=60)
        self.status = None
        self.content_type = None
        self.lines: list = []
        self.headers_seen = threading.Event()
        self.error = None

    def run(self) -> None:
        try:
            self.connection.request("GET", f"/api/v1/apps/{self.app}/logs?follow=true&tail=1",
                                    headers={"Authorization": f"Bearer {self.client.token}"})
            answer = self.connection.getresponse()
            self.status, self.content_type = answer.status, answer.getheader("Content-Type", "")
            self.headers_seen.set()
            while True:
                line = answer.readline()
                if not line:
                    return
                if line.strip():
                    self.lines.append(line.decode("utf-8", "replace"))
        except Exception as error:  # the socket closed under it, at the end
            self.error = error
        finally:
            self.headers_seen.set()

    def close(self) -> None:
        try:
            if self.connection.sock is not None:
                self.connection.sock.shutdown(2)
        except OSError:
            pass
        self.connection.close()
        self.join(10)


def csv_rows(text: str) -> tuple:
    reader = list(csv.reader(io.StringIO(text)))
    assert reader, f"empty CSV: {text!r}"
    return reader[0], {row[0]: {"units_sold": int(row[1])} for row in reader[1:] if row}


def test_app_lifecycle(cp):
    server, cluster, orders = cp.server, cp.cluster, cp.orders
    op = server.operator
    tenant = create_tenant(cp, "life")
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


def test_concurrent_starts_and_stops_converge(cp):
    """Starts and stops of one app at once, in rounds: every request answers 200, the app
    ends in the state its desired state says, and once running its grid is exact (no batch
    applied twice across the churn)."""
    tenant = create_tenant(cp, "churn")
    developer, _ = create_token(tenant.admin, "developer")
    expect(developer.deploy(zip_directory(ORDERSAPP)), 201)
    if cp.orders.count == 0:
        produce(cp.cluster, cp.orders, WAVE)
    rounds = [["start", "stop"] * 4, ["stop", "start"] * 4, ["start"] * 3 + ["stop"] * 3]
    for actions in rounds:
        barrier = threading.Barrier(len(actions))
        answers: list = [None] * len(actions)

        def act(index: int) -> None:
            barrier.wait(10)
            answers[index] = developer.action(APP, actions[index])

        threads = [threading.Thread(target=act, args=(n,)) for n in range(len(actions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for answer in answers:
            assert answer is not None and answer.status == 200, answer

        def settled(answer: Response) -> bool:
            app = answer.json()
            return (app["desired_state"], app["state"]) in {("running", "running"), ("stopped", "stopped")}

        app = poll(lambda: developer.app(APP), settled, 30, f"the app to settle after {actions}", interval=0.25).json()
        log(f"churn: {actions} -> desired {app['desired_state']}, state {app['state']}")
    expect(developer.action(APP, "start"), 200)
    wait_grid(developer, APP, cp.orders.expected_units())
    expect(developer.delete(f"/api/v1/apps/{APP}"), 204)


def test_logs_tail(cp):
    """`tail`: the last N lines, oldest first; 100 without it."""
    tenant = create_tenant(cp, "tail")
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


# --------------------------------------------------------------------------------------------
# Bundles the server refuses


def manifest(name: str, **fields) -> bytes:
    text = f'name = "{name}"\n' + "".join(f'{key} = "{value}"\n' for key, value in fields.items())
    return text.encode()


def valid_files(name: str) -> list:
    return [(regular("app.toml"), manifest(name)), (regular("app.py"), (ORDERSAPP / "app.py").read_bytes())]


@functools.lru_cache(maxsize=None)
def zeros_bomb() -> bytes:
    """app.toml, app.py and one entry of 1 GiB of zeros (about 1 MB deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in valid_files("bad-bomb"):
            archive.writestr(info, data)
        chunk = bytes(1 << 20)
        with archive.open(regular("zeros.bin"), "w", force_zip64=True) as entry:
            for _ in range(1024):
                entry.write(chunk)
    return buffer.getvalue()


def lying_bomb() -> bytes:
    """One entry of 100 MiB of zeros whose headers claim it expands to its compressed size:
    only counting the bytes as they come catches it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(regular("zeros.bin"), "w") as entry:
            chunk = bytes(1 << 20)
            for _ in range(100):
                entry.write(chunk)
        for info, data in valid_files("bad-lying-bomb"):
            archive.writestr(info, data)
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"PK\x03\x04"
    compressed = struct.unpack_from("<I", data, 18)[0]
    struct.pack_into("<I", data, 22, compressed)  # the local header's uncompressed size
    central = data.index(b"PK\x01\x02")
    assert data[central + 46:central + 46 + 9] == b"zeros.bin"
    struct.pack_into("<I", data, central + 24, compressed)  # the central directory's
    return bytes(data)


def corrupted_entry() -> bytes:
    """A stored (uncompressed) entry whose bytes no longer match its CRC-32."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, data in valid_files("bad-crc"):
            archive.writestr(info, data)
        info = regular("data.txt")
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, b"hello world\n" * 100)
    data = bytearray(buffer.getvalue())
    data[data.index(b"hello world")] ^= 0x20  # 'h' -> 'H'
    return bytes(data)


def too_many_entries() -> bytes:
    return zip_entries(valid_files("bad-many") + [(regular(f"data/{n:04}.txt"), b"x") for n in range(999)])


def oversized(size: int) -> bytes:
    """A real bundle whose zip is `size` bytes: app.toml, app.py and random (incompressible) data."""
    base = zip_entries(valid_files("bad-huge"))
    filler = secrets.token_bytes(size - len(base) - 200)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, data in valid_files("bad-huge"):
            archive.writestr(info, data)
        archive.writestr(regular("filler.bin"), filler, compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


# case: (bundle, status, code, words the message must hold one of, the entry it must name)
BAD_BUNDLES = {
    "not-a-zip": (lambda: b"this is not a zip archive\n" * 40, 422, "invalid_bundle", ("zip",), None),
    "empty-body": (lambda: b"", 422, "invalid_bundle", ("zip",), None),
    "zip-slip": (lambda: zip_entries(valid_files("bad-slip") + [(regular("../evil.py"), b"print(1)\n")]),
                 422, "invalid_bundle", ("..",), "evil.py"),
    "nested-zip-slip": (lambda: zip_entries(valid_files("bad-slip2") + [(regular("lib/../../evil.py"), b"x")]),
                        422, "invalid_bundle", ("..",), "evil.py"),
    "absolute-path": (lambda: zip_entries(valid_files("bad-abs") + [(regular("/etc/evil"), b"x")]),
                      422, "invalid_bundle", ("absolute",), "/etc/evil"),
    "symlink": (lambda: zip_entries(valid_files("bad-link") + [(regular("link.py", stat.S_IFLNK | 0o777), b"/etc/passwd")]),
                422, "invalid_bundle", ("symlink",), "link.py"),
    "fifo": (lambda: zip_entries(valid_files("bad-fifo") + [(regular("pipe", stat.S_IFIFO | 0o644), b"")]),
             422, "invalid_bundle", ("special",), "pipe"),
    "device": (lambda: zip_entries(valid_files("bad-dev") + [(regular("disk", stat.S_IFBLK | 0o644), b"")]),
               422, "invalid_bundle", ("special",), "disk"),
    "no-app-toml": (lambda: zip_entries([(regular("app.py"), b"print(1)\n")]), 422, "invalid_bundle", ("app.toml",), None),
    "app-toml-in-a-directory": (lambda: zip_entries([(regular("ordersapp/app.toml"), manifest("bad-nested")),
                                                      (regular("ordersapp/app.py"), b"")]),
                                422, "invalid_bundle", ("app.toml",), None),
    "invalid-app-toml": (lambda: zip_entries([(regular("app.toml"), b'name = "unterminated\n'), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), None),
    "invalid-app-name": (lambda: zip_entries([(regular("app.toml"), manifest("Bad_Name")), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), "Bad_Name"),
    "app-name-over-63": (lambda: zip_entries([(regular("app.toml"), manifest("a" * 64)), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), "a" * 64),
    "app-name-starting-with-dash": (lambda: zip_entries([(regular("app.toml"), manifest("-app")), (regular("app.py"), b"")]),
                                    422, "invalid_bundle", ("app.toml",), "-app"),
    "app-name-with-a-dot": (lambda: zip_entries([(regular("app.toml"), manifest("my.app")), (regular("app.py"), b"")]),
                            422, "invalid_bundle", ("app.toml",), "my.app"),
    "missing-entrypoint": (lambda: zip_entries([(regular("app.toml"), manifest("bad-entry", entrypoint="main.py")),
                                                (regular("app.py"), b"")]),
                           422, "invalid_bundle", ("entrypoint",), "main.py"),
    "unknown-runtime": (lambda: zip_entries([(regular("app.toml"), manifest("bad-runtime", runtime="python2.7")),
                                             (regular("app.py"), b"")]),
                        422, "invalid_bundle", ("runtime",), "python2.7"),
    "file-and-directory-of-one-name": (lambda: zip_entries(valid_files("bad-clash") + [(regular("lib"), b"x"),
                                                                          (regular("lib/x.py"), b"y")]),
                                       422, "invalid_bundle", ("lib",), "lib"),
    "corrupted-entry": (corrupted_entry, 422, "invalid_bundle", ("crc", "checksum", "corrupt", "damaged"), "data.txt"),
    "zip-bomb": (zeros_bomb, 422, "invalid_bundle", ("expands",), None),
    "lying-zip-bomb": (lying_bomb, 422, "invalid_bundle", ("expands",), None),
    "too-many-entries": (too_many_entries, 422, "invalid_bundle", ("1000", "1,000"), None),
    "over-16-mib": (lambda: oversized((16 << 20) + 4096), 413, "too_large", ("limit", "large", "mib"), None),
    "over-20-mib": (lambda: oversized(20 << 20), 413, "too_large", ("limit", "large", "mib"), None),
}


@pytest.fixture(scope="module")
def bundle_tenant(cp):
    tenant = create_tenant(cp, "bundles")
    developer, _ = create_token(tenant.admin, "developer")
    return SimpleNamespace(tenant=tenant, developer=developer)


def disk_state(server: Server) -> dict:
    top = sorted(p.name for p in server.data_dir.iterdir()) if server.data_dir.exists() else []
    return {"bundles": tree(server.data_dir / "bundles"), "tmp": tree(server.tmp_dir), "data_dir": top}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_bad_bundle_is_refused(cp, bundle_tenant, case):
    build, status, code, words, entry = BAD_BUNDLES[case]
    began = time.monotonic()
    bundle = build()
    built = time.monotonic() - began
    developer = bundle_tenant.developer
    before = disk_state(cp.server)
    apps_before = app_names(developer)

    began = time.monotonic()
    answer = developer.upload(bundle) if len(bundle) > (1 << 20) else developer.deploy(bundle)
    log(f"bundle {case}: {len(bundle):,} bytes (built in {built:.2f} s) -> {answer.status} in "
        f"{time.monotonic() - began:.2f} s: {answer.text[:200]}")
    expect(answer, status, code)
    message = answer.error["message"]
    assert any(word in message.lower() for word in words), f"the message does not say {' or '.join(words)}: {message!r}"
    if entry is not None:
        assert entry in message, f"the message does not name {entry!r}: {message!r}"
    assert str(cp.server.data_dir) not in message and ".incoming" not in message, \
        f"the message shows the server's own paths: {message!r}"

    expect(cp.server.client().get("/healthz"), 200)
    assert app_names(developer) == apps_before
    after = disk_state(cp.server)
    left = {key: sorted(set(after[key]) - set(before[key])) for key in after if after[key] != before[key]}
    assert after == before, f"the refused upload left something on disk (new or changed): {left}"


def test_a_bundle_with_directories_is_accepted(cp, bundle_tenant):
    """Directory entries, nested files and an entry point below the root are fine; the
    bundle is unpacked read-only, directories included."""
    developer = bundle_tenant.developer
    directory_entry = regular("src/", stat.S_IFDIR | 0o755)
    directory_entry.external_attr |= 0x10  # MS-DOS directory bit, as zip tools write it
    bundle = zip_entries([(regular("app.toml"), manifest("nested-app", entrypoint="src/main.py")),
                          (directory_entry, b""), (regular("src/main.py"), (ORDERSAPP / "app.py").read_bytes()),
                          (regular("src/lib/helpers.py"), b"X = 1\n")])
    app = check_app(expect(developer.deploy(bundle), 201).json())
    assert app["entrypoint"] == "src/main.py", app
    root = bundle_path(cp.server, bundle_tenant.tenant, bundle)
    assert (root / "src" / "lib" / "helpers.py").read_bytes() == b"X = 1\n"
    assert_bundle_private(root, bundle_tenant.tenant)
    expect(developer.delete("/api/v1/apps/nested-app"), 204)


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "different-bytes"])
def test_concurrent_deploys(cp, same):
    """Six tenants upload a bundle at once (the same bytes, or each its own): each gets its
    app, and every app's bundle is on disk under its digest — one upload's clean-up never
    takes another's fresh bundle — with nothing half-written left."""
    tenants = [create_tenant(cp, f"many{n}", orders=False) for n in range(6)]
    developers = [create_token(tenant.admin, "developer")[0] for tenant in tenants]
    shared = secrets.token_hex(8)
    bundles = [zip_directory(ORDERSAPP, comment=(shared if same else secrets.token_hex(8)).encode()) for _ in developers]
    answers: list = [None] * len(developers)
    barrier = threading.Barrier(len(developers))

    def deploy(index: int) -> None:
        barrier.wait(10)
        answers[index] = developers[index].deploy(bundles[index])

    threads = [threading.Thread(target=deploy, args=(n,)) for n in range(len(developers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for answer, bundle in zip(answers, bundles):
        assert answer is not None and answer.status == 201, answer
        assert digest(bundle) in answer.json()["bundle_digest"], answer
    names = sorted(p.name for p in (cp.server.data_dir / "bundles").iterdir())
    missing = [digest(bundle) for tenant, bundle in zip(tenants, bundles) if not bundle_path(cp.server, tenant, bundle).is_dir()]
    assert not missing, f"deployed apps whose bundle directory is gone: {missing}"
    assert not [name for name in names if name.startswith(".")], f"half-written bundles left: {names}"
    for developer in developers:
        expect(developer.delete(f"/api/v1/apps/{APP}"), 204)


def test_a_refused_bundle_does_not_change_the_deployed_app(cp, bundle_tenant):
    """A bad new version of an existing app is refused; the app keeps its version."""
    developer = bundle_tenant.developer
    name = "kept-app"
    good = zip_entries([(regular("app.toml"), manifest(name)), (regular("app.py"), (ORDERSAPP / "app.py").read_bytes())])
    first = expect(developer.deploy(good), 201).json()
    bad = zip_entries([(regular("app.toml"), manifest(name)), (regular("app.py"), b""),
                       (regular("link", stat.S_IFLNK | 0o777), b"/etc/shadow")])
    expect(developer.deploy(bad), 422, "invalid_bundle")
    now = expect(developer.app(name), 200).json()
    assert (now["version"], now["bundle_digest"]) == (first["version"], first["bundle_digest"]), now
    expect(developer.delete(f"/api/v1/apps/{name}"), 204)


# --------------------------------------------------------------------------------------------
# Tokens, roles and tenants


@pytest.fixture(scope="module")
def world(cp):
    """Tenant A with tokens of every role and its app running; tenant B with an admin and a
    developer, and no apps."""
    a = create_tenant(cp, "sec-a")
    a.developer, a.developer_token = create_token(a.admin, "developer")
    a.viewer, a.viewer_token = create_token(a.admin, "viewer")
    b = create_tenant(cp, "sec-b")
    b.developer, b.developer_token = create_token(b.admin, "developer")
    a.app = check_app(expect(a.developer.deploy(zip_directory(ORDERSAPP)), 201).json())
    expect(a.developer.action(APP, "start"), 200)
    wait_state(a.viewer, APP, "running")
    return SimpleNamespace(a=a, b=b, op=cp.server.operator, server=cp.server)


def snapshot(world) -> dict:
    """What no refused request may change: A's app (read with A's viewer token), both
    tenants' apps and tokens, the tenants."""
    app = expect(world.a.viewer.app(APP), 200).json()
    tokens = {}
    for tenant in (world.a, world.b):
        listed = expect(tenant.admin.get("/api/v1/tokens"), 200).json()["tokens"]
        tokens[tenant.name] = sorted((t["id"], t["name"], t["role"], t["revoked_at"]) for t in listed)
    tenants = expect(world.op.get("/api/v1/tenants"), 200).json()["tenants"]
    return {
        "app": {key: app[key] for key in ("name", "version", "bundle_digest", "desired_state", "state", "restarts")},
        "a_apps": app_names(world.a.viewer), "b_apps": app_names(world.b.admin), "tokens": tokens,
        "tenants": sorted((t["name"], t["apps"]) for t in tenants if t["name"] in (world.a.name, world.b.name)),
    }


def assert_unchanged(world, before: dict) -> None:
    after = snapshot(world)
    assert after == before, f"a refused request changed something:\nbefore {before}\nafter  {after}"
    assert after["app"]["state"] == "running" and after["app"]["desired_state"] == "running", after["app"]


def attempts(world, app: str = APP) -> list:
    """(method, path, options) of requests that would change or reveal A's things."""
    return [
        ("GET", "/api/v1/apps", {}),
        ("GET", f"/api/v1/apps/{app}", {}),
        ("POST", f"/api/v1/apps/{app}/stop", {}),
        ("POST", f"/api/v1/apps/{app}/restart", {}),
        ("DELETE", f"/api/v1/apps/{app}", {}),
        ("GET", f"/api/v1/apps/{app}/logs", {}),
        ("GET", f"/api/v1/apps/{app}/grids/{GRID}", {}),
        ("POST", "/api/v1/apps", {"body": zip_directory(ORDERSAPP, comment=b"x"), "content_type": "application/zip"}),
        ("POST", "/api/v1/tokens", {"json_body": {"name": "intruder", "role": "admin"}}),
        ("GET", "/api/v1/tokens", {}),
        ("DELETE", f"/api/v1/tokens/{world.a.developer_token['id']}", {}),
        ("GET", "/api/v1/audit", {}),
        ("GET", "/api/v1/tenants", {}),
        ("POST", "/api/v1/tenants", {"json_body": {"name": tenant_name("intruder")}}),
        ("DELETE", f"/api/v1/tenants/{world.a.name}", {}),
        ("PUT", f"/api/v1/tenants/{world.a.name}/acl", {"json_body": {"topics": ["*"]}}),
        ("PUT", f"/api/v1/tenants/{world.a.name}/quota", {"json_body": {"max_apps": 1000}}),
        ("GET", "/api/v1/quota", {}),
        ("GET", "/metrics", {}),
    ]


BAD_AUTHORIZATION = {
    "none": None,
    "empty-bearer": "Bearer ",
    "basic-scheme": "Basic YWRtaW46YWRtaW4=",
    "not-a-token": "Bearer not-a-token",
    "short-agt": "Bearer agt_short",
    "garbage": "Bearer agt_" + "%" * 43,
    "unknown-token": "unknown",
    "revoked-token": "revoked",
}


@pytest.mark.parametrize("kind", list(BAD_AUTHORIZATION))
def test_without_a_valid_token_every_route_is_401(world, kind):
    authorization = BAD_AUTHORIZATION[kind]
    if kind == "unknown-token":
        authorization = f"Bearer {new_operator_token()}"
    elif kind == "revoked-token":
        client, token = create_token(world.a.admin, "admin", "soon-revoked")
        expect(client.get("/api/v1/tokens"), 200)
        expect(world.a.admin.delete(f"/api/v1/tokens/{token['id']}"), 204)
        authorization = f"Bearer {token['secret']}"
    before = snapshot(world)
    anonymous = world.server.client()
    for method, path, options in attempts(world):
        if authorization is None:
            answer = anonymous.request(method, path, **options)
        else:
            answer = anonymous.request(method, path, authorization=authorization, **options)
        assert answer.status == 401, f"{kind}: expected 401, got {answer!r}"
        assert answer.error["code"] == "unauthorized", answer
    assert_unchanged(world, before)


def test_viewer_and_developer_may_not_exceed_their_role(world):
    a = world.a
    before = snapshot(world)
    expect(a.viewer.app(APP), 200)
    expect(a.viewer.get(f"/api/v1/apps/{APP}/logs"), 200)
    expect(a.viewer.get(f"/api/v1/apps/{APP}/grids"), 200)
    for method, path, options in attempts(world):
        viewer_may = method == "GET" and (path.startswith("/api/v1/apps") or path == "/api/v1/quota")
        if viewer_may:
            continue
        answer = a.viewer.request(method, path, **options)
        assert answer.status == 403 and answer.error["code"] == "forbidden", f"viewer: {answer!r}"
    for method, path, options in [("POST", "/api/v1/tokens", {"json_body": {"name": "x", "role": "viewer"}}),
                                  ("GET", "/api/v1/tokens", {}),
                                  ("DELETE", f"/api/v1/tokens/{a.viewer_token['id']}", {}),
                                  ("GET", "/api/v1/audit", {})]:
        answer = a.developer.request(method, path, **options)
        assert answer.status == 403 and answer.error["code"] == "forbidden", f"developer: {answer!r}"
    assert_unchanged(world, before)
    expect(a.viewer.get("/api/v1/apps"), 200)  # neither token was revoked by the attempts


def test_another_tenants_app_is_not_found(world):
    a, b = world.a, world.b
    before = snapshot(world)
    missing = "no-such-app"
    for client, who in [(b.developer, "B's developer"), (b.admin, "B's admin")]:
        for method, path in [("GET", f"/api/v1/apps/{APP}"), ("POST", f"/api/v1/apps/{APP}/start"),
                             ("POST", f"/api/v1/apps/{APP}/stop"), ("POST", f"/api/v1/apps/{APP}/restart"),
                             ("DELETE", f"/api/v1/apps/{APP}"), ("GET", f"/api/v1/apps/{APP}/logs"),
                             ("GET", f"/api/v1/apps/{APP}/grids"), ("GET", f"/api/v1/apps/{APP}/grids/{GRID}")]:
            answer = client.request(method, path)
            nothing = client.request(method, path.replace(APP, missing))
            assert answer.status == 404 and answer.error["code"] == "not_found", f"{who}: {answer!r}"
            assert (nothing.status, nothing.error["code"]) == (404, "not_found"), nothing
            assert a.name not in answer.text, f"{who}: the 404 names the other tenant: {answer!r}"
        assert app_names(client) == [], f"{who} sees apps of another tenant"
    # Another tenant's token is not found either: not revoked.
    answer = b.admin.delete(f"/api/v1/tokens/{a.developer_token['id']}")
    assert answer.status == 404 and answer.error["code"] == "not_found", f"B's admin: {answer!r}"
    entries = audit(b.admin)
    assert all(entry["tenant"] == b.name for entry in entries), f"B's audit shows other tenants: {entries[:5]}"
    assert_unchanged(world, before)
    expect(a.developer.get("/api/v1/apps"), 200)


def test_the_same_app_name_in_another_tenant_is_another_app(world):
    a, b = world.a, world.b
    app_before = expect(a.viewer.app(APP), 200).json()
    created = expect(b.developer.deploy(zip_directory(ORDERSAPP, comment=b"tenant b")), 201).json()
    assert created["version"] == 1, created
    after = expect(a.viewer.app(APP), 200).json()
    assert (after["version"], after["bundle_digest"], after["state"]) == \
        (app_before["version"], app_before["bundle_digest"], "running"), after
    expect(b.developer.delete(f"/api/v1/apps/{APP}"), 204)
    assert expect(a.viewer.app(APP), 200).json()["state"] == "running"


def limits(world) -> dict:
    """Tenant A's quota, its app's quota and its topic ACL, as the operator reads them."""
    a, op = world.a, world.op
    quota = expect(op.get(f"/api/v1/tenants/{a.name}/quota"), 200).json()
    return {"tenant": {key: quota[key] for key in ("max_apps", "memory_bytes", "cpus", "max_connections")},
            "app": expect(op.get(f"/api/v1/tenants/{a.name}/apps/{APP}/quota"), 200).json(),
            "acl": expect(op.get(f"/api/v1/tenants/{a.name}/acl"), 200).json()}


def test_tenant_tokens_may_not_use_operator_routes(world):
    """Not even on their own tenant: no tenant token widens its topic ACL or its quotas."""
    a, b = world.a, world.b
    before, limits_before = snapshot(world), limits(world)
    for client, who in [(a.admin, "admin"), (a.developer, "developer"), (a.viewer, "viewer")]:
        for method, path, options in [("GET", "/api/v1/tenants", {}),
                                      ("POST", "/api/v1/tenants", {"json_body": {"name": tenant_name("x")}}),
                                      ("GET", f"/api/v1/tenants/{a.name}", {}),
                                      ("DELETE", f"/api/v1/tenants/{b.name}", {}),
                                      ("DELETE", f"/api/v1/tenants/{a.name}", {}),
                                      ("PUT", f"/api/v1/tenants/{a.name}/acl", {"json_body": {"topics": ["*"]}}),
                                      ("PUT", f"/api/v1/tenants/{a.name}/quota",
                                       {"json_body": {"max_apps": 1000, "cpus": 64}}),
                                      ("PUT", f"/api/v1/tenants/{a.name}/apps/{APP}/quota",
                                       {"json_body": {"memory_bytes": 1 << 34}}),
                                      ("GET", f"/api/v1/tenants/{a.name}/acl", {}),
                                      ("GET", "/metrics", {})]:
            answer = client.request(method, path, **options)
            assert answer.status == 403 and answer.error["code"] == "forbidden", f"{who}: {answer!r}"
    assert_unchanged(world, before)
    assert limits(world) == limits_before
    own = expect(a.viewer.get("/api/v1/quota"), 200).json()  # what a tenant may read of its limits
    assert own["topics"] == limits_before["acl"]["topics"], own


def test_the_operator_token_may_not_use_tenant_routes(world):
    a, op = world.a, world.op
    before = snapshot(world)
    for method, path, options in attempts(world):
        if path.startswith("/api/v1/tenants") or path in ("/api/v1/audit", "/metrics"):
            continue
        answer = op.request(method, path, **options)
        assert answer.status == 403 and answer.error["code"] == "forbidden", f"operator: {answer!r}"
    assert_unchanged(world, before)
    entries = audit(op)
    assert {a.name, world.b.name} <= {entry["tenant"] for entry in entries}, "the operator's audit lacks the tenants"


# --------------------------------------------------------------------------------------------
# The server process


@pytest.mark.parametrize("case", ["unknown-key", "short-operator-token"])
def test_a_bad_configuration_stops_the_start(testdir, case):
    """`aerogrid serve` refuses to start, exit status not 0, with a message naming what to fix."""
    config = testdir / "bad.toml"
    lines = [f'data_dir = "{testdir / "data"}"', f'listen = "127.0.0.1:{free_port()}"', "", "[kafka]",
             'bootstrap = "127.0.0.1:9"']
    env = {k: v for k, v in os.environ.items() if k != "AEROGRID_OPERATOR_TOKEN"}
    if case == "unknown-key":
        lines.insert(0, 'colour = "blue"')
        words = ["colour"]
    else:
        env["AEROGRID_OPERATOR_TOKEN"] = "too-short"
        words = ["AEROGRID_OPERATOR_TOKEN"]
    config.write_text("\n".join(lines) + "\n")
    result = subprocess.run([str(AEROGRID), "serve", "--config", str(config)], capture_output=True, text=True,
                            timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode != 0, f"{case}: the server started (exit {result.returncode}): {result.stdout[-500:]}"
    for word in words:
        assert word in result.stderr, f"{case}: the refusal does not name {word!r}: {result.stderr[-1000:]}"


def test_first_start_prints_the_operator_token_once(cp, workdir):
    directory = workdir / "first-start"
    directory.mkdir(mode=0o755)
    first = Server(directory, cp.cluster.bootstrap, name="first")
    try:
        line = first.wait_line(lambda l: l.startswith("operator token: "), 10, "the operator token line")
        token = line.split(": ", 1)[1].strip()
        assert token.startswith("agt_") and len(token) == 47, line
        first.wait_line(lambda l: l.startswith(f"listening on http://127.0.0.1:{first.port}"), 10, "the listening line")
        tenants = expect(first.client(token).get("/api/v1/tenants"), 200).json()
        assert tenants == {"tenants": []}, tenants
    finally:
        assert first.stop(timeout=30) == 0, f"exit status after SIGTERM; stderr:\n{first.stderr_tail()}"

    second = Server(directory, cp.cluster.bootstrap, name="second")
    try:
        second.wait_line(lambda l: l.startswith("listening on "), 10, "the listening line")
        expect(second.client(token).get("/api/v1/tenants"), 200)
    finally:
        assert second.stop(timeout=30) == 0
    assert not any("operator token" in l for l in second.stdout_lines()), second.stdout_lines()


def test_https_listener_with_a_plain_http_one_beside_it(cp, testdir):
    """[tls]: `listen` answers HTTPS with the configured certificate, `http_listen` plain
    HTTP, both the same API; plain HTTP on the HTTPS port gets no answer."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    certificate, key = testdir / "cert.pem", testdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = Server(testdir, cp.cluster.bootstrap, name="tls", operator_token=new_operator_token(), tls=(certificate, key))
    try:
        server.wait_line(lambda l: l.strip() == f"listening on https://127.0.0.1:{server.tls_port}", 10, "the https line")
        server.wait_line(lambda l: l.strip() == f"listening on http://127.0.0.1:{server.port}", 10, "the http line")
        context = ssl.create_default_context(cafile=str(certificate))
        for path, token, status in [("/healthz", None, 200), ("/api/v1/tenants", server.operator_token, 200),
                                    ("/api/v1/tenants", None, 401)]:
            connection = http.client.HTTPSConnection(server.host, server.tls_port, context=context, timeout=10)
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
                answer = connection.getresponse()
                assert answer.status == status, f"https GET {path}: {answer.status} {answer.read()[:200]!r}"
                answer.read()
            finally:
                connection.close()
        expect(server.operator.get("/api/v1/tenants"), 200)  # the plain listener
        try:
            answer = Client(server.host, server.tls_port, None, timeout=5).get("/healthz")
        except (OSError, http.client.HTTPException):
            pass
        else:
            raise AssertionError(f"plain HTTP on the HTTPS port answered {answer!r}")
    finally:
        assert server.stop(timeout=30) == 0


def test_sigterm_stops_the_server_with_its_apps(cp, workdir):
    """A server with a running app and a followed log stops cleanly on SIGTERM: exit 0, the
    follow stream ends. Started again on the same data directory it has the tenant, its
    token and the app, which runs again from its checkpoint: more orders, exact sums."""
    directory = workdir / "sigterm"
    directory.mkdir(mode=0o755)
    produce(cp.cluster, cp.orders, 500)
    token = new_operator_token()
    server = Server(directory, cp.cluster.bootstrap, name="sigterm", operator_token=token)
    follower = None
    try:
        tenant = create_tenant(SimpleNamespace(server=server), "term")
        developer, _ = create_token(tenant.admin, "developer")
        expect(developer.deploy(zip_directory(ORDERSAPP)), 201)
        expect(developer.action(APP, "start"), 200)
        wait_grid(developer, APP, cp.orders.expected_units())
        follower = LogFollower(developer, APP)
        follower.start()
        follower.headers_seen.wait(5)
    finally:
        began = time.monotonic()
        status = server.stop(timeout=45)
    log(f"sigterm: exited with {status} in {time.monotonic() - began:.2f} s")
    assert status == 0, f"exit status {status} after SIGTERM; stderr:\n{server.stderr_tail()}"
    follower.join(10)
    assert not follower.is_alive(), "the followed log did not end when the server stopped"
    follower.close()

    produce(cp.cluster, cp.orders, 500)
    again = Server(directory, cp.cluster.bootstrap, name="sigterm-again", operator_token=token)
    try:
        client = again.client(developer.token)
        app = check_app(expect(client.app(APP), 200).json())
        assert app["desired_state"] == "running", app
        wait_grid(client, APP, cp.orders.expected_units())
        log(f"sigterm: after the restart the app runs on, exact ({wait_state(client, APP, 'running')['state']})")
    finally:
        assert again.stop(timeout=45) == 0


# --------------------------------------------------------------------------------------------
# schemathesis


# Bundles for the deploy route: schemathesis has no generator for application/zip, so a hooks
# file gives it one: random bytes, and zips that are valid, zip-slip, bad TOML, no app.toml.
SCHEMATHESIS_HOOKS = """
import io, zipfile
import schemathesis
from hypothesis import strategies as st

def bundle(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()

SAMPLES = [
    bundle([("app.toml", 'name = "fuzz-app"\\n'), ("app.py", "")]),
    bundle([("app.toml", 'name = "fuzz-app"\\n'), ("app.py", ""), ("../evil.py", "")]),
    bundle([("app.toml", "name = \\n"), ("app.py", "")]),
    bundle([("app.py", "")]),
]
schemathesis.openapi.media_type("application/zip", st.one_of(st.binary(max_size=4096), st.sampled_from(SAMPLES)))
"""


# Half the app and grid names are those of the deployed app, so the app routes reach an app
# (start, stop, restart, logs, grids) rather than only 404s; logs are not followed (a
# stream would only end with the request's timeout).
SCHEMATHESIS_CONFIG = f"""
[dictionaries.apps]
values = ["{APP}"]

[dictionaries.grids]
values = ["{GRID}"]

[parameters]
"path.app" = {{ dictionary = "apps", probability = 0.5 }}
"path.grid" = {{ dictionary = "grids", probability = 0.5 }}
"query.follow" = "false"
"""


def schemathesis_runs(server: Server, admin_token: str) -> list:
    """(who, token, filter options): the admin on every route but the deletes, then on the
    deletes alone (schemathesis takes ids from earlier answers, its own token's among them:
    revoked, every later request would be a 401; the app deleted, every later one a 404),
    then the operator on the operator's routes (where it may delete the tenant it found).
    The stream, a WebSocket, is test_stream.py's: schemathesis speaks plain HTTP."""
    return [("admin", admin_token, ["--exclude-operation-id", "revokeToken", "--exclude-operation-id", "deleteApp",
                                    "--exclude-operation-id", "stream"]),
            ("admin-deletes", admin_token, ["--include-operation-id", "deleteApp", "--include-operation-id", "revokeToken"]),
            ("operator", server.operator_token, ["--include-path-regex", "^/(api/v1/(tenants|audit)|metrics)"])]


def run_schemathesis(server: Server, directory: Path, who: str, token: str, options: list, checks: str) -> tuple:
    """Runs schemathesis 4 against the server's document; returns (exit status, output)."""
    hooks = directory / "schemathesis_hooks.py"
    hooks.write_text(SCHEMATHESIS_HOOKS)
    config = directory / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    argv = ["schemathesis", "--config-file", str(config), "run", f"http://{server.host}:{server.port}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {token}", "--checks", checks,
            "--phases", "examples,coverage,fuzzing", "--max-examples", "30", "--workers", "1", "--request-timeout", "10",
            "--seed", "7", "--generation-database", "none", "--no-color", "--suppress-health-check", "all", *options]
    began = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=150, cwd=directory,
                            env=dict(os.environ, SCHEMATHESIS_HOOKS=str(hooks)))
    output = result.stdout + result.stderr
    (directory / f"schemathesis-{who}.txt").write_text(output)
    summary = [line.strip() for line in result.stdout.splitlines() if " generated" in line][-1:]
    log(f"schemathesis ({who}): exit {result.returncode} in {time.monotonic() - began:.1f} s; {summary}")
    return result.returncode, output


@pytest.fixture
def fuzz_server(cp, testdir):
    """A server of its own, on the module's Kafka: what schemathesis creates and deletes
    touches no other test."""
    if shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    version = subprocess.run(["schemathesis", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if not version.split()[-1].startswith("4."):
        pytest.skip(f"the command line used here is schemathesis 4's; this is {version}")
    server = Server(testdir, cp.cluster.bootstrap, name="fuzz", operator_token=new_operator_token())
    try:
        yield server
    finally:
        server.stop()


# No 5xx; and every answer as the document says: a documented status, its content type and
# its schema (the route matching the document the other way round).
SCHEMATHESIS_CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                                "response_schema_conformance"])


def test_schemathesis_finds_no_server_error(fuzz_server, testdir):
    """Generated requests against every documented route, as a tenant's admin and (on the
    operator's routes) as the operator: no answer is a 5xx, and each matches the document."""
    tenant = create_tenant(SimpleNamespace(server=fuzz_server), "fuzz")
    expect(tenant.admin.deploy(zip_directory(ORDERSAPP)), 201)
    for who, token, options in schemathesis_runs(fuzz_server, tenant.admin_token["secret"]):
        status, output = run_schemathesis(fuzz_server, testdir, who, token, options, SCHEMATHESIS_CHECKS)
        assert status == 0, f"schemathesis as {who} found failures (all of it in {testdir}/schemathesis-{who}.txt):\n" \
            + output[-8000:]
        assert "401 Unauthorized (" not in output, f"the token stopped working during the run:\n{output[-4000:]}"
    expect(fuzz_server.client().get("/healthz"), 200)
