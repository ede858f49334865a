"""aerogrid.App: declarations and what hello reports."""

import pytest

import aerogrid


def test_the_seed_api_declares_what_hello_reports():
    app = aerogrid.App("ordersapp", broker="localhost:9092")

    class Order(aerogrid.Record):
        product: str
        quantity: int

    orders_topic = app.topic("orders", key_type=str, value_type=Order)
    product_sum = app.Grid("product_sum", columns=["units_sold"], default=lambda: {"units_sold": 0})

    @app.stream(orders_topic)
    async def sum_orders(orders):
        async for _order_id, order in orders.items():
            product_sum[order.product] = {"units_sold": 1}

    assert app.broker == "localhost:9092"
    assert callable(sum_orders)  # the decorator returns the function itself
    assert app.grids == {"product_sum": product_sum}
    hello = app._describe()
    assert hello["app"] == "ordersapp" and hello["protocol"] == "1.0"
    assert hello["streams"][0]["topic"] == "orders"
    assert hello["streams"][0]["name"].endswith("sum_orders")


def test_bad_declarations_are_refused():
    app = aerogrid.App("a")
    other = aerogrid.App("b")
    topic = app.topic("t")
    with pytest.raises(ValueError, match="app name 'Orders App' is not valid"):
        aerogrid.App("Orders App")
    with pytest.raises(ValueError, match="already declared"):
        app.topic("t")
    app.Grid("g", columns=["c"])
    with pytest.raises(ValueError, match="already declared"):
        app.Grid("g", columns=["c"])
    with pytest.raises(TypeError, match="this app's app.topic"):
        other.stream(topic)
    with pytest.raises(TypeError, match="must be an async def"):
        @app.stream(topic)
        def not_async(stream):
            pass


def test_public_surface_is_small():
    assert aerogrid.__all__ == ["App", "Record", "Grid", "Topic", "Stream", "DecodeError", "__version__"]
