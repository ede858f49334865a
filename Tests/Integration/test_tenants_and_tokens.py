"""Tenants and tokens through the control plane (docs/api.md): tenants made, listed, named
and deleted (their apps stopped, their tokens revoked, their names retired); tokens of each
role, listed without secrets, revoked; and what a token may not do: 401 without a valid one,
403 beyond its role, another tenant's app as 404, the operator's routes and the tenants'
kept apart, nothing changed by a refusal.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from control_plane import (
    APP,
    GRID,
    TOKEN_FIELDS,
    app_names,
    audit,
    check_app,
    create_tenant,
    create_token,
    rfc3339,
    tenant_name,
)
from support.harness import ORDERSAPP, log
from support.server import expect, new_operator_token, poll, wait_state, zip_directory

# --------------------------------------------------------------------------------------------
# Tenants and tokens


def test_tenants_and_tokens(platform):
    op = platform.server.operator
    tenant = create_tenant(platform, "tt")
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
def test_a_bad_tenant_name_is_400(platform, name):
    """Tenant names: a lowercase letter or digit, then lowercase letters, digits, '-' and
    '_'; 1 to 63 (the OpenAPI document's pattern). Nothing is created."""
    op = platform.server.operator
    before = sorted(t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"])
    answer = expect(op.post("/api/v1/tenants", json_body={"name": name}), 400, "bad_request")
    assert "name" in answer.error["message"], answer
    assert sorted(t["name"] for t in expect(op.get("/api/v1/tenants"), 200).json()["tenants"]) == before


def test_deleting_a_tenant_stops_its_apps_and_revokes_its_tokens(platform):
    op = platform.server.operator
    tenant = create_tenant(platform, "gone")
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
    expect(platform.server.client().get("/healthz"), 200)
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
# Tokens, roles and tenants


@pytest.fixture(scope="module")
def world(platform):
    """Tenant A with tokens of every role and its app running; tenant B with an admin and a
    developer, and no apps."""
    a = create_tenant(platform, "sec-a")
    a.developer, a.developer_token = create_token(a.admin, "developer")
    a.viewer, a.viewer_token = create_token(a.admin, "viewer")
    b = create_tenant(platform, "sec-b")
    b.developer, b.developer_token = create_token(b.admin, "developer")
    a.app = check_app(expect(a.developer.deploy(zip_directory(ORDERSAPP)), 201).json())
    expect(a.developer.action(APP, "start"), 200)
    wait_state(a.viewer, APP, "running")
    return SimpleNamespace(a=a, b=b, op=platform.server.operator, server=platform.server)


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
