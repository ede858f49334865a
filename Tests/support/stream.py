"""A client of the stream (`/api/v1/stream`, docs/protocol.md) over the `websockets` package:
a connection with a thread reading every message, and each subscription's grid kept as a
replica the way docs/protocol.md tells a client to.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from .server import Server


def websockets_sync():
    """websockets' synchronous `connect`; the test is skipped without the package."""
    try:
        from websockets.sync.client import connect
    except ImportError:
        pytest.skip("the stream tests need the websockets package (pip install websockets)")
    return connect


class Replica:
    """One subscription's grid as the client keeps it: a snapshot replaces it, a delta
    updates its cells or removes its rows. Anything off the protocol is noted in `problems`."""

    def __init__(self) -> None:
        self.rows: dict | None = None
        self.columns: list | None = None
        self.epoch = None
        self.version = None
        self.snapshots = 0
        self.deltas = 0
        self.version_regressions = 0
        self.problems: list = []

    def apply(self, message: dict) -> None:
        if message["type"] == "snapshot":
            self.rows = {key: dict(cells) for key, cells in message["rows"]}
            if len(self.rows) != len(message["rows"]):
                self.problems.append(f"a snapshot repeats a key: {message['rows']}")
            keys = [key for key, _ in message["rows"]]
            if keys != sorted(keys, key=lambda k: (isinstance(k, str), k)):
                self.problems.append(f"snapshot rows not sorted by key: {keys}")
            self.columns = message["columns"]
            self.snapshots += 1
        else:
            if self.rows is None:
                self.problems.append(f"a delta before any snapshot: {message}")
                return
            if message["epoch"] != self.epoch:
                self.problems.append(f"a delta of epoch {message['epoch']} on a snapshot of epoch {self.epoch}")
            if message["version"] < self.version:
                self.version_regressions += 1
            for key, cells in message["rows"]:
                if cells is None:
                    self.rows.pop(key, None)
                else:
                    self.rows.setdefault(key, {}).update(cells)
            self.deltas += 1
        self.epoch, self.version = message["epoch"], message["version"]

    def by_text_key(self) -> dict:
        """The rows with their keys as text: GET …/grids/{grid} answers a JSON object."""
        return {str(key): cells for key, cells in (self.rows or {}).items()}


class StreamClient:
    """A WebSocket connection to the stream with a thread reading every message: kept in
    order with its arrival time, and applied to the replica of its subscription."""

    def __init__(self, server: Server, token: str | None, header: bool = True, auth: bool = True,
                 timeout: float = 10.0) -> None:
        connect = websockets_sync()
        self.url = f"ws://{server.host}:{server.port}/api/v1/stream"
        headers = {"Authorization": f"Bearer {token}"} if header and token else {}
        self.ws = connect(self.url, additional_headers=headers, max_size=None, open_timeout=timeout).__enter__()
        self.messages: list = []  # (monotonic time, message)
        self.replicas: dict = {}
        self.closed = None  # the ConnectionClosed, once closed
        self.condition = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if token and not header and auth:
            self.send({"op": "auth", "token": token})

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            for text in self.ws:
                message = json.loads(text)
                with self.condition:
                    if message.get("type") in ("snapshot", "delta"):
                        self.replicas.setdefault(message["id"], Replica()).apply(message)
                    self.messages.append((time.monotonic(), message))
                    self.condition.notify_all()
        except ConnectionClosed as closed:
            with self.condition:
                self.closed = closed
        except Exception as error:  # noqa: BLE001 - reported to the waiting test
            with self.condition:
                self.closed = error
        finally:
            with self.condition:
                if self.closed is None:
                    self.closed = "closed"
                self.condition.notify_all()

    def send(self, message) -> None:
        self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    def mark(self) -> int:
        with self.condition:
            return len(self.messages)

    def wait(self, predicate, timeout: float, what: str, start: int = 0) -> dict:
        """The first message from index `start` on for which predicate(message) holds."""
        end = time.monotonic() + timeout
        seen = start
        with self.condition:
            while True:
                while seen < len(self.messages):
                    message = self.messages[seen][1]
                    seen += 1
                    if predicate(message):
                        return message
                if self.closed is not None:
                    raise AssertionError(f"the connection closed ({self.closed}) while waiting for {what}; "
                                         f"last messages {self.tail()}")
                if time.monotonic() >= end:
                    raise AssertionError(f"no {what} within {timeout} s; last messages {self.tail()}")
                self.condition.wait(min(0.2, max(0.01, end - time.monotonic())))

    def wait_type(self, kind: str, timeout: float = 10.0, start: int = 0, **fields) -> dict:
        return self.wait(lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()),
                         timeout, f"a {kind} message with {fields}", start)

    def wait_closed(self, timeout: float = 10.0):
        end = time.monotonic() + timeout
        with self.condition:
            while self.closed is None and time.monotonic() < end:
                self.condition.wait(0.1)
            return self.closed

    def wait_rows(self, sub: str, expected: dict, timeout: float = 30.0, text_keys: bool = True) -> Replica:
        """Waits until subscription `sub`'s replica equals `expected`."""
        end = time.monotonic() + timeout
        with self.condition:
            while True:
                replica = self.replicas.get(sub)
                if replica is not None:
                    rows = replica.by_text_key() if text_keys else replica.rows
                    if rows == expected:
                        return replica
                if self.closed is not None or time.monotonic() >= end:
                    have = None if replica is None else (replica.by_text_key() if text_keys else replica.rows)
                    raise AssertionError(f"subscription {sub}'s rows did not become {expected} within {timeout} s "
                                         f"(closed: {self.closed}); they are {have}; last messages {self.tail()}")
                self.condition.wait(0.1)

    def of(self, sub: str, kinds=("snapshot", "delta"), start: int = 0) -> list:
        """(time, message) of subscription `sub` of the given types, from index `start`."""
        with self.condition:
            return [(t, m) for t, m in self.messages[start:] if m.get("id") == sub and m.get("type") in kinds]

    def tail(self, count: int = 6) -> list:
        return [json.dumps(m)[:300] for _, m in self.messages[-count:]]

    def subscribe(self, sub: str, app: str, grid: str, timeout: float = 20.0, **options) -> dict:
        """Subscribes and waits for `subscribed` then the snapshot; returns the snapshot."""
        start = self.mark()
        self.send({"op": "subscribe", "id": sub, "app": app, "grid": grid, **options})
        subscribed = self.wait(lambda m: m.get("id") == sub and m.get("type") in ("subscribed", "error"), timeout,
                               f"the answer to subscribe {sub}", start)
        assert subscribed["type"] == "subscribed", subscribed
        return self.wait_type("snapshot", timeout, start, id=sub)

    def ping(self, ident: str = "p", timeout: float = 10.0) -> dict:
        start = self.mark()
        self.send({"op": "ping", "id": ident})
        return self.wait_type("pong", timeout, start, id=ident)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        self.reader.join(5)


def assert_clean(client: StreamClient, *subs: str) -> None:
    """No subscription of `subs` saw anything off the protocol."""
    for sub in subs:
        replica = client.replicas[sub]
        assert not replica.problems, f"subscription {sub}: {replica.problems}"
