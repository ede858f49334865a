"""The SDK's frame codec against hand-built bytes from docs/ipc.md."""

import struct

import pytest

from aerogrid import _frames as f


def test_records_round_trip_with_nulls_and_headers():
    records = [(0, 3, 42, 1_700_000_000_000, b"o-1", b"{}", ()),
               (1, 0, 0, -1, None, None, (("h", b"v"), ("n", None))),
               (0, 1, 2**40, 5, b"", b"", ())]
    payload = f.encode_records(2**40, ["orders", "payments"], records)
    assert f.decode_records(payload) == (2**40, ["orders", "payments"], records)


def test_frame_layout_matches_the_document():
    assert f.frame(f.HEARTBEAT) == b"\x00\x00\x00\x01\x20"
    assert f.batch_done(7, 1, 0, 1, 0).hex(" ") == (
        "00 00 00 19 03 00 00 00 00 00 00 00 07 00 00 00 01 00 00 00 00 00 00 00 01 00 00 00 00")
    assert f.grid_update("product_sum", "Widget", {"units_sold": 3})[5:] == (
        b'{"grid":"product_sum","key":"Widget","row":{"units_sold":3}}')
    assert f.grid_update("g", 7, None)[5:] == b'{"grid":"g","key":7,"row":null}'


@pytest.mark.parametrize("payload, message", [
    (b"\x00" * 5, "truncated"),
    (f.encode_records(1, ["t"], [(0, 0, 0, 0, b"abc", None, ())])[:-1], "truncated"),
    (f.encode_records(1, ["t"], []) + b"x", "trailing"),
    (f.encode_records(1, ["t"], [(1, 0, 0, 0, None, None, ())]), "topic index"),
])
def test_malformed_records_frames_are_protocol_errors(payload, message):
    with pytest.raises(f.ProtocolError, match=message):
        f.decode_records(payload)


def test_oversized_frames_are_refused_when_encoding():
    with pytest.raises(f.ProtocolError, match="exceeds"):
        f.frame(f.LOG, b"x" * f.MAX_FRAME)


def test_produce_layout():
    data = f.produce("out", b"k", None, (("h", b"1"),))
    assert data[4] == f.PRODUCE
    assert data[5:] == (struct.pack(">H", 3) + b"out" + struct.pack(">iiH", 1, -1, 1) + b"k"
                        + struct.pack(">H", 1) + b"h" + struct.pack(">i", 1) + b"1")


def test_control_frames_must_be_json_objects():
    assert f.load_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(f.ProtocolError):
        f.load_json(b"[1]")
    with pytest.raises(f.ProtocolError):
        f.load_json(b"{")
