"""The IPC frame codec: bytes on fd 3 <-> Python values (specified in docs/ipc.md).

Every frame is ``u32 length | u8 type | payload`` with a big-endian length that counts the
type byte and the payload. Control frames carry UTF-8 JSON; the frames that are sent per
record (``records``, ``produce``) and ``batch-done`` are binary, laid out so Python can walk
them with precompiled ``struct.Struct`` objects.
"""

import json
import struct

PROTOCOL_VERSION = "1.0"
MAX_FRAME = 16 * 1024 * 1024  # largest allowed length field; larger is a protocol violation

# Frame types. App -> supervisor:
HELLO = 0x01
GRID_UPDATE = 0x02
BATCH_DONE = 0x03
PRODUCE = 0x04
LOG = 0x05
ERROR = 0x06
# Supervisor -> app:
RESTORE = 0x11
RESTORE_DONE = 0x12
RECORDS = 0x13
SHUTDOWN = 0x14
# Both ways:
HEARTBEAT = 0x20

FRAME_HEAD = struct.Struct(">IB")  # length (type byte + payload), type
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_BATCH_HEAD = struct.Struct(">QH")  # batch id, topic count
# One record's fixed part: topic index, partition, offset, timestamp ms, key length,
# value length, header count. Lengths are -1 for null.
_RECORD = struct.Struct(">HiqqiiH")
_HEADER = struct.Struct(">H")  # header name length; the value length is an i32 after the name
_I32 = struct.Struct(">i")
_BATCH_DONE = struct.Struct(">QIIII")  # batch id, records, errors, updates, produced


def _compact_json_encoder():
    """obj -> compact JSON text, refusing NaN (not JSON). One grid-update per changed row is
    sent per batch, so this is warm: calling the stdlib's C encoder directly skips the
    per-call set-up of json.dumps, about 1 us a frame."""
    from json.encoder import c_make_encoder, encode_basestring

    if c_make_encoder is None:  # a Python without the _json accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

    def default(obj):
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    # No circular-reference markers: frames hold only rows and strings the SDK built.
    encoder = c_make_encoder(None, default, encode_basestring, None, ":", ",", False, False, False)
    return lambda obj: "".join(encoder(obj, 0))


_dumps = _compact_json_encoder()


class ProtocolError(Exception):
    """The peer broke the IPC protocol (bad length, bad payload, frame out of order)."""


def frame(ftype: int, payload: bytes = b"") -> bytes:
    """Encode one frame."""
    length = len(payload) + 1
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return FRAME_HEAD.pack(length, ftype) + payload


def json_frame(ftype: int, obj: object) -> bytes:
    """Encode a control frame whose payload is a JSON value."""
    # "replace": a lone surrogate in an exception message must not make the frame unsendable.
    return frame(ftype, _dumps(obj).encode("utf-8", "replace"))


def load_json(payload: bytes) -> dict:
    """Decode the JSON object of a control frame."""
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"control frame is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError("control frame payload must be a JSON object")
    return obj


def grid_update(grid: str, key: "str | int", row: "dict | None") -> bytes:
    """A grid-update frame: the full new row, or ``None`` for a delete."""
    return json_frame(GRID_UPDATE, {"grid": grid, "key": key, "row": row})


def batch_done(batch_id: int, records: int, errors: int, updates: int, produced: int) -> bytes:
    return frame(BATCH_DONE, _BATCH_DONE.pack(batch_id, records, errors, updates, produced))


def decode_records(payload: bytes) -> "tuple[int, list[str], list[tuple]]":
    """Decode a records frame into ``(batch_id, topics, records)``.

    Each record is a tuple ``(topic_index, partition, offset, timestamp_ms, key, value,
    headers)``; key and value are bytes or None, headers a tuple of ``(name, bytes | None)``.
    This loop is the first half of the hot path, hence the locals and the single
    ``unpack_from`` per record.
    """
    try:
        batch_id, topic_count = _BATCH_HEAD.unpack_from(payload, 0)
        pos = _BATCH_HEAD.size
        topics = []
        for _ in range(topic_count):
            (n,) = _U16.unpack_from(payload, pos)
            pos += 2
            topics.append(payload[pos:pos + n].decode("utf-8"))
            pos += n
        (count,) = _U32.unpack_from(payload, pos)
        pos += 4
        unpack = _RECORD.unpack_from
        size = _RECORD.size
        records = []
        append = records.append
        for _ in range(count):
            t, partition, offset, ts, klen, vlen, hcount = unpack(payload, pos)
            pos += size
            if klen >= 0:
                key = payload[pos:pos + klen]
                pos += klen
            else:
                key = None
            if vlen >= 0:
                value = payload[pos:pos + vlen]
                pos += vlen
            else:
                value = None
            if hcount:
                headers, pos = _decode_headers(payload, pos, hcount)
            else:
                headers = ()
            append((t, partition, offset, ts, key, value, headers))
    except struct.error:
        raise ProtocolError("records frame is truncated") from None
    except UnicodeDecodeError:
        raise ProtocolError("records frame has a topic or header name that is not UTF-8") from None
    # Slicing past the end does not raise, so a short last record shows up here.
    if pos > len(payload):
        raise ProtocolError("records frame is truncated")
    if pos < len(payload):
        raise ProtocolError(f"records frame has {len(payload) - pos} trailing bytes")
    if records and max(record[0] for record in records) >= len(topics):
        raise ProtocolError("a record's topic index is outside the frame's topic table")
    return batch_id, topics, records


def _decode_headers(payload: bytes, pos: int, count: int) -> "tuple[tuple, int]":
    headers = []
    for _ in range(count):
        (n,) = _HEADER.unpack_from(payload, pos)
        pos += 2
        name = payload[pos:pos + n].decode("utf-8")
        pos += n
        (vlen,) = _I32.unpack_from(payload, pos)
        pos += 4
        if vlen >= 0:
            headers.append((name, payload[pos:pos + vlen]))
            pos += vlen
        else:
            headers.append((name, None))
    return tuple(headers), pos


def _encode_headers(parts: list, headers) -> None:
    for name, value in headers:
        raw = name.encode("utf-8")
        parts.append(_HEADER.pack(len(raw)))
        parts.append(raw)
        if value is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(value)))
            parts.append(value)


def encode_records(batch_id: int, topics: "list[str]", records) -> bytes:
    """Encode a records payload (the supervisor's side; used by benchmarks and tools)."""
    parts = [_BATCH_HEAD.pack(batch_id, len(topics))]
    for name in topics:
        raw = name.encode("utf-8")
        parts.append(_U16.pack(len(raw)))
        parts.append(raw)
    parts.append(_U32.pack(len(records)))
    for t, partition, offset, ts, key, value, headers in records:
        parts.append(_RECORD.pack(t, partition, offset, ts,
                                  -1 if key is None else len(key),
                                  -1 if value is None else len(value),
                                  len(headers)))
        if key is not None:
            parts.append(key)
        if value is not None:
            parts.append(value)
        _encode_headers(parts, headers)
    return b"".join(parts)


def produce(topic: str, key: "bytes | None", value: "bytes | None", headers=()) -> bytes:
    """A produce frame: u16 topic length, topic, i32 key length, i32 value length,
    u16 header count, key, value, headers (as in a record)."""
    raw = topic.encode("utf-8")
    parts = [_U16.pack(len(raw)), raw,
             _I32.pack(-1 if key is None else len(key)),
             _I32.pack(-1 if value is None else len(value)),
             _U16.pack(len(headers))]
    if key is not None:
        parts.append(key)
    if value is not None:
        parts.append(value)
    _encode_headers(parts, headers)
    return frame(PRODUCE, b"".join(parts))
