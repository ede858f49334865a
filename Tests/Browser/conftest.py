"""Fixtures for the web console's browser tests (issue 9), besides support.plugin's: a real
server on an embedded Kafka cluster for each test module, a tenant whose apps may read
`orders`, and one headless Chromium driven by Selenium for the session.

Run with `make test-browser`, and `make test-browser PYTEST_ARGS=-s` to see the numbers
(axe results, the longest long task). Needs root (the server runs sandboxed apps), the
debug build of `aerogrid` (or AEROGRID_BIN), kcat, confluent-kafka, Debian's chromium and
chromium-driver, and selenium and axe-selenium-python from PyPI (all in scripts/setup).
Screenshots go to .build/screenshots/ with report.json (not committed).
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest

from console import Browser, Report
from support.harness import AEROGRID, REPO, log
from support.prerequisites import CHROMEDRIVER, CHROMIUM
from support.server import expect

SCREENSHOTS = REPO / ".build" / "screenshots"


@pytest.fixture(scope="session")
def needs() -> tuple:
    return ("root", "aerogrid", "kcat", "chromium", "chromium-driver", "selenium", "axe-selenium-python",
            "confluent-kafka")


@pytest.fixture(scope="session")
def report():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    collected = Report(SCREENSHOTS)
    yield collected
    collected.write()
    log(f"browser report: {collected.summary()}")


@pytest.fixture(scope="module")
def platform(platform, browser):
    """support.plugin's platform, checked to serve the console: a binary built before it
    would fail every test here with less to go on. The browser leaves the console before the
    platform stops: its stream would try the stopped server again, and the next module's
    test would find those errors in the browser's console."""
    index = platform.server.client().get("/", headers={"Accept": "text/html"})
    assert index.status == 200 and b"AeroGrid console" in index.body, \
        f"the server does not serve the console at / (rebuild {AEROGRID}): {index!r}"
    yield platform
    browser.driver.get("about:blank")


@pytest.fixture(scope="session")
def browser(report):
    driver = Browser.start(str(CHROMIUM), str(CHROMEDRIVER), report)
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


@pytest.fixture(scope="module")
def tenant(platform):
    server = platform.server
    name = f"web-{secrets.token_hex(3)}"
    created = expect(server.operator.post("/api/v1/tenants", json_body={"name": name, "topics": ["orders", f"{name}.*"]}),
                     201).json()
    admin = created["admin_token"]["secret"]
    viewer = expect(server.client(admin).post("/api/v1/tokens", json_body={"name": "viewer", "role": "viewer"}), 201).json()
    return SimpleNamespace(name=name, admin=admin, viewer=viewer["secret"], operator=server.operator_token,
                           api=server.client(admin), viewer_api=server.client(viewer["secret"]))
