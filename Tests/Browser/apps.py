"""The apps the browser tests deploy: the ordersapp and its edited version, bundles the
server refuses, and a ticker that keeps a 10,000-row grid changing (plus a picture made of
colour cells)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile

from support.harness import ORDERSAPP

# The ordersapp's code, edited in the browser to count orders too: a second column, and a
# log line at the start and every 1,000 orders of this version.
ORDERSAPP_V2 = '''import aerogrid

print("ordersapp version 2: counting units and orders", flush=True)

app = aerogrid.App('ordersapp', broker=BROKER_URI)

class Order(aerogrid.Record):
    product: str
    quantity: int

orders_topic = app.topic('orders', key_type=str, value_type=Order)

product_sum = app.Grid('product_sum', columns=['units_sold', 'orders'],
                       default=lambda: {'units_sold': 0})

counted = 0

@app.stream(orders_topic)
async def sum_orders(orders):
    global counted
    async for order_id, order in orders.items():
        row = product_sum[order.product]
        product_sum[order.product] = {'units_sold': row['units_sold'] + order.quantity,
                                      'orders': row.get('orders', 0) + 1}
        counted += 1
        if counted % 1000 == 0:
            print(f"counted {counted} orders in this version", flush=True)
'''

# Commands from the tenant's own topic: {"fill": true} writes the 10,000 rows of `board` and
# the 32×32 `picture`; {"seed": n, "changes": k} changes k random rows of `board`.
TICKAPP = '''import random

import aerogrid

app = aerogrid.App('tickapp', broker=BROKER_URI)
commands = app.topic(@TOPIC@, key_type=str, value_type=dict)
board = app.Grid('board', columns=['name', 'price', 'qty', 'colour'])
picture = app.Grid('picture', columns=[f'c{x:02}' for x in range(32)])

ROWS = 10000


def colour(n, shift=0):
    x, y = n % 100, n // 100
    return '#%02x%02x%02x' % ((x * 255 // 99 + shift) % 256, (y * 255 // 99) % 256, 160)


@app.stream(commands)
async def run(records):
    async for _, command in records.items():
        if command.get('fill'):
            for n in range(ROWS):
                board[n] = {'name': f'item-{n:05}', 'price': round(100 + n / 100, 2), 'qty': n % 50, 'colour': colour(n)}
            for y in range(32):
                row = {}
                for x in range(32):
                    d = ((x - 15.5) ** 2 + (y - 15.5) ** 2) ** 0.5
                    r = max(0, 255 - int(d * 14))
                    row[f'c{x:02}'] = '#%02x%02x%02x' % (r, (x * 8) % 256, (y * 8) % 256)
                picture[f'r{y:02}'] = row
        else:
            rnd = random.Random(command['seed'])
            for _ in range(command.get('changes', 100)):
                n = rnd.randrange(ROWS)
                board[n] = {'name': f'item-{n:05}', 'price': round(rnd.uniform(50, 150), 2),
                            'qty': rnd.randrange(1000), 'colour': colour(n, rnd.randrange(64))}
'''


def bundle(name: str, files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def manifest(name: str) -> str:
    return f'name = "{name}"\nentrypoint = "app.py"\nruntime = "python3.11"\n'


def ordersapp_bundle() -> bytes:
    return bundle("ordersapp", {"app.toml": (ORDERSAPP / "app.toml").read_text(), "app.py": (ORDERSAPP / "app.py").read_text(),
                                "README.md": (ORDERSAPP / "README.md").read_text()})


def tickapp_bundle(topic: str) -> bytes:
    return bundle("tickapp", {"app.toml": manifest("tickapp"), "app.py": TICKAPP.replace("@TOPIC@", repr(topic))})


def send(bootstrap: str, topic: str, commands: list) -> None:
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for index, command in enumerate(commands):
        producer.produce(topic, key=f"c{index}", value=json.dumps(command))
    assert producer.flush(30) == 0, "commands left undelivered"


class Ticker:
    """Sends `rate` change commands a second to the tick app's topic until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: int = 20, changes: int = 250) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.rate = rate
        self.changes = changes
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def __enter__(self) -> Ticker:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        self.thread.join(30)

    def _run(self) -> None:
        from confluent_kafka import Producer
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        started = time.monotonic()
        while not self.stopping.is_set():
            producer.produce(self.topic, key=f"t{self.sent}", value=json.dumps({"seed": self.sent, "changes": self.changes}))
            self.sent += 1
            producer.poll(0)
            delay = started + self.sent / self.rate - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
        producer.flush(30)
