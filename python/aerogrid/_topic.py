"""``Topic``: a Kafka topic the app declares, with how its keys and values are (de)serialised."""

import json
import re

from ._record import _MISSING, DecodeError, Record, _convert_fields, _FieldError, _show

# Kafka's own rule for topic names.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}\Z")

# json.loads(str) spends most of its time on regex whitespace checks around the value. The
# C scanner underneath decodes a compact document (what producers write) about 3x faster;
# anything it does not take whole goes through json.loads for the exact rules and message.
_scan = json.JSONDecoder().scan_once


def _loads(data: bytes, what: str):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except (StopIteration, ValueError):
        pass
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"{what}: invalid JSON ({exc})") from None


def _describe(tp) -> object:
    if tp is None:
        return "none"
    if isinstance(tp, type) and issubclass(tp, Record):
        fields = [{"name": name, "type": tp._field_types[name], "required": default is _MISSING}
                  for name, _, _, default in tp._fields]
        return {"record": tp.__name__, "fields": fields}
    return tp.__name__


def _decoder(tp, what: str, is_key: bool):
    """A function bytes|None -> value for one topic's keys or values (a null key is None)."""
    if tp is None:
        return lambda data: None
    if tp is bytes:
        return lambda data: data
    if tp is str:
        def decode_str(data):
            if data is None:
                return None
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"{what}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
        return decode_str
    if isinstance(tp, type) and issubclass(tp, Record):
        new = object.__new__

        # The hot path of a typical app: _loads and Record._from_json_object inlined.
        def decode_record(data):
            if data is None:
                if is_key:
                    return None
                raise DecodeError(f"{what}: null (a tombstone), expected {tp.__name__}")
            try:
                text = data.decode("utf-8")
                obj, end = _scan(text, 0)
                whole = end == len(text)
            except (ValueError, StopIteration):  # bad UTF-8, or no JSON value at byte 0
                whole = False
            if not whole:
                obj = _loads(data, what)  # the exact rules, or a DecodeError with the reason
            if type(obj) is not dict:
                raise DecodeError(f"{tp.__name__}: expected a JSON object, got {_show(obj)}")
            try:
                values = _convert_fields(tp, obj)
            except _FieldError as err:
                raise DecodeError(f"{tp.__name__}{err.path}: {err.message}") from None
            record = new(tp)
            record.__dict__ = values
            return record
        return decode_record
    if tp in (int, float, dict):
        def decode_json(data):
            if data is None:
                if is_key:
                    return None
                raise DecodeError(f"{what}: null (a tombstone), expected {tp.__name__}")
            obj = _loads(data, what)
            if type(obj) is tp or (tp is float and type(obj) is int):
                return tp(obj) if tp is float else obj
            raise DecodeError(f"{what}: expected {tp.__name__}, got {type(obj).__name__} ({obj!r:.40})")
        return decode_json
    raise TypeError(f"{what}: unsupported type {tp!r}; use str, bytes, int, float, dict, "
                    "a Record subclass or None")


def _encoder(tp, what: str):
    """A function value -> bytes|None for producing to a topic."""
    def encode(value):
        if value is None:
            return None
        if tp is bytes and isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if tp is str and isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, tp):
            return json.dumps(value._asdict(), separators=(",", ":")).encode("utf-8")
        if tp in (int, float, dict) and type(value) is not bool and isinstance(value, tp):
            return json.dumps(value, separators=(",", ":")).encode("utf-8")
        raise TypeError(f"{what}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")
    return encode


class Topic:
    """A Kafka topic declared with ``app.topic(name, key_type=..., value_type=...)``.

    Keys and values are decoded by type: ``str`` (UTF-8), ``bytes`` (as is), ``int``,
    ``float`` and ``dict`` (JSON text), a ``Record`` subclass (a JSON object), or ``None``
    for a key the app ignores. A null key decodes to ``None``; a null value is ``None`` for
    ``bytes`` and a decode error otherwise.

    >>> import aerogrid
    >>> app = aerogrid.App('demo')
    >>> clicks = app.topic('clicks', key_type=str, value_type=dict)
    >>> clicks.name
    'clicks'
    """

    def __init__(self, app, name: str, key_type, value_type) -> None:
        if not isinstance(name, str) or not _TOPIC_NAME.match(name):
            raise ValueError(f"topic name {name!r} is not valid: 1 to 249 of A-Z a-z 0-9 . _ -")
        if value_type is None:
            raise TypeError(f"topic {name!r}: value_type cannot be None; use bytes for raw values")
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self._app = app
        self._decode_key = _decoder(key_type, f"{name} key", True)
        self._decode_value = _decoder(value_type, f"{name} value", False)
        self._encode_key = _encoder(key_type, f"{name} key")
        self._encode_value = _encoder(value_type, f"{name} value")

    async def send(self, key=None, value=None, *, headers=None) -> None:
        """Produce a record to this topic. Under the supervisor it is written to Kafka when
        the current batch completes; ``headers`` is a list of ``(name, bytes)`` pairs."""
        sink = self._app._sink
        if sink is None:
            raise RuntimeError("topic.send() works only while the app runs (python -m aerogrid run ...)")
        headers = tuple((str(n), None if v is None else bytes(v)) for n, v in headers or ())
        sink.produce(self.name, self._encode_key(key), self._encode_value(value), headers)

    def _describe(self) -> dict:
        return {"name": self.name, "key_type": _describe(self.key_type),
                "value_type": _describe(self.value_type)}

    def __repr__(self) -> str:
        return f"<Topic {self.name!r}>"
