"""aerogrid.Grid: rows by key, defaults, validation, deletes, and the buffered changes."""

import math

import pytest

from aerogrid import Grid


def make(default=lambda: {"units": 0}):
    return Grid("totals", columns=["units", "label"], default=default)


def test_missing_key_gives_the_default_without_creating_a_row():
    grid = make()
    assert grid["Widget"] == {"units": 0}
    assert len(grid) == 0 and "Widget" not in grid
    assert grid._take_changes() == {}


def test_missing_key_without_default_raises_key_error():
    grid = make(default=None)
    with pytest.raises(KeyError):
        grid["Widget"]


def test_set_get_len_contains_iter_get():
    grid = make()
    grid["Widget"] = {"units": 3}
    grid[7] = {"units": 1, "label": "seven"}
    assert grid["Widget"] == {"units": 3}
    assert len(grid) == 2 and "Widget" in grid and 7 in grid and "7" not in grid
    assert list(grid) == ["Widget", 7]
    assert grid.get("Widget") == {"units": 3}
    assert grid.get("nope") is None and grid.get("nope", "dflt") == "dflt"


def test_rows_read_are_copies():
    grid = make()
    grid["Widget"] = row = {"units": 3}
    grid["Widget"]["units"] = 99
    row["units"] = 98
    assert grid["Widget"] == {"units": 3}


def test_delete():
    grid = make()
    grid["Widget"] = {"units": 3}
    del grid["Widget"]
    assert "Widget" not in grid and grid["Widget"] == {"units": 0}
    with pytest.raises(KeyError):
        del grid["Widget"]


def test_changes_are_buffered_last_write_wins_and_deletes_are_none():
    grid = make()
    grid["a"] = {"units": 1}
    grid["a"] = {"units": 2}
    grid["b"] = {"units": 1}
    del grid["b"]
    assert grid._take_changes() == {"a": {"units": 2}, "b": None}
    assert grid._take_changes() == {}


def test_unknown_column_is_a_clear_error():
    grid = make()
    with pytest.raises(ValueError, match=r"^grid 'totals': unknown column 'unit' \(columns: units, label\)$"):
        grid["Widget"] = {"unit": 1}
    assert "Widget" not in grid and grid._take_changes() == {}


@pytest.mark.parametrize("value", [[1], {"a": 1}, object(), math.nan, math.inf, 2**63, b"x"])
def test_values_must_be_json_scalars(value):
    with pytest.raises(TypeError, match="column 'units' must be a JSON scalar"):
        make()["Widget"] = {"units": value}


@pytest.mark.parametrize("value", ["x", 1, -2**63, 1.5, True, None])
def test_json_scalars_are_accepted(value):
    grid = make()
    grid["Widget"] = {"units": value}
    assert grid["Widget"] == {"units": value}


@pytest.mark.parametrize("key", [1.5, True, None, ("a",), 2**63, b"k"])
def test_keys_must_be_str_or_64_bit_int(key):
    with pytest.raises(TypeError, match="a key must be a str or a 64-bit int"):
        make()[key] = {"units": 1}


def test_row_must_be_a_dict():
    with pytest.raises(TypeError, match="a row must be a dict"):
        make()["Widget"] = [("units", 1)]


@pytest.mark.parametrize("kwargs, error", [
    ({"name": "Totals", "columns": ["a"]}, "grid name 'Totals' is not valid"),
    ({"name": "t", "columns": []}, "non-empty list"),
    ({"name": "t", "columns": "abc"}, "not a string"),
    ({"name": "t", "columns": ["a", "a"]}, "duplicate column"),
    ({"name": "t", "columns": ["a"], "default": {"a": 0}}, "default must be a function"),
])
def test_bad_declarations(kwargs, error):
    with pytest.raises((TypeError, ValueError), match=error):
        Grid(**kwargs)


def test_restore_loads_rows_without_marking_them_changed():
    grid = make()
    grid._restore([["Widget", {"units": 4}], [5, {"label": "five"}]])
    assert grid["Widget"] == {"units": 4} and grid[5] == {"label": "five"}
    assert grid._take_changes() == {}
