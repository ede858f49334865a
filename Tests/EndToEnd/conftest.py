"""The README's walkthrough run end to end (issue 11): `make test-e2e`, and
`make test-e2e PYTEST_ARGS=-s` to see every command.

Needs root (the platform runs apps in sandboxes), the debug build of `aerogrid` (or
AEROGRID_BIN), kcat, confluent-kafka (the fx-ticker producer) and websockets.
"""

from __future__ import annotations

import pytest

# Numbers the tests measured, printed at the end of the run even without -s.
MEASURED = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def needs() -> tuple:
    return ("root", "aerogrid", "kcat", "curl", "bash", "websockets", "confluent-kafka")


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
