"""The control plane's process (`aerogrid serve`): a bad configuration stops the start, the
operator token is printed once, HTTPS with a plain-HTTP listener beside it, and SIGTERM with
a running app and a followed log stops it cleanly, its apps running on after a restart.
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest

from control_plane import APP, LogFollower, check_app, create_tenant, create_token, wait_grid
from support.harness import AEROGRID, ORDERSAPP, log, produce
from support.server import Client, Server, expect, free_port, new_operator_token, wait_state, zip_directory

pytestmark = pytest.mark.platform(seed=21)  # the same orders in each control-plane module


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


def test_first_start_prints_the_operator_token_once(platform, workdir):
    directory = workdir / "first-start"
    directory.mkdir(mode=0o755)
    first = Server(directory, platform.cluster.bootstrap, name="first")
    try:
        line = first.wait_line(lambda line: line.startswith("operator token: "), 10, "the operator token line")
        token = line.split(": ", 1)[1].strip()
        assert token.startswith("agt_") and len(token) == 47, line
        first.wait_line(lambda line: line.startswith(f"listening on http://127.0.0.1:{first.port}"), 10, "the listening line")
        tenants = expect(first.client(token).get("/api/v1/tenants"), 200).json()
        assert tenants == {"tenants": []}, tenants
    finally:
        assert first.stop(timeout=30) == 0, f"exit status after SIGTERM; stderr:\n{first.stderr_tail()}"

    second = Server(directory, platform.cluster.bootstrap, name="second")
    try:
        second.wait_line(lambda line: line.startswith("listening on "), 10, "the listening line")
        expect(second.client(token).get("/api/v1/tenants"), 200)
    finally:
        assert second.stop(timeout=30) == 0
    assert not any("operator token" in line for line in second.stdout_lines()), second.stdout_lines()


def test_https_listener_with_a_plain_http_one_beside_it(platform, testdir):
    """[tls]: `listen` answers HTTPS with the configured certificate, `http_listen` plain
    HTTP, both the same API; plain HTTP on the HTTPS port gets no answer."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    certificate, key = testdir / "cert.pem", testdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = Server(testdir, platform.cluster.bootstrap, name="tls", operator_token=new_operator_token(), tls=(certificate, key))
    try:
        server.wait_line(lambda line: line.strip() == f"listening on https://127.0.0.1:{server.tls_port}", 10, "the https line")
        server.wait_line(lambda line: line.strip() == f"listening on http://127.0.0.1:{server.port}", 10, "the http line")
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


def test_sigterm_stops_the_server_with_its_apps(platform, workdir):
    """A server with a running app and a followed log stops cleanly on SIGTERM: exit 0, the
    follow stream ends. Started again on the same data directory it has the tenant, its
    token and the app, which runs again from its checkpoint: more orders, exact sums."""
    directory = workdir / "sigterm"
    directory.mkdir(mode=0o755)
    produce(platform.cluster, platform.orders, 500)
    token = new_operator_token()
    server = Server(directory, platform.cluster.bootstrap, name="sigterm", operator_token=token)
    follower = None
    try:
        tenant = create_tenant(SimpleNamespace(server=server), "term")
        developer, _ = create_token(tenant.admin, "developer")
        expect(developer.deploy(zip_directory(ORDERSAPP)), 201)
        expect(developer.action(APP, "start"), 200)
        wait_grid(developer, APP, platform.orders.expected_units())
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

    produce(platform.cluster, platform.orders, 500)
    again = Server(directory, platform.cluster.bootstrap, name="sigterm-again", operator_token=token)
    try:
        client = again.client(developer.token)
        app = check_app(expect(client.app(APP), 200).json())
        assert app["desired_state"] == "running", app
        wait_grid(client, APP, platform.orders.expected_units())
        log(f"sigterm: after the restart the app runs on, exact ({wait_state(client, APP, 'running')['state']})")
    finally:
        assert again.stop(timeout=45) == 0
