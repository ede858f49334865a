"""Running an app under the supervisor: the IPC protocol on an inherited socket (docs/ipc.md).

One thread, blocking I/O: read a frame, act on it, write the answer. Batches are handled
strictly in order; while the app works on one, the next already waits in the socket, which
is all the pipelining the app side needs.
"""

import select
import socket
import sys
import time

from . import _frames as f
from ._batch import BatchProcessor, HandlerError

HEARTBEAT_INTERVAL = 1.0  # send a heartbeat after this long without sending anything
HEARTBEAT_TIMEOUT = 10.0  # the peer is gone after this long without receiving anything

# Exit statuses, also listed in docs/ipc.md.
EXIT_OK = 0
EXIT_APP_ERROR = 1
EXIT_PROTOCOL = 3


class _Closed(Exception):
    """The supervisor closed the connection or went silent."""


class Connection:
    """Frames over a stream socket. The socket stays blocking, so a send waits for the
    supervisor however busy it is; reads wait in poll() so heartbeats can go out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(None)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._buffer = bytearray()
        self.last_sent = self.last_received = time.monotonic()

    def read_frame(self):
        """The next ``(type, payload)``, or None when nothing arrived within the interval."""
        buffer = self._buffer
        while True:
            if len(buffer) >= 5:
                length, ftype = f.FRAME_HEAD.unpack_from(buffer, 0)
                if length < 1 or length > f.MAX_FRAME:
                    raise f.ProtocolError(f"frame length {length} is outside 1..{f.MAX_FRAME}")
                end = 4 + length
                if len(buffer) >= end:
                    payload = bytes(buffer[5:end])
                    del buffer[:end]
                    self.last_received = time.monotonic()
                    return ftype, payload
                want = end - len(buffer)
            else:
                want = 5 - len(buffer)
            if not self._poll.poll(HEARTBEAT_INTERVAL * 1000):
                if time.monotonic() - self.last_received > HEARTBEAT_TIMEOUT:
                    raise _Closed(f"no frame from the supervisor for {HEARTBEAT_TIMEOUT:.0f} s")
                return None
            chunk = self.sock.recv(max(want, 1 << 18))
            if not chunk:
                raise _Closed("the supervisor closed the connection")
            buffer += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.last_sent = time.monotonic()

    def heartbeat_if_due(self) -> None:
        if time.monotonic() - self.last_sent >= HEARTBEAT_INTERVAL:
            self.send(f.frame(f.HEARTBEAT))


class _FrameSink:
    """Where ``topic.send()`` goes under the supervisor: produce frames of the current batch."""

    def __init__(self) -> None:
        self.frames: list = []

    def produce(self, topic: str, key, value, headers) -> None:
        self.frames.append(f.produce(topic, key, value, headers))


def run(app, fd: int) -> int:
    """Serve ``app`` over the socket on ``fd`` until shutdown; return the exit status."""
    sock = socket.socket(fileno=fd)
    conn = Connection(sock)
    try:
        processor = BatchProcessor(app)
        conn.send(f.json_frame(f.HELLO, app._describe()))
        if "logging" in sys.modules:  # only if the app uses logging: it is slow to import
            _forward_logging(conn)
        if _restore(app, conn):
            return _serve(app, processor, conn)
        return EXIT_OK
    except HandlerError as exc:
        _log(conn, "error", str(exc))
        return EXIT_APP_ERROR
    except f.ProtocolError as exc:
        print(f"aerogrid: protocol error: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL
    except (_Closed, OSError) as exc:
        print(f"aerogrid: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL
    finally:
        sock.close()


def _print_shutdown(payload: bytes) -> None:
    reason = f.load_json(payload).get("reason") if payload else None
    if reason:
        print(f"aerogrid: shutdown: {reason}", file=sys.stderr)


# The supervisor drops log frames over 64 KiB unread (docs/ipc.md): a message is cut to 8 KiB
# of UTF-8, which JSON's escaping (at most six bytes for each one) keeps under the limit.
_LOG_MESSAGE_BYTES = 8 * 1024


def _cut(message: str) -> str:
    encoded = message.encode("utf-8", "replace")
    if len(encoded) <= _LOG_MESSAGE_BYTES:
        return message
    return encoded[:_LOG_MESSAGE_BYTES].decode("utf-8", "ignore") + "…"


def _log(conn: Connection, level: str, message: str) -> None:
    print(f"aerogrid: {message}", file=sys.stderr)
    try:
        conn.send(f.json_frame(f.LOG, {"level": level, "message": _cut(message)}))
    except OSError:
        pass


_LEVELS = ((40, "error"), (30, "warning"), (20, "info"))


def _forward_logging(conn: Connection) -> None:
    """Send the app's log records to the supervisor as log frames."""
    import logging

    class FrameHandler(logging.Handler):
        def emit(self, record):
            level = next((name for number, name in _LEVELS if record.levelno >= number), "debug")
            try:
                conn.send(f.json_frame(f.LOG, {"level": level, "message": _cut(self.format(record))}))
            except Exception:
                self.handleError(record)

    logging.getLogger().addHandler(FrameHandler())


def _restore(app, conn: Connection) -> bool:
    """Receive the checkpointed grid rows; False if the supervisor shut the app down."""
    while True:
        frame = conn.read_frame()
        if frame is None:
            conn.heartbeat_if_due()
            continue
        ftype, payload = frame
        if ftype == f.RESTORE:
            body = f.load_json(payload)
            grid = app._grids.get(body.get("grid"))
            if grid is None:
                _log(conn, "warning", f"restore for undeclared grid {body.get('grid')!r} ignored")
                continue
            try:
                grid._restore(body.get("rows", ()))
            except (TypeError, ValueError):
                raise f.ProtocolError(f"restore rows of grid {grid.name!r} are not [key, row] pairs") from None
        elif ftype == f.RESTORE_DONE:
            return True
        elif ftype == f.SHUTDOWN:
            _print_shutdown(payload)
            return False
        elif ftype == f.RECORDS:
            raise f.ProtocolError("records frame before restore-done")
        # heartbeat, or a frame type this version does not know: nothing to do


def _serve(app, processor: BatchProcessor, conn: Connection) -> int:
    sink = app._sink = _FrameSink()
    while True:
        frame = conn.read_frame()
        if frame is not None:
            ftype, payload = frame
            if ftype == f.RECORDS:
                conn.send(_process(processor, sink, payload))
            elif ftype == f.SHUTDOWN:
                _print_shutdown(payload)
                return EXIT_OK
            elif ftype in (f.RESTORE, f.RESTORE_DONE):
                raise f.ProtocolError("restore frame after restore-done")
            # heartbeat, or a frame type this version does not know: nothing to do
        conn.heartbeat_if_due()


def _process(processor: BatchProcessor, sink: _FrameSink, payload: bytes) -> bytes:
    """Run one records frame; return everything to send for it, ending with batch-done."""
    batch_id, topics, records = f.decode_records(payload)
    for name in topics:
        if not processor.consumes(name):
            raise f.ProtocolError(f"records frame lists topic {name!r}, which no stream consumes")
    errors = processor.process(topics, records)
    out = [f.grid_update(grid, key, row) for grid, key, row in processor.take_changes()]
    updates = len(out)
    produced = len(sink.frames)
    out += sink.frames
    sink.frames = []
    for error in errors:
        error["batch"] = batch_id
        out.append(f.json_frame(f.ERROR, error))
    out.append(f.batch_done(batch_id, len(records), len(errors), updates, produced))
    return b"".join(out)
