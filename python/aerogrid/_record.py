"""``aerogrid.Record``: typed messages decoded from JSON, with errors that name the field."""

import sys

_MISSING = object()


class DecodeError(ValueError):
    """A Kafka key or value that does not match its topic's declared type.

    The message names the place that is wrong, e.g.
    ``Order.quantity: expected int, got str ('3')``.
    """


class _FieldError(Exception):
    """A mismatch below a record; ``path`` grows as it travels up (``.customer.name``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _show(value: object) -> str:
    """How a wrong value appears in an error: its type and a short repr."""
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} ({text})"


def _mismatch(expected: str, value: object) -> _FieldError:
    return _FieldError(f"expected {expected}, got {_show(value)}")


# A converter takes a value decoded from JSON and returns the value to store, or raises
# _FieldError. Each field also has an "exact" type: when type(value) is exactly that, the
# value is already right and the converter is skipped. That shortcut keeps the common case
# (a str field holding a str) to one type comparison.

def _exact(tp: type, name: str):
    def convert(value):
        if type(value) is tp:
            return value
        raise _mismatch(name, value)
    return convert


def _to_float(value):
    # JSON has one number type, so a float field accepts an integer; bool is not a number.
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _mismatch("float", value)


def _anything(value):
    return value


def _optional(inner):
    def convert(value):
        return None if value is None else inner(value)
    return convert


def _list_of(item):
    def convert(value):
        if type(value) is not list:
            raise _mismatch("list", value)
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except _FieldError as err:
                err.path = f"[{index}]{err.path}"
                raise
        return out
    return convert


def _dict_of(item):
    def convert(value):
        if type(value) is not dict:
            raise _mismatch("dict", value)
        out = {}
        for key, element in value.items():
            if type(key) is not str:
                raise _FieldError(f"expected str keys, got {_show(key)}")
            try:
                out[key] = item(element)
            except _FieldError as err:
                err.path = f"[{key!r}]{err.path}"
                raise
        return out
    return convert


def _nested(record_cls):
    def convert(value):
        if isinstance(value, record_cls):
            return value
        return record_cls._from_json_object(value)
    return convert


def _union_args(tp):
    """The members of ``X | Y`` or ``typing.Union[X, Y]``, or None if tp is no union."""
    types_mod = sys.modules.get("types")
    if types_mod is not None and isinstance(tp, getattr(types_mod, "UnionType", ())):
        return tp.__args__
    typing = sys.modules.get("typing")  # a typing.Union can only exist if typing is loaded
    if typing is not None and getattr(tp, "__origin__", None) is typing.Union:
        return tp.__args__
    return None


def _compile_type(tp, where: str):
    """Return ``(exact_type_or_None, converter, description)`` for an annotation."""
    if tp is str or tp is bool or tp is dict or tp is list:
        return tp, _exact(tp, tp.__name__), tp.__name__
    if tp is int:
        return int, _exact(int, "int"), "int"  # type(True) is bool, so bool is refused
    if tp is float:
        return float, _to_float, "float"
    if tp is object:
        return None, _anything, "any"
    if isinstance(tp, type) and issubclass(tp, Record):
        return None, _nested(tp), tp.__name__
    typing = sys.modules.get("typing")
    if typing is not None and tp is typing.Any:
        return None, _anything, "any"
    members = _union_args(tp)
    if members is not None:
        rest = [m for m in members if m is not type(None)]
        if len(rest) == 1 and len(members) == 2:
            _, inner, text = _compile_type(rest[0], where)
            return None, _optional(inner), f"Optional[{text}]"
        raise TypeError(f"{where}: unsupported union {tp!r}; only Optional[X] is supported")
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if origin is list and len(args) == 1:
        _, item, text = _compile_type(args[0], where)
        return None, _list_of(item), f"list[{text}]"
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(f"{where}: dict keys must be str (JSON object keys are strings)")
        _, item, text = _compile_type(args[1], where)
        return None, _dict_of(item), f"dict[str, {text}]"
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _copy_default(value):
    # A list or dict default must not be shared between records.
    if type(value) is list:
        return list(value)
    if type(value) is dict:
        return dict(value)
    return value


class Record:
    """A typed message. Fields come from the class annotations; a class attribute is the
    field's default. Values are decoded from JSON objects with strict type checks
    (``int`` refuses ``bool``; ``float`` accepts ``int``); a mismatch raises an error that
    names the field.

    >>> import aerogrid
    >>> class Order(aerogrid.Record):
    ...     product: str
    ...     quantity: int = 1
    >>> Order(product='Widget')
    Order(product='Widget', quantity=1)
    >>> Order(product='Widget', quantity='3')
    Traceback (most recent call last):
      ...
    TypeError: Order.quantity: expected int, got str ('3')
    """

    # Filled per subclass by __init_subclass__: (name, exact_type, converter, default).
    _fields: "tuple[tuple[str, type | None, object, object], ...]" = ()
    _field_types: "dict[str, str]" = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        module_globals = getattr(sys.modules.get(cls.__module__), "__dict__", {})
        fields = {f[0]: f for f in cls._fields}  # inherited fields first, in order
        types = dict(cls._field_types)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            where = f"{cls.__name__}.{name}"
            if isinstance(annotation, str):  # `from __future__ import annotations`
                try:
                    annotation = eval(annotation, module_globals, dict(vars(cls)))
                except Exception as exc:
                    raise TypeError(f"{where}: cannot resolve the annotation {annotation!r} ({exc})") from None
            if _is_classvar(annotation):
                continue
            exact, convert, text = _compile_type(annotation, where)
            default = cls.__dict__.get(name, _MISSING)
            if default is not _MISSING and default is not None:
                try:
                    default = convert(default)  # checked, and e.g. 1 -> 1.0 for a float
                except _FieldError as err:
                    raise TypeError(f"{where}{err.path}: default {err.message}") from None
            elif default is None and not text.startswith("Optional[") and text != "any":
                raise TypeError(f"{where}: default None needs Optional[{text}]")
            fields[name] = (name, exact, convert, default)
            types[name] = text
        cls._fields = tuple(fields.values())
        cls._field_types = types

    def __init__(self, *args, **kwargs) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} positional arguments")
        for (name, *_), value in zip(fields, args, strict=False):  # fewer args than fields: the rest by keyword
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}.{name}: given twice")
            kwargs[name] = value
        unknown = set(kwargs) - {f[0] for f in fields}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown field {sorted(unknown)[0]!r}")
        try:
            self.__dict__.update(_convert_fields(type(self), kwargs))
        except _FieldError as err:
            raise TypeError(f"{type(self).__name__}{err.path}: {err.message}") from None

    @classmethod
    def _from_json_object(cls, obj: object) -> "Record":
        """Build a record from a decoded JSON value; raises _FieldError."""
        if type(obj) is not dict:
            raise _mismatch("a JSON object", obj)
        record = object.__new__(cls)
        record.__dict__ = _convert_fields(cls, obj)
        return record

    @classmethod
    def _decode(cls, obj: object) -> "Record":
        """Build a record from a decoded JSON value; raises DecodeError naming the field."""
        try:
            return cls._from_json_object(obj)
        except _FieldError as err:
            raise DecodeError(f"{cls.__name__}{err.path}: {err.message}") from None

    def _asdict(self) -> dict:
        """The record as plain JSON-ready values (nested records become dicts)."""
        return {name: _plain(getattr(self, name)) for name, *_ in self._fields}

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name, *_ in self._fields)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # records are mutable, like dataclasses without frozen=True


def _convert_fields(cls, obj: dict) -> dict:
    """The field values of a record of class ``cls`` from the mapping ``obj``.

    This runs once per decoded record, so it is a plain loop over precompiled tuples. Keys
    of ``obj`` that are not fields are ignored, so producers may add fields first.
    """
    values = {}
    get = obj.get
    for name, exact, convert, default in cls._fields:
        value = get(name, _MISSING)
        if type(value) is not exact:
            if value is _MISSING:
                if default is _MISSING:
                    raise _FieldError("missing required field", "." + name)
                value = _copy_default(default)
            else:
                try:
                    value = convert(value)
                except _FieldError as err:
                    err.path = f".{name}{err.path}"
                    raise
        values[name] = value
    return values


def _plain(value):
    if isinstance(value, Record):
        return value._asdict()
    if type(value) is list:
        return [_plain(v) for v in value]
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is_classvar(annotation) -> bool:
    typing = sys.modules.get("typing")
    if typing is None:
        return False
    return annotation is typing.ClassVar or getattr(annotation, "__origin__", None) is typing.ClassVar
