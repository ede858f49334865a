"""What the stream's tests (test_stream_snapshots.py, test_stream_discovery_and_access.py,
test_stream_frozen_client.py) share: their apps, tenants, grids and metrics. conftest.py's `st`
is the platform they run on, with one tenant whose orders app and stats app run.
"""

from __future__ import annotations

import json
import re
import secrets
from types import SimpleNamespace

from support.harness import TOPIC, Orders
from support.server import Client, Server, bundle, expect, poll

APP = "ordersapp"
GRID = "product_sum"
WAVE = 5_000


# --------------------------------------------------------------------------------------------
# Test apps

# Orders and units per product: a grid with two columns.
STATS_APP = '''
import aerogrid

app = aerogrid.App(@APP@, broker=BROKER_URI)

class Order(aerogrid.Record):
    product: str
    quantity: int

orders = app.topic('orders', key_type=str, value_type=Order)
stats = app.Grid('stats', columns=['orders', 'units'], default=lambda: {'orders': 0, 'units': 0})

@app.stream(orders)
async def count(records):
    async for _, order in records.items():
        row = stats[order.product]
        stats[order.product] = {'orders': row['orders'] + 1, 'units': row['units'] + order.quantity}
'''

# Commands from a topic of the tenant's own: set some cells of a row (string or integer key),
# delete a row, or exit the process while `crash_until` (a Unix time) is in the future.
CELLS_APP = '''
import os
import time

import aerogrid

app = aerogrid.App(@APP@, broker=BROKER_URI)
commands = app.topic(@TOPIC@, key_type=str, value_type=dict)
cells = app.Grid('cells', columns=['a', 'b'])

@app.stream(commands)
async def run(records):
    async for _, command in records.items():
        if command.get('crash_until', 0) > time.time():
            os._exit(3)
        key = command.get('key')
        if key is None:
            continue
        if command.get('delete'):
            if key in cells:
                del cells[key]
        else:
            row = cells.get(key, {'a': None, 'b': None})
            row.update(command.get('set', {}))
            cells[key] = row
'''


def stats_bundle(name: str = "statsapp") -> bytes:
    return bundle(name, STATS_APP.replace("@APP@", repr(name)))


def cells_bundle(name: str, topic: str) -> bytes:
    return bundle(name, CELLS_APP.replace("@APP@", repr(name)).replace("@TOPIC@", repr(topic)))


def expected_stats(orders: Orders) -> dict:
    return {product: {"orders": orders.orders[product], "units": orders.units[product]} for product in sorted(orders.units)}


def send_commands(bootstrap: str, topic: str, commands: list) -> None:
    """Writes JSON commands to `topic` with confluent-kafka and waits for every delivery."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    failures = []
    for index, command in enumerate(commands):
        producer.produce(topic, key=f"c{index}", value=json.dumps(command),
                         on_delivery=lambda error, _msg: failures.append(error) if error else None)
    left = producer.flush(30)
    assert left == 0 and not failures, f"{left} commands undelivered, errors {failures}"


def metric(client: Client, name: str) -> float:
    text = expect(client.get("/metrics", headers={"Accept": "text/plain"}), 200).text
    found = re.search(rf"^{name} ([0-9.eE+-]+)$", text, re.M)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


def create_tenant(server: Server, prefix: str) -> SimpleNamespace:
    """A tenant whose apps may read `orders` and its own `<name>.*` topics, with its admin."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    created = expect(server.operator.post("/api/v1/tenants", json_body={"name": name, "topics": [TOPIC, f"{name}.*"]}),
                     201).json()
    secret = created["admin_token"]["secret"]
    return SimpleNamespace(name=name, token=secret, admin=server.client(secret))


def wait_grid(client: Client, app: str, grid: str, expected: dict, timeout: float = 60.0) -> dict:
    return poll(lambda: client.grid(app, grid), lambda r: r.status == 200 and r.json()["rows"] == expected, timeout,
                f"grid {app}/{grid} to equal {str(expected)[:200]}").json()


def wait_apps(st) -> None:
    """The orders app and the stats app of `st` (conftest.py) have read every order produced."""
    wait_grid(st.tenant.admin, APP, GRID, st.orders.expected_units())
    wait_grid(st.tenant.admin, "statsapp", "stats", expected_stats(st.orders))


def fatal_lines(server: Server) -> list:
    return [line for line in server.stderr_tail(1000).splitlines() if line.startswith("Fatal error")]
