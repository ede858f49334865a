"""Topic key and value types: decoding, null handling, encoding for produce."""

import pytest

import aerogrid
from aerogrid import DecodeError


class Order(aerogrid.Record):
    product: str
    quantity: int


def topic(key_type=bytes, value_type=bytes):
    return aerogrid.App("t").topic("orders", key_type=key_type, value_type=value_type)


@pytest.mark.parametrize("tp, data, expected", [
    (str, b"h\xc3\xa9", "hé"),
    (bytes, b"\x00\x01", b"\x00\x01"),
    (int, b"42", 42),
    (int, b" 42 ", 42),
    (float, b"1.5", 1.5),
    (float, b"2", 2.0),
    (dict, b'{"a": [1]}', {"a": [1]}),
    (Order, b'{"product": "W", "quantity": 2}', Order(product="W", quantity=2)),
    (Order, b' {"product": "W", "quantity": 2}\n', Order(product="W", quantity=2)),
])
def test_values_decode_by_type(tp, data, expected):
    value = topic(value_type=tp)._decode_value(data)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("tp, data, message", [
    (str, b"\xff", "orders value: invalid UTF-8"),
    (int, b"4.5", "orders value: expected int, got float (4.5)"),
    (int, b"true", "orders value: expected int, got bool (True)"),
    (float, b'"1"', "orders value: expected float, got str ('1')"),
    (dict, b"[1]", "orders value: expected dict, got list ([1])"),
    (dict, b"{", "orders value: invalid JSON"),
    (Order, b'{"product": "W", "quantity": 2} x', "orders value: invalid JSON (Extra data"),
    (Order, b'"W"', "Order: expected a JSON object, got str ('W')"),
    (Order, None, "orders value: null (a tombstone), expected Order"),
    (int, None, "orders value: null (a tombstone), expected int"),
])
def test_value_decode_errors(tp, data, message):
    with pytest.raises(DecodeError) as info:
        topic(value_type=tp)._decode_value(data)
    assert str(info.value).startswith(message)


def test_null_keys_are_none_for_every_type_and_none_key_type_ignores_keys():
    for tp in (str, bytes, int, float, dict, Order):
        assert topic(key_type=tp)._decode_key(None) is None
    assert topic(key_type=None)._decode_key(b"anything") is None
    assert topic(value_type=bytes)._decode_value(None) is None
    assert topic(key_type=int)._decode_key(b"7") == 7


def test_unsupported_types_and_bad_names_are_refused():
    with pytest.raises(TypeError, match="unsupported type"):
        topic(value_type=list)
    with pytest.raises(TypeError, match="value_type cannot be None"):
        topic(value_type=None)
    with pytest.raises(ValueError, match="topic name 'a b' is not valid"):
        aerogrid.App("t").topic("a b")


@pytest.mark.parametrize("tp, value, data", [
    (str, "hé", b"h\xc3\xa9"),
    (bytes, b"\x00", b"\x00"),
    (int, 42, b"42"),
    (float, 1.5, b"1.5"),
    (dict, {"a": 1}, b'{"a":1}'),
    (Order, Order(product="W", quantity=2), b'{"product":"W","quantity":2}'),
    (Order, None, None),
])
def test_values_encode_by_type_for_produce(tp, value, data):
    assert topic(value_type=tp)._encode_value(value) == data


@pytest.mark.parametrize("tp, value", [(str, b"x"), (int, True), (int, "1"), (Order, {"product": "W"})])
def test_encoding_the_wrong_type_is_refused(tp, value):
    with pytest.raises(TypeError, match="orders value: expected"):
        topic(value_type=tp)._encode_value(value)


def test_send_outside_a_runner_is_refused():
    t = topic(value_type=str)
    coro = t.send(None, "x")
    with pytest.raises(RuntimeError, match="only while the app runs"):
        coro.send(None)
