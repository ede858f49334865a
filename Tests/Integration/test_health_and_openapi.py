"""The control plane (`aerogrid serve`) over real HTTP: health and readiness (/readyz without
Kafka), and the OpenAPI document: valid, served as in the repository, every route reached,
routes outside it refused, and schemathesis finds no 5xx and no answer outside the document.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from control_plane import APP, GRID, create_tenant, create_token, tenant_name
from support.harness import ORDERSAPP, TOPIC, log
from support.server import OPENAPI, Server, expect, free_port, new_operator_token, zip_directory

# --------------------------------------------------------------------------------------------
# Health, readiness, the document


def test_health_and_readiness(platform):
    assert expect(platform.server.client().get("/healthz"), 200).json() == {"status": "ok"}
    assert expect(platform.server.client().get("/readyz"), 200).json() == {"status": "ready"}


def test_not_ready_without_kafka(platform, testdir):
    """A server whose Kafka does not answer serves (/healthz 200) but is not ready: /readyz
    503 not_ready, saying what is missing."""
    server = Server(testdir, f"127.0.0.1:{free_port()}", name="no-kafka", operator_token=new_operator_token())
    try:
        assert expect(server.client().get("/healthz"), 200).json() == {"status": "ok"}
        answer = expect(server.client().get("/readyz", timeout=15), 503, "not_ready")
        log(f"no kafka: /readyz says {answer.error['message']!r}")
    finally:
        assert server.stop(timeout=30) == 0


def test_served_openapi_is_the_repository_file(platform):
    served = expect(platform.server.client().get("/api/v1/openapi.json"), 200)
    assert served.json() == json.loads(OPENAPI.read_text()), "the served OpenAPI document differs from " + str(OPENAPI)


def test_openapi_document_is_valid():
    validator = pytest.importorskip("openapi_spec_validator")
    document = json.loads(OPENAPI.read_text())
    validator.validate(document)
    assert document["openapi"] == "3.0.3"


def test_every_documented_route_is_served(platform):
    """Each operation of the document reaches a handler: with the operator's token a tenant
    route is 403 (not an unknown route's 404 or 405), an operator route answers."""
    document = json.loads(OPENAPI.read_text())
    scratch = create_tenant(platform, "routes")
    developer, _ = create_token(scratch.admin, "developer")
    expect(developer.deploy(zip_directory(ORDERSAPP)), 201)  # for the app's quota routes
    values = {"tenant": scratch.name, "id": scratch.admin_token["id"], "app": APP, "grid": GRID, "digest": "0" * 64}
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
        client = platform.server.client() if public else platform.server.operator
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
        if operation["operationId"] in ("getPeerBundle", "getPeerAppLog"):  # between a cluster's nodes: a single node has no such route
            expect(answer, 404, "not_found")
        elif public:
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


def test_undocumented_routes_are_refused(platform):
    """Routes outside the document answer with the API's error shape, never a 2xx."""
    tenant = create_tenant(platform, "routes")
    for method, path in [("GET", "/api/v1/nothing-here"), ("GET", "/api/v2/apps"), ("PUT", "/api/v1/apps"),
                         ("PATCH", "/api/v1/tokens"), ("PUT", "/api/v1/tenants")]:
        answer = tenant.admin.request(method, path)
        assert answer.status in (404, 405), f"{method} {path}: {answer!r}"
        assert answer.error["code"], answer  # the {"error": {"code", "message"}} shape, as Response.error checks it


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
    The stream, a WebSocket, is test_stream_*.py's: schemathesis speaks plain HTTP."""
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
def fuzz_server(platform, testdir):
    """A server of its own, on the module's Kafka: what schemathesis creates and deletes
    touches no other test."""
    if shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    version = subprocess.run(["schemathesis", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if not version.split()[-1].startswith("4."):
        pytest.skip(f"the command line used here is schemathesis 4's; this is {version}")
    server = Server(testdir, platform.cluster.bootstrap, name="fuzz", operator_token=new_operator_token())
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
