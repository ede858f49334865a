"""``App``: the application object a tenant's module creates, and what it declares."""

from ._frames import PROTOCOL_VERSION
from ._grid import Grid, check_name
from ._stream import Stream
from ._topic import Topic
from ._version import __version__

# Every App created in this process, so the runner can find the one the module made.
created_apps: list = []


def _is_async_def(fn) -> bool:
    # What inspect.iscoroutinefunction checks (CO_COROUTINE), without importing inspect.
    return bool(getattr(getattr(fn, "__code__", None), "co_flags", 0) & 0x80)


class App:
    """The application: declares topics, grids and stream handlers.

    Run the module with ``python -m aerogrid run app.py``: the runner defines
    ``BROKER_URI``, imports the module and feeds the declared streams.

    >>> import aerogrid
    >>> app = aerogrid.App('ordersapp', broker='localhost:9092')
    >>> orders = app.topic('orders', key_type=str, value_type=dict)
    >>> totals = app.Grid('totals', columns=['units'], default=lambda: {'units': 0})
    >>> @app.stream(orders)
    ... async def add(orders):
    ...     async for order in orders:
    ...         totals[order['product']] = {'units': totals[order['product']]['units'] + 1}
    >>> [s.name for s in app.streams]
    ['add']
    """

    def __init__(self, name: str, *, broker: "str | None" = None) -> None:
        self.name = check_name("app", name)
        self.broker = broker
        self._topics: dict = {}
        self._grids: dict = {}
        self._streams: list = []
        self._sink = None  # set by the runner: where topic.send() writes
        created_apps.append(self)

    def topic(self, name: str, *, key_type=bytes, value_type=bytes) -> Topic:
        """Declare a topic the app consumes or produces to."""
        if name in self._topics:
            raise ValueError(f"topic {name!r} is already declared")
        topic = Topic(self, name, key_type, value_type)
        self._topics[name] = topic
        return topic

    def Grid(self, name: str, *, columns, default=None) -> Grid:  # noqa: N802 (the seed's spelling)
        """Declare a grid: rows keyed by str or int, with the given columns."""
        if name in self._grids:
            raise ValueError(f"grid {name!r} is already declared")
        grid = Grid(name, columns, default)
        self._grids[name] = grid
        return grid

    def stream(self, topic: Topic):
        """Decorator: run an ``async def handler(stream)`` over every record of ``topic``."""
        if not isinstance(topic, Topic) or topic._app is not self:
            raise TypeError("app.stream() takes a topic declared with this app's app.topic()")

        def register(handler):
            if not _is_async_def(handler):
                raise TypeError(f"stream handler {getattr(handler, '__name__', handler)!r} "
                                "must be an async def")
            self._streams.append(Stream(topic, handler))
            return handler

        return register

    @property
    def streams(self) -> "list[Stream]":
        return list(self._streams)

    @property
    def grids(self) -> "dict[str, Grid]":
        return dict(self._grids)

    def _describe(self) -> dict:
        """The declarations, as sent in the IPC hello frame."""
        return {
            "protocol": PROTOCOL_VERSION,
            "sdk": f"aerogrid-python/{__version__}",
            "app": self.name,
            "topics": [t._describe() for t in self._topics.values()],
            "grids": [g._describe() for g in self._grids.values()],
            "streams": [{"name": s.name, "topic": s.topic.name} for s in self._streams],
            "produces": list(self._topics),
        }

    def __repr__(self) -> str:
        return f"<App {self.name!r}>"
