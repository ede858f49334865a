"""What the examples' tests (`make test-examples`) need of the machine: root (the sandbox), the
built `aerogrid` (or AEROGRID_BIN), confluent-kafka, and websockets (the pixels' stream
client). Their fixtures are support.plugin's.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def needs() -> tuple:
    return ("root", "aerogrid", "confluent-kafka", "websockets")
