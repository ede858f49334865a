"""aerogrid.Record: typed fields, defaults, JSON decoding and errors that name the field."""

from __future__ import annotations

from typing import Any, Optional

import pytest

import aerogrid
from aerogrid import DecodeError, Record


class Order(Record):
    product: str
    quantity: int


class Customer(Record):
    name: str
    vip: bool = False


class Invoice(Record):
    customer: Customer
    amount: float
    lines: list[int]
    tags: dict[str, str] = {}
    note: Optional[str] = None  # noqa: UP045 - typing.Optional, which apps still write, as well as X | None
    extra: Any = None


def decode(cls, obj):
    return cls._decode(obj)


def test_fields_come_from_annotations_in_order():
    assert [f[0] for f in Invoice._fields] == ["customer", "amount", "lines", "tags", "note", "extra"]
    order = decode(Order, {"product": "Widget", "quantity": 3})
    assert (order.product, order.quantity) == ("Widget", 3)
    assert repr(order) == "Order(product='Widget', quantity=3)"


def test_unknown_json_members_are_ignored():
    assert decode(Order, {"product": "W", "quantity": 1, "colour": "red"}) == Order(product="W", quantity=1)


def test_defaults_fill_missing_fields_and_are_not_shared():
    first = decode(Invoice, {"customer": {"name": "Ann"}, "amount": 1, "lines": []})
    second = decode(Invoice, {"customer": {"name": "Bob"}, "amount": 1, "lines": []})
    assert first.customer == Customer(name="Ann", vip=False)
    assert first.note is None and first.tags == {}
    first.tags["x"] = "y"
    assert second.tags == {}


@pytest.mark.parametrize("obj, message", [
    ({"product": "W"}, "Order.quantity: missing required field"),
    ({"quantity": 1}, "Order.product: missing required field"),
    ({"product": "W", "quantity": "3"}, "Order.quantity: expected int, got str ('3')"),
    ({"product": "W", "quantity": True}, "Order.quantity: expected int, got bool (True)"),
    ({"product": "W", "quantity": 1.5}, "Order.quantity: expected int, got float (1.5)"),
    ({"product": 7, "quantity": 1}, "Order.product: expected str, got int (7)"),
    ({"product": None, "quantity": 1}, "Order.product: expected str, got None"),
    ([1, 2], "Order: expected a JSON object, got list ([1, 2])"),
])
def test_decode_errors_name_the_field(obj, message):
    with pytest.raises(DecodeError) as info:
        decode(Order, obj)
    assert str(info.value) == message


@pytest.mark.parametrize("obj, message", [
    ({"customer": {"name": 5}, "amount": 1, "lines": []},
     "Invoice.customer.name: expected str, got int (5)"),
    ({"customer": "Ann", "amount": 1, "lines": []},
     "Invoice.customer: expected a JSON object, got str ('Ann')"),
    ({"customer": {"name": "A"}, "amount": "1", "lines": []},
     "Invoice.amount: expected float, got str ('1')"),
    ({"customer": {"name": "A"}, "amount": True, "lines": []},
     "Invoice.amount: expected float, got bool (True)"),
    ({"customer": {"name": "A"}, "amount": 1, "lines": [1, "2"]},
     "Invoice.lines[1]: expected int, got str ('2')"),
    ({"customer": {"name": "A"}, "amount": 1, "lines": {}},
     "Invoice.lines: expected list, got dict ({})"),
    ({"customer": {"name": "A"}, "amount": 1, "lines": [], "tags": {"a": 1}},
     "Invoice.tags['a']: expected str, got int (1)"),
    ({"customer": {"name": "A"}, "amount": 1, "lines": [], "note": 3},
     "Invoice.note: expected str, got int (3)"),
    ({"customer": {"name": "A", "vip": "yes"}, "amount": 1, "lines": []},
     "Invoice.customer.vip: expected bool, got str ('yes')"),
])
def test_nested_errors_name_the_path(obj, message):
    with pytest.raises(DecodeError) as info:
        decode(Invoice, obj)
    assert str(info.value) == message


def test_float_accepts_int_and_optional_accepts_null():
    invoice = decode(Invoice, {"customer": {"name": "A"}, "amount": 2, "lines": [1], "note": None,
                               "extra": [1, {"x": None}]})
    assert invoice.amount == 2.0 and type(invoice.amount) is float
    assert invoice.note is None and invoice.extra == [1, {"x": None}]


def test_long_values_are_shortened_in_errors():
    with pytest.raises(DecodeError) as info:
        decode(Order, {"product": "W", "quantity": "x" * 100})
    assert str(info.value).startswith("Order.quantity: expected int, got str ('xxxx")
    assert str(info.value).endswith("...)")
    assert len(str(info.value)) < 90


def test_constructor_checks_types_and_names_the_field():
    assert Order("W", 2) == Order(product="W", quantity=2)
    with pytest.raises(TypeError, match=r"^Order.quantity: expected int, got str \('3'\)$"):
        Order(product="W", quantity="3")
    with pytest.raises(TypeError, match=r"^Order.quantity: missing required field$"):
        Order(product="W")
    with pytest.raises(TypeError, match="unknown field 'colour'"):
        Order(product="W", quantity=1, colour="red")
    assert Invoice(customer={"name": "A"}, amount=1, lines=[]).customer == Customer(name="A")


def test_asdict_gives_plain_json_values():
    invoice = Invoice(customer=Customer(name="A"), amount=1.5, lines=[1])
    assert invoice._asdict() == {"customer": {"name": "A", "vip": False}, "amount": 1.5,
                                 "lines": [1], "tags": {}, "note": None, "extra": None}


def test_subclass_inherits_fields():
    class BigOrder(Order):
        priority: int = 0

    assert decode(BigOrder, {"product": "W", "quantity": 1}).priority == 0
    with pytest.raises(DecodeError, match=r"^BigOrder.product: missing required field$"):
        decode(BigOrder, {"quantity": 1})


def test_bad_declarations_fail_at_class_creation():
    with pytest.raises(TypeError, match="Bad.x: unsupported field type"):
        class Bad(Record):
            x: set
    with pytest.raises(TypeError, match=r"Bad2.x: default expected int, got str"):
        class Bad2(Record):
            x: int = "1"
    with pytest.raises(TypeError, match=r"Bad3.x: default None needs Optional\[int\]"):
        class Bad3(Record):
            x: int = None
    with pytest.raises(TypeError, match="only Optional"):
        class Bad4(Record):
            x: int | str


def test_pipe_optional_and_records_are_exported():
    class Reading(Record):
        value: float | None

    assert decode(Reading, {"value": None}).value is None
    assert aerogrid.Record is Record and aerogrid.DecodeError is DecodeError
    assert issubclass(DecodeError, ValueError)
