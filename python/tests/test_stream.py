"""Stream handlers: both iteration forms, decode and handler errors, and batch boundaries."""

import asyncio

import pytest

import aerogrid
from aerogrid._batch import BatchProcessor, HandlerError


class Order(aerogrid.Record):
    product: str
    quantity: int


def orders_app():
    app = aerogrid.App("ordersapp", broker="unused:9092")
    topic = app.topic("orders", key_type=str, value_type=Order)
    grid = app.Grid("product_sum", columns=["units_sold"], default=lambda: {"units_sold": 0})
    return app, topic, grid


def rec(offset, value, key=b"k", topic=0, partition=0):
    return (topic, partition, offset, -1, key, value, ())


def order(product, quantity):
    return f'{{"product": "{product}", "quantity": {quantity}}}'.encode()


def test_items_yields_decoded_keys_and_values():
    app, topic, grid = orders_app()
    seen = []

    @app.stream(topic)
    async def handler(orders):
        async for order_id, order in orders.items():
            seen.append((order_id, order))

    errors = BatchProcessor(app).process(["orders"], [rec(0, order("W", 2), b"o-1"), rec(1, order("G", 1), None)])
    assert errors == []
    assert seen == [("o-1", Order(product="W", quantity=2)), (None, Order(product="G", quantity=1))]


def test_plain_async_for_yields_values():
    app, topic, grid = orders_app()
    seen = []

    @app.stream(topic)
    async def handler(orders):
        async for order in orders:
            seen.append(order.product)

    BatchProcessor(app).process(["orders"], [rec(0, order("W", 2)), rec(1, order("G", 1))])
    assert seen == ["W", "G"]


def test_the_seed_handler_sums_and_flushes_last_write_per_key():
    app, topic, product_sum = orders_app()

    @app.stream(topic)
    async def sum_orders(orders):
        async for _order_id, order in orders.items():
            units_sold = product_sum[order.product]['units_sold'] + order.quantity
            product_sum[order.product] = {'units_sold': units_sold}

    processor = BatchProcessor(app)
    processor.process(["orders"], [rec(0, order("W", 2)), rec(1, order("G", 1)), rec(2, order("W", 5))])
    assert processor.take_changes() == [("product_sum", "W", {"units_sold": 7}),
                                        ("product_sum", "G", {"units_sold": 1})]
    processor.process(["orders"], [rec(3, order("G", 1))])
    assert processor.take_changes() == [("product_sum", "G", {"units_sold": 2})]


def test_a_handler_runs_across_batches_in_one_coroutine():
    app, topic, grid = orders_app()
    starts = []

    @app.stream(topic)
    async def handler(orders):
        starts.append(1)
        count = 0
        async for _ in orders:
            count += 1
            grid["count"] = {"units_sold": count}

    processor = BatchProcessor(app)
    for offset in range(3):
        processor.process(["orders"], [rec(offset, order("W", 1))])
    assert grid["count"] == {"units_sold": 3}
    assert starts == [1]


def test_a_raising_handler_is_reported_and_continues_with_the_next_record():
    app, topic, grid = orders_app()

    @app.stream(topic)
    async def handler(orders):
        async for order in orders:
            if order.product == "Bomb":
                raise RuntimeError("boom")
            grid[order.product] = {"units_sold": grid[order.product]["units_sold"] + order.quantity}

    processor = BatchProcessor(app)
    errors = processor.process(["orders"], [
        rec(0, order("A", 1)), rec(1, order("Bomb", 1)), rec(2, order("B", 2)),
        rec(3, order("Bomb", 1)), rec(4, order("A", 3))])
    assert [(e["offset"], e["kind"], e["handler"], e["error"]) for e in errors] == [
        (1, "handler", "test_a_raising_handler_is_reported_and_continues_with_the_next_record.<locals>.handler",
         "RuntimeError: boom"),
        (3, "handler", errors[1]["handler"], "RuntimeError: boom")]
    assert 'raise RuntimeError("boom")' in errors[0]["traceback"]
    assert "_run_batch" not in errors[0]["traceback"]  # the SDK's own frame is left out
    assert {k: grid[k]["units_sold"] for k in grid} == {"A": 4, "B": 2}
    # a failure on the last record of a batch: the next batch is processed normally
    errors = processor.process(["orders"], [rec(5, order("Bomb", 1))])
    assert len(errors) == 1
    errors = processor.process(["orders"], [rec(6, order("B", 1))])
    assert errors == [] and grid["B"] == {"units_sold": 3}


def test_decode_errors_are_reported_and_skipped_without_restarting_the_handler():
    app, topic, grid = orders_app()
    starts, seen = [], []

    @app.stream(topic)
    async def handler(orders):
        starts.append(1)
        async for order in orders:
            seen.append(order.quantity)

    errors = BatchProcessor(app).process(["orders"], [
        rec(0, order("A", 1)), rec(1, b'{"product": "A", "quantity": "2"}'), rec(2, b"not json"),
        rec(3, None), rec(4, b'\xff'), rec(5, order("A", 6))])
    assert seen == [1, 6] and starts == [1]
    assert [(e["offset"], e["kind"]) for e in errors] == [(1, "decode"), (2, "decode"), (3, "decode"), (4, "decode")]
    assert errors[0]["error"] == "Order.quantity: expected int, got str ('2')"
    assert errors[1]["error"].startswith("orders value: invalid JSON (Expecting value")
    assert errors[2]["error"] == "orders value: null (a tombstone), expected Order"
    assert errors[3]["error"].startswith("orders value: invalid UTF-8")
    assert errors[0]["traceback"] == "DecodeError: Order.quantity: expected int, got str ('2')\n"


def test_a_handler_that_breaks_out_is_called_again_for_the_rest():
    app, topic, grid = orders_app()
    seen = []

    @app.stream(topic)
    async def handler(orders):
        async for order in orders:
            seen.append(order.quantity)
            break

    BatchProcessor(app).process(["orders"], [rec(i, order("A", i)) for i in range(3)])
    assert seen == [0, 1, 2]


@pytest.mark.parametrize("body, message", [
    ("return", "returned without reading its stream"),
    ("raise ValueError('setup failed')", "raised before reading its stream"),
])
def test_a_handler_that_cannot_run_is_fatal(body, message):
    app, topic, grid = orders_app()
    namespace = {}
    exec(f"async def handler(orders):\n    {body}\n    async for o in orders: pass", namespace)
    app.stream(topic)(namespace["handler"])
    with pytest.raises(HandlerError, match=message):
        BatchProcessor(app).process(["orders"], [rec(0, order("A", 1))])


def test_awaiting_something_else_is_a_handler_error_and_sleep_0_is_allowed():
    app, topic, grid = orders_app()
    seen = []

    @app.stream(topic)
    async def handler(orders):
        async for order in orders:
            await asyncio.sleep(0)
            if order.product == "net":
                await asyncio.get_event_loop_policy().new_event_loop().create_future()
            seen.append(order.product)

    errors = BatchProcessor(app).process(["orders"], [rec(0, order("a", 1)), rec(1, order("net", 1)),
                                                      rec(2, order("b", 1))])
    assert seen == ["a", "b"]
    assert len(errors) == 1 and "may await only its stream" in errors[0]["error"]


def test_two_topics_in_one_batch_reach_their_own_handlers():
    app = aerogrid.App("two", broker=None)
    first = app.topic("first", key_type=None, value_type=str)
    second = app.topic("second", key_type=None, value_type=int)
    seen = []

    @app.stream(first)
    async def on_first(stream):
        async for value in stream:
            seen.append(("first", value))

    @app.stream(second)
    async def on_second(stream):
        async for value in stream:
            seen.append(("second", value))

    BatchProcessor(app).process(["second", "first"], [
        rec(0, b"1", topic=0), rec(0, b"a", topic=1), rec(1, b"2", topic=0), rec(1, b"b", topic=1)])
    assert seen == [("second", 1), ("second", 2), ("first", "a"), ("first", "b")]


def test_grid_writes_while_loading_are_refused():
    app, topic, grid = orders_app()
    grid["x"] = {"units_sold": 1}
    with pytest.raises(RuntimeError, match="written while the app was loading"):
        BatchProcessor(app)
