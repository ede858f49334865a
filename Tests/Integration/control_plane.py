"""What the control plane's tests (test_health_and_openapi.py, test_tenants_and_tokens.py,
test_app_lifecycle.py, test_bundles.py, test_server_process.py) share: the API's shapes as
docs/api.md gives them, tenants and tokens made through the API, and waits on grids.

Each of those modules runs on a platform of its own (support.plugin's `platform`): every order
produced there goes through `platform.orders`, so an ordersapp that has read the whole topic
has the grid `platform.orders.expected_units()`.
"""

from __future__ import annotations

import datetime
import re
import secrets
import stat
import threading
from pathlib import Path
from types import SimpleNamespace

from support.harness import TOPIC
from support.server import Client, Response, Server, digest, expect, failed, poll

APP = "ordersapp"
GRID = "product_sum"
WAVE = 2_000
STATES = {"created", "starting", "running", "stopping", "stopped", "crashed", "backoff"}
CRASH_REASONS = {None, "exit", "signal", "oom", "seccomp", "protocol", "heartbeat", "startup", "quota", "acl"}
APP_FIELDS = {"name", "version", "bundle_digest", "entrypoint", "runtime", "desired_state", "state", "crash_reason",
              "last_crash", "restarts", "records", "lag", "usage", "quota", "created_at", "updated_at"}
TOKEN_FIELDS = {"id", "name", "role", "tenant", "created_at", "last_used_at", "revoked_at"}


def tenant_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def create_tenant(platform, prefix: str, orders: bool = True) -> SimpleNamespace:
    """A new tenant of `platform.server`: its name, its admin client and the admin's NewToken.
    With `orders`, its topic ACL lets its apps read the orders topic (besides its own
    `<tenant>.*` topics)."""
    name = tenant_name(prefix)
    body = {"name": name, "topics": [TOPIC, f"{name}.*"]} if orders else {"name": name}
    created = expect(platform.server.operator.post("/api/v1/tenants", json_body=body), 201).json()
    assert created["tenant"]["name"] == name and created["tenant"]["apps"] == 0, created
    token = created["admin_token"]
    assert token["role"] == "admin" and token["tenant"] == name, created
    assert re.fullmatch(r"ten_[0-9a-f]{16}", created["tenant"]["id"]), created
    return SimpleNamespace(name=name, admin=platform.server.client(token["secret"]), admin_token=token, id=created["tenant"]["id"],
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


def create_token(admin: Client, role: str, name: str | None = None) -> tuple:
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
