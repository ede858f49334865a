"""Write currency prices to Kafka for the fx-ticker app (needs `pip install confluent-kafka`).

    python3 produce_prices.py --broker localhost:9092 [--rate 25] [--count 0] [--topic fx-prices]

Ten pairs follow random walks, each tick one quote keyed by its pair:
`EUR/USD` -> {"bid": 1.08493, "ask": 1.08501, "time": "2026-11-30T09:15:02.125Z"}. Now and then
a pair is delisted (`{"status": "delisted", ...}`) and listed again a few hundred ticks later.
`--count 0` runs until Ctrl-C. The last line printed is the expected content of the app's two
grids, as JSON: {"ticks", "delists", "relists", "board": {pair: row}, "stats": {pair: row}}.
"""

import argparse
import datetime
import json
import math
import random
import sys
import time

# pair: (first mid, decimals of a quote, typical spread in pips, volatility per tick, activity)
PAIRS = {
    "EUR/USD": (1.08500, 5, 0.6, 0.00004, 10),
    "GBP/USD": (1.26500, 5, 0.9, 0.00005, 7),
    "USD/JPY": (151.500, 3, 0.8, 0.00005, 8),
    "USD/CHF": (0.88500, 5, 1.2, 0.00004, 4),
    "AUD/USD": (0.65500, 5, 0.8, 0.00006, 5),
    "USD/CAD": (1.35800, 5, 1.3, 0.00004, 4),
    "NZD/USD": (0.60800, 5, 1.4, 0.00006, 3),
    "EUR/GBP": (0.85700, 5, 1.0, 0.00003, 3),
    "EUR/JPY": (164.300, 3, 1.5, 0.00005, 4),
    "USD/TRY": (32.4000, 4, 60.0, 0.00020, 2),
}
DELIST_CHANCE = 1 / 250        # per tick: a listed pair stops trading (at most 2 at a time)
RELIST_AFTER = (100, 400)      # ticks until a delisted pair trades again

# The app's arithmetic, repeated here to compute the grids it must end with (keep in step
# with app.py).
ALPHA = 2 / (20 + 1)


def pip_size(pair: str) -> float:
    return 0.01 if pair.endswith("/JPY") else 0.0001


class Expected:
    """The grids `board` and `stats` as app.py computes them from the same quotes."""

    def __init__(self) -> None:
        self.board: dict = {}
        self.stats: dict = {}

    def quote(self, pair: str, bid: float, ask: float, stamp: str) -> None:
        mid = round((bid + ask) / 2, 6)
        pip = pip_size(pair)
        last = self.board.get(pair)
        self.board[pair] = {"bid": bid, "ask": ask, "mid": mid,
                            "change": 0.0 if last is None else round((mid - last["mid"]) / pip, 1),
                            "spread": round((ask - bid) / pip, 1), "time": stamp}
        row = self.stats.get(pair, {"ticks": 0, "average": None, "high": None, "low": None})
        if row["ticks"] == 0:
            average = high = low = mid
        else:
            average = round(row["average"] + ALPHA * (mid - row["average"]), 6)
            high, low = max(row["high"], mid), min(row["low"], mid)
        self.stats[pair] = {"ticks": row["ticks"] + 1, "average": average, "high": high, "low": low}

    def delist(self, pair: str) -> None:
        self.board.pop(pair, None)
        self.stats.pop(pair, None)


class Market:
    """Random-walk prices, with pairs delisted and listed again."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.mids = {pair: spec[0] for pair, spec in PAIRS.items()}
        self.delisted: dict = {}  # pair -> the tick it trades again
        self.tick = 0

    def next(self) -> tuple:
        """(pair, value dict) for the next message."""
        self.tick += 1
        rnd = self.rnd
        for pair, until in list(self.delisted.items()):
            if self.tick >= until:
                del self.delisted[pair]  # listed again: its next quote starts a new row
        listed = [pair for pair in PAIRS if pair not in self.delisted]
        if len(self.delisted) < 2 and rnd.random() < DELIST_CHANCE:
            pair = rnd.choice(listed)
            self.delisted[pair] = self.tick + rnd.randint(*RELIST_AFTER)
            return pair, {"status": "delisted"}
        pair = rnd.choices(listed, [PAIRS[p][4] for p in listed])[0]
        _, decimals, spread_pips, volatility, _ = PAIRS[pair]
        mid = self.mids[pair] = self.mids[pair] * math.exp(volatility * rnd.gauss(0, 1))
        half = spread_pips * pip_size(pair) * rnd.uniform(0.7, 1.4) / 2
        bid, ask = round(mid - half, decimals), round(mid + half, decimals)
        if ask <= bid:
            ask = round(bid + 10 ** -decimals, decimals)
        return pair, {"bid": bid, "ask": ask}


def main() -> None:
    parser = argparse.ArgumentParser(description="produce currency prices for the fx-ticker app")
    parser.add_argument("--broker", default="localhost:9092")
    parser.add_argument("--topic", default="fx-prices")
    parser.add_argument("--count", type=int, default=0, help="quotes to write (0 = until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=25, help="quotes per second (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.broker, "linger.ms": 5})
    market = Market(args.seed)
    expected = Expected()
    delists = relists = 0
    was_delisted: set = set()
    started = time.monotonic()
    n = 0
    try:
        while not args.count or n < args.count:
            pair, value = market.next()
            value["time"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds") \
                .replace("+00:00", "Z")
            if value.get("status") == "delisted":
                expected.delist(pair)
                delists += 1
                was_delisted.add(pair)
            else:
                if pair in was_delisted:
                    was_delisted.discard(pair)
                    relists += 1
                expected.quote(pair, value["bid"], value["ask"], value["time"])
            while True:
                try:
                    producer.produce(args.topic, key=pair, value=json.dumps(value))
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
            n += 1
            if args.rate:
                delay = started + n / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        pass
    left = producer.flush(30)
    if left:
        print(f"produce_prices: {left} quotes were not delivered", file=sys.stderr)
    print(json.dumps({"ticks": n, "delists": delists, "relists": relists,
                      "board": dict(sorted(expected.board.items())),
                      "stats": dict(sorted(expected.stats.items()))}))


if __name__ == "__main__":
    main()
