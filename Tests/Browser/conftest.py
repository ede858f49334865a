"""Fixtures for the web console's browser tests (issue 9): a real server on an embedded Kafka
cluster, a tenant whose apps may read `orders`, and one headless Chromium driven by Selenium.

Run with `make test-browser`, or `python3 -m pytest -q -s` in this directory to see the
numbers (axe results, the longest long task). Needs root (the server runs sandboxed apps), the
debug build of `aerogrid` (or AEROGRID_BIN), kcat, confluent-kafka, Debian's chromium and
chromium-driver, and selenium and axe-selenium-python from PyPI (all in scripts/setup).
Screenshots go to .build/screenshots/ with report.json (not committed).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Integration"))  # harness.py and server.py: the servers and Kafka

from harness import AEROGRID, REPO, KafkaCluster, log, remove_tenant_cgroups  # noqa: E402
from server import Server, expect, new_operator_token  # noqa: E402

from console import Browser, Report  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
SCREENSHOTS = REPO / ".build" / "screenshots"
TENANTS: list = []  # every tenant made here: the cgroup directories the server leaves go at the end


@pytest.fixture(scope="session", autouse=True)
def environment():
    problems = []
    if os.geteuid() != 0:
        problems.append("root (the server runs apps in sandboxes)")
    if not AEROGRID.exists():
        problems.append(f"{AEROGRID} (swift build, or set AEROGRID_BIN)")
    if shutil.which("kcat") is None:
        problems.append("kcat")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            problems.append(f"{path} (apt-get install {package})")
    for module, package in (("selenium", "selenium"), ("axe_selenium_python", "axe-selenium-python"),
                            ("confluent_kafka", "confluent-kafka")):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{package} (pip install {package})")
    if problems:
        pytest.skip("the browser tests need " + ", ".join(problems))


@pytest.fixture(scope="session")
def workdir():
    """Readable by the sandbox's uid 65534 (0755, not below a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="aerogrid-browser-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if os.environ.get("AEROGRID_IT_KEEP"):
        print(f"\nbrowser test files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def report():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    collected = Report(SCREENSHOTS)
    yield collected
    collected.write()
    log(f"browser report: {collected.summary()}")


@pytest.fixture(scope="session")
def platform(workdir):
    """Kafka and `aerogrid serve`, with an operator token of the test's own."""
    cluster = KafkaCluster(workdir, name="kafka-browser")
    operator_token = new_operator_token()
    server = None
    try:
        server = Server(workdir, cluster.bootstrap, name="server-browser", operator_token=operator_token)
        server.wait_ready()
        index = server.client().get("/", headers={"Accept": "text/html"})
        assert index.status == 200 and b"AeroGrid console" in index.body, \
            f"the server does not serve the console at / (rebuild {AEROGRID}): {index!r}"
        yield server, cluster
    finally:
        if server is not None and server.alive():
            log(f"browser server: exited with {server.stop()} after SIGTERM")
        cluster.terminate()
        remove_tenant_cgroups(TENANTS)


@pytest.fixture(scope="session")
def browser(report):
    driver = Browser.start(CHROMIUM, CHROMEDRIVER, report)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def clean_console(request):
    """Every test ends with no error in the browser's console (beyond the failed requests
    the test provoked on purpose: `allow_network(...)`)."""
    if "browser" not in request.fixturenames:
        yield
        return
    browser = request.getfixturevalue("browser")
    browser.console_errors()  # what came before this test is not its own
    browser.allowed_network = []
    yield
    errors = browser.console_errors()
    assert not errors, f"errors in the browser's console: {errors}"


@pytest.fixture(scope="session")
def tenant(platform):
    server, _ = platform
    from types import SimpleNamespace
    import secrets
    name = f"web-{secrets.token_hex(3)}"
    TENANTS.append(name)
    created = expect(server.operator.post("/api/v1/tenants", json_body={"name": name, "topics": ["orders", f"{name}.*"]}),
                     201).json()
    admin = created["admin_token"]["secret"]
    viewer = expect(server.client(admin).post("/api/v1/tokens", json_body={"name": "viewer", "role": "viewer"}), 201).json()
    return SimpleNamespace(name=name, admin=admin, viewer=viewer["secret"], operator=server.operator_token,
                           api=server.client(admin), viewer_api=server.client(viewer["secret"]))
