"""``Grid``: a named table of rows the app writes and Excel shows."""

import math
import re

# The supervisor's rule for app and grid names (they end up in URLs, paths and topics).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
_SCALARS = (str, int, float, bool, type(None))
_INT64 = 1 << 63


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} is not valid: 1 to 63 lowercase letters, "
                         "digits, '-' and '_', starting with a letter or digit")
    return name


class Grid:
    """Rows keyed by a string or an integer; each row maps column names to JSON scalars
    (str, int, float, bool or None). ``grid[key]`` returns a copy of the row, or
    ``default()`` when the key is missing; assign a row to change it.

    >>> import aerogrid
    >>> app = aerogrid.App('demo')
    >>> totals = app.Grid('totals', columns=['units'], default=lambda: {'units': 0})
    >>> totals['Widget']
    {'units': 0}
    >>> totals['Widget'] = {'units': totals['Widget']['units'] + 3}
    >>> totals['Widget'], len(totals), 'Widget' in totals
    ({'units': 3}, 1, True)
    >>> totals['Widget'] = {'unit': 1}
    Traceback (most recent call last):
      ...
    ValueError: grid 'totals': unknown column 'unit' (columns: units)
    """

    def __init__(self, name: str, columns, default=None) -> None:
        check_name("grid", name)
        if isinstance(columns, str):
            raise TypeError(f"grid {name!r}: columns must be a list of names, not a string")
        columns = list(columns)
        if not columns or not all(isinstance(c, str) and c for c in columns):
            raise ValueError(f"grid {name!r}: columns must be a non-empty list of non-empty strings")
        if len(set(columns)) != len(columns):
            raise ValueError(f"grid {name!r}: duplicate column names in {columns}")
        if default is not None and not callable(default):
            raise TypeError(f"grid {name!r}: default must be a function returning a row, e.g. "
                            "default=lambda: {...}")
        self.name = name
        self.columns = tuple(columns)
        self._column_set = frozenset(columns)
        self._default = default
        self._rows: dict = {}
        # Writes since the last flush, last write per key wins; None marks a delete.
        self._dirty: dict = {}

    def __getitem__(self, key):
        try:
            return dict(self._rows[key])  # a copy: changing it must go through __setitem__
        except KeyError:
            if self._default is None:
                raise KeyError(key) from None
            return self._default()

    def __setitem__(self, key, row) -> None:
        if type(key) is not str:
            self._check_key(key)
        if type(row) is not dict:
            raise TypeError(f"grid {self.name!r}: a row must be a dict of column values, "
                            f"got {type(row).__name__}")
        columns = self._column_set
        for column, value in row.items():
            if column not in columns:
                raise ValueError(f"grid {self.name!r}: unknown column {column!r} "
                                 f"(columns: {', '.join(self.columns)})")
            kind = type(value)
            if kind not in _SCALARS or (kind is float and not math.isfinite(value)) or (
                    kind is int and not -_INT64 <= value < _INT64):
                raise TypeError(f"grid {self.name!r}: column {column!r} must be a JSON scalar "
                                "(str, 64-bit int, finite float, bool or None), got "
                                f"{kind.__name__} ({value!r:.40})")
        row = dict(row)
        self._rows[key] = row
        self._dirty[key] = row

    def __delitem__(self, key) -> None:
        del self._rows[key]
        self._dirty[key] = None

    def get(self, key, default=None):
        """The row for ``key`` (a copy), or ``default`` (not the grid's default factory)."""
        row = self._rows.get(key)
        return default if row is None else dict(row)

    def __contains__(self, key) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self):
        return iter(list(self._rows))  # a snapshot, so a handler may write while iterating

    def __repr__(self) -> str:
        return f"<Grid {self.name!r} columns={list(self.columns)} rows={len(self._rows)}>"

    def _check_key(self, key) -> None:
        kind = type(key)
        if kind is str:
            return
        if kind is int and -_INT64 <= key < _INT64:
            return
        raise TypeError(f"grid {self.name!r}: a key must be a str or a 64-bit int, "
                        f"got {kind.__name__} ({key!r:.40})")

    def _take_changes(self) -> dict:
        """The writes since the last call (key -> row, or None for a delete)."""
        changes = self._dirty
        self._dirty = {}
        return changes

    def _restore(self, rows) -> None:
        """Load rows from the supervisor's checkpoint (``[[key, row], ...]``)."""
        for key, row in rows:
            self._rows[key] = dict(row)

    def _describe(self) -> dict:
        return {"name": self.name, "columns": list(self.columns)}
