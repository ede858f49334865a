"""AeroGrid's Python SDK: stream Kafka records into grids that Excel shows live.

>>> import aerogrid
>>> app = aerogrid.App('ordersapp', broker='localhost:9092')
>>> class Order(aerogrid.Record):
...     product: str
...     quantity: int
>>> orders_topic = app.topic('orders', key_type=str, value_type=Order)
>>> product_sum = app.Grid('product_sum', columns=['units_sold'],
...                        default=lambda: {'units_sold': 0})
>>> @app.stream(orders_topic)
... async def sum_orders(orders):
...     async for order_id, order in orders.items():
...         units_sold = product_sum[order.product]['units_sold'] + order.quantity
...         product_sum[order.product] = {'units_sold': units_sold}

Run such a module with ``python -m aerogrid run app.py [--broker HOST:PORT]``.
"""

from ._app import App
from ._grid import Grid
from ._record import DecodeError, Record
from ._stream import Stream
from ._topic import Topic
from ._version import __version__

__all__ = ["App", "Record", "Grid", "Topic", "Stream", "DecodeError", "__version__"]
