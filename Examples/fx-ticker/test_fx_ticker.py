"""The fx-ticker example end to end, against the embedded Kafka cluster (`aerogrid kafka up`):

- produce_prices.py writes 3,000 quotes (pairs delisted and listed again among them) and
  prints the grids the app must end with;
- the SDK's runner (`python -m aerogrid run app.py --broker ...`) ends with exactly those
  grids, the delisted pairs absent;
- deployed to `aerogrid serve` and started (sandboxed), the app's grids over REST are exactly
  those too; then, live: a delist removes a pair's rows, its next quote starts from the
  stats' default, the app's log says so, and after a restart the stats go on from the
  checkpointed grids.

Needs root (the sandbox), the built `aerogrid` (or AEROGRID_BIN) and confluent-kafka.
Run with `make test-examples PYTEST_ARGS="-s -k fx"` to see the timings.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

import produce_prices
from support.harness import KafkaCluster, log, run_with_sdk
from support.server import Server, expect, new_operator_token, poll, wait_state, zip_directory

HERE = Path(__file__).resolve().parent

APP = "fx-ticker"
TOPIC = "fx-prices"
QUOTES = 3_000
SEED = 6  # a run whose last quotes leave two pairs delisted (checked below)


# --------------------------------------------------------------------------------------------
# Fixtures: one Kafka cluster with the quotes, shared by both tests


@pytest.fixture(scope="module")
def market(moduledir):
    """(cluster, expected) after produce_prices.py wrote its quotes."""
    cluster = KafkaCluster(moduledir, topics=[f"{TOPIC}:4"])
    try:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(HERE / "produce_prices.py"), "--broker", cluster.bootstrap, "--count", str(QUOTES),
             "--rate", "0", "--seed", str(SEED)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        expected = json.loads(result.stdout.splitlines()[-1])
        log(f"producer: {expected['ticks']} quotes, {expected['delists']} delists, {expected['relists']} relists "
            f"in {time.monotonic() - started:.2f} s")
        # What this test is for: deletes happened, some pairs came back, two are gone at the end.
        assert expected["ticks"] == QUOTES and expected["delists"] >= 3 and expected["relists"] >= 1, expected
        assert len(expected["board"]) == len(produce_prices.PAIRS) - 2, sorted(expected["board"])
        assert set(expected["board"]) == set(expected["stats"])
        yield cluster, expected
    finally:
        cluster.terminate()


# --------------------------------------------------------------------------------------------
# The SDK's runner


def test_the_runner_ends_with_the_expected_grids(market):
    cluster, expected = market
    started = time.monotonic()
    grids = {name: dict(rows) for name, rows in run_with_sdk(HERE / "app.py", cluster.bootstrap).items()}
    log(f"runner: {len(grids.get('board', {}))} pairs on the board in {time.monotonic() - started:.1f} s "
        "(the consumer group's join included)")
    assert grids["board"] == expected["board"]
    assert grids["stats"] == expected["stats"]


# --------------------------------------------------------------------------------------------
# Deployed to `aerogrid serve`


def send(bootstrap: str, messages: list) -> None:
    """(pair, value) quotes written to the topic, as the producer writes them."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for pair, value in messages:
        producer.produce(TOPIC, key=pair, value=json.dumps(value))
    assert producer.flush(30) == 0


def test_deployed_to_the_server(market, moduledir):
    cluster, expected = market
    server = Server(moduledir, cluster.bootstrap, operator_token=new_operator_token())
    tenant = f"fx-{secrets.token_hex(3)}"
    try:
        server.wait_ready()
        created = expect(server.operator.post("/api/v1/tenants", json_body={"name": tenant, "topics": [TOPIC]}), 201)
        admin = server.client(created.json()["admin_token"]["secret"])

        started = time.monotonic()
        app = expect(admin.deploy(zip_directory(HERE)), 201).json()
        assert app["name"] == APP and app["entrypoint"] == "app.py", app
        expect(admin.action(APP, "start"), 200)
        wait_state(admin, APP, "running")

        def grids():
            return {name: expect(admin.grid(APP, name), 200).json()["rows"] for name in ("board", "stats")}

        def caught_up(found: dict) -> bool:
            return found == {"board": expected["board"], "stats": expected["stats"]}

        poll(grids, caught_up, 60, "the grids to equal the producer's expectation")
        log(f"server: deployed, started and caught up on {QUOTES} quotes in {time.monotonic() - started:.2f} s")
        summary = {g["name"]: g for g in expect(admin.get(f"/api/v1/apps/{APP}/grids"), 200).json()["grids"]}
        assert summary["board"]["columns"] == ["bid", "ask", "mid", "change", "spread", "time"], summary
        assert summary["stats"]["columns"] == ["ticks", "average", "high", "low"], summary

        # Live: a delist takes the pair off both grids ...
        board, stats = expected["board"], expected["stats"]
        pair = "EUR/USD" if "EUR/USD" in board else sorted(board)[0]
        send(cluster.bootstrap, [(pair, {"status": "delisted", "time": "2026-11-30T10:00:00.000Z"})])
        poll(grids, lambda found: pair not in found["board"] and pair not in found["stats"]
             and len(found["board"]) == len(board) - 1, 30, f"{pair} gone from both grids")
        lines = expect(admin.get(f"/api/v1/apps/{APP}/logs", query={"tail": 1000}), 200).json()["lines"]
        assert any(f"{pair} delisted" in line["message"] for line in lines), lines[-10:]

        # ... and its next quote starts from the stats' default row.
        send(cluster.bootstrap, [(pair, {"bid": 1.1, "ask": 1.1002, "time": "2026-11-30T10:00:01.000Z"})])
        # Both grids: they are read one request after the other, and the quote may land between.
        found = poll(grids, lambda found: pair in found["stats"] and pair in found["board"], 30, f"{pair} listed again")
        assert found["stats"][pair] == {"ticks": 1, "average": 1.1001, "high": 1.1001, "low": 1.1001}
        assert found["board"][pair] == {"bid": 1.1, "ask": 1.1002, "mid": 1.1001, "change": 0.0, "spread": 2.0,
                                        "time": "2026-11-30T10:00:01.000Z"}
        assert isinstance(found["board"][pair]["change"], float)  # 0.0 the app wrote, not 0

        # After a restart the app reads its state back from the checkpointed grids.
        epoch = expect(admin.grid(APP, "stats"), 200).json()["epoch"]
        expect(admin.action(APP, "restart"), 200)
        poll(lambda: expect(admin.grid(APP, "stats"), 200).json()["epoch"], lambda found: found != epoch, 60,
             "a new epoch: the app's runner started again")
        wait_state(admin, APP, "running")
        send(cluster.bootstrap, [(pair, {"bid": 1.1004, "ask": 1.1006, "time": "2026-11-30T10:00:02.000Z"})])
        # Both grids again: the board may still be read before the quote, the stats after it.
        found = poll(grids, lambda found: found["stats"].get(pair, {}).get("ticks") == 2
                     and found["board"].get(pair, {}).get("time") == "2026-11-30T10:00:02.000Z", 60,
                     f"{pair}'s second quote after the restart")
        average = round(1.1001 + produce_prices.ALPHA * (1.1005 - 1.1001), 6)
        assert found["stats"][pair] == {"ticks": 2, "average": average, "high": 1.1005, "low": 1.1001}
        assert found["board"][pair]["change"] == 4.0  # pips
        others = {key: row for key, row in found["stats"].items() if key != pair}
        assert others == {key: row for key, row in stats.items() if key != pair}
        app = expect(admin.app(APP), 200).json()
        assert app["restarts"] == 0 and app["crash_reason"] is None, app

        expect(server.operator.delete(f"/api/v1/tenants/{tenant}"), 204)
    finally:
        status = server.stop()
    assert status == 0, f"the server exited with {status} after SIGTERM:\n{server.stderr_tail()}"
