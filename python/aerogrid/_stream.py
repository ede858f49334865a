"""``Stream``: what a stream handler iterates, and the driver that runs handlers batch by batch.

A handler is an ``async def`` that loops over its stream forever. The SDK does not run it on
asyncio: it drives the coroutine itself with ``send()``. Within a batch the handler never
suspends (the next record is always ready), so a whole batch runs as plain function calls;
at the end of the batch the stream's iterator awaits ``_NEXT_BATCH``, which hands control
back to the driver until the next batch arrives.

The position in the batch lives on the Stream, not in the iterator, so when a handler
raises (its coroutine dies) the driver reports the record and calls the handler again: the
new coroutine's ``async for`` continues with the next record.
"""

from ._record import DecodeError


class _NextBatch:
    """Awaited by a stream's iterator when the batch is used up."""

    def __await__(self):
        yield self


_NEXT_BATCH = _NextBatch()


class HandlerError(Exception):
    """A stream handler that cannot run at all (it ends without reading its stream)."""


class Stream:
    """The records of one topic, as a stream handler sees them.

    ``async for value in stream`` yields decoded values; ``async for key, value in
    stream.items()`` yields (key, value) pairs. A record that fails to decode is reported
    (to the supervisor's dead-letter topic) and skipped.

    >>> import aerogrid
    >>> app = aerogrid.App('demo')
    >>> words = app.topic('words', key_type=None, value_type=str)
    >>> counts = app.Grid('counts', columns=['n'], default=lambda: {'n': 0})
    >>> @app.stream(words)
    ... async def count(stream):
    ...     async for word in stream:
    ...         counts[word] = {'n': counts[word]['n'] + 1}
    """

    def __init__(self, topic, handler) -> None:
        self.topic = topic
        self.handler = handler
        self.name = getattr(handler, "__qualname__", repr(handler))
        self._pending = iter(())  # the current batch's records for this stream
        self._current = None      # the last record handed to the handler
        self._coro = None
        self._started_at = None   # _current when the running coroutine was created
        self._errors: list = []

    def __aiter__(self):
        return self._values()

    def items(self):
        """Iterate over ``(key, value)`` pairs."""
        return self._items()

    async def _items(self):
        decode_key = self.topic._decode_key
        decode_value = self.topic._decode_value
        while True:
            for record in self._pending:
                try:
                    key = decode_key(record[4])
                    value = decode_value(record[5])
                except DecodeError as exc:
                    self._decode_failed(record, exc)
                    continue
                self._current = record
                yield key, value
            await _NEXT_BATCH

    async def _values(self):
        decode_value = self.topic._decode_value
        while True:
            for record in self._pending:
                try:
                    value = decode_value(record[5])
                except DecodeError as exc:
                    self._decode_failed(record, exc)
                    continue
                self._current = record
                yield value
            await _NEXT_BATCH

    def _decode_failed(self, record, exc: Exception) -> None:
        self._errors.append(self._error("decode", record, str(exc), f"DecodeError: {exc}\n"))

    def _error(self, kind: str, record, message: str, trace: str) -> dict:
        return {"topic": self.topic.name, "partition": record[1], "offset": record[2],
                "kind": kind, "handler": self.name, "error": message, "traceback": trace}

    def _run_batch(self, records, errors: list) -> None:
        """Run the handler over ``records``; append error reports to ``errors``.

        Raises HandlerError if the handler ends without taking a record, since calling it
        again would only do the same.
        """
        self._pending = iter(records)
        self._errors = errors
        to_throw = None
        while True:
            if self._coro is None:
                self._coro = self.handler(self)
                if not hasattr(self._coro, "send"):
                    raise HandlerError(f"stream handler {self.name} must be an async def")
                self._started_at = self._current
            try:
                if to_throw is None:
                    signal = self._coro.send(None)
                else:
                    pending, to_throw = to_throw, None
                    signal = self._coro.throw(pending)
            except StopIteration:
                self._coro = None
                if self._current is self._started_at:
                    raise HandlerError(f"stream handler {self.name} returned without reading "
                                       "its stream; it must loop over it") from None
                continue  # it stopped looping (e.g. break): call it again for the rest
            except Exception as exc:
                self._coro = None
                if self._current is self._started_at:
                    raise HandlerError(f"stream handler {self.name} raised before reading its "
                                       f"stream: {exc!r}") from exc
                errors.append(self._error("handler", self._current, f"{type(exc).__name__}: {exc}",
                                          _format_traceback(exc)))
                continue
            if signal is _NEXT_BATCH:
                return
            if signal is None:  # a bare yield, e.g. asyncio.sleep(0): just resume
                continue
            to_throw = RuntimeError(f"stream handler {self.name} awaited {signal!r}; a handler "
                                    "may await only its stream and topic.send()")


def _format_traceback(exc: BaseException) -> str:
    import traceback  # only when something failed: it is slow to import

    # Skip the first entry, which is the driver's own send() call.
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    return "".join(traceback.format_exception(type(exc), exc, tb))
