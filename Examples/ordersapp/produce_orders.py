"""Write realistic orders to Kafka for the ordersapp (needs `pip install confluent-kafka`).

    python3 produce_orders.py --broker localhost:9092 --count 200000 [--topic orders] [--rate 1000]

Each record has key `order-<n>` and a JSON value like {"product": "Widget", "quantity": 3};
the last line printed is the units per product, to compare with the product_sum grid.
"""

import argparse
import json
import random
import time

PRODUCTS = ["Widget", "Gadget", "Gizmo", "Sprocket", "Doohickey", "Thingamajig",
            "How to Win Friends", "Flux Capacitor", "Left-handed Spanner", "Cable Organizer"]


def main() -> None:
    parser = argparse.ArgumentParser(description="produce orders for the ordersapp")
    parser.add_argument("--broker", default="localhost:9092")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=0, help="orders per second (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.broker, "linger.ms": 20})
    rnd = random.Random(args.seed)
    weights = [1 / (rank + 1) for rank in range(len(PRODUCTS))]  # a few best sellers
    totals: dict = {}
    started = time.monotonic()
    for n in range(args.count):
        product = rnd.choices(PRODUCTS, weights)[0]
        quantity = rnd.choices([1, 2, 3, 5, 10, 25], [50, 20, 12, 10, 6, 2])[0]
        totals[product] = totals.get(product, 0) + quantity
        value = json.dumps({"product": product, "quantity": quantity})
        while True:
            try:
                producer.produce(args.topic, key=f"order-{n}", value=value)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
        if args.rate:
            delay = started + (n + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    producer.flush()
    print(json.dumps(dict(sorted(totals.items()))))


if __name__ == "__main__":
    main()
