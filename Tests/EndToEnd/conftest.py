"""The README's walkthrough run end to end (issue 11): `make test-e2e`, or
`python3 -m pytest -q -s Tests/EndToEnd` from the repository root to see every command.

Needs root (the platform runs apps in sandboxes), the debug build of `aerogrid` (or
AEROGRID_BIN), kcat, confluent-kafka (the fx-ticker producer) and websockets.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AEROGRID = Path(os.environ.get("AEROGRID_BIN", REPO / ".build" / "debug" / "aerogrid"))

# Numbers the tests measured, printed at the end of the run even without -s.
MEASURED = pytest.StashKey[list]()


@pytest.fixture(scope="session", autouse=True)
def environment():
    problems = []
    if os.geteuid() != 0:
        problems.append("root (the platform runs apps in sandboxes)")
    if not AEROGRID.exists():
        problems.append(f"{AEROGRID} (swift build, or set AEROGRID_BIN)")
    for tool in ("kcat", "curl", "bash"):
        if shutil.which(tool) is None:
            problems.append(tool)
    for module, package in (("websockets", "websockets"), ("confluent_kafka", "confluent-kafka")):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{package} (pip install {package})")
    if problems:
        pytest.skip("the end-to-end tests need " + ", ".join(problems))


@pytest.fixture
def measured(request):
    """Append a line to show it in the run's summary."""
    return request.config.stash.setdefault(MEASURED, [])


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(MEASURED, [])
    if lines:
        terminalreporter.section("end to end: measured")
        for line in lines:
            terminalreporter.write_line(line)
