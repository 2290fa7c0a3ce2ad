"""Lock names from a task and its arguments: readable, never shortened (only the cache key
made from a name is hashed, see ``values.names``)."""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import json
import string
import uuid
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

from ..exceptions import LockError

KeySpec = None | str | tuple[str, ...] | list[str] | Callable[..., str]


class NotCanonical(TypeError):
    """A value has no canonical text; the message says why."""


def _decimal(value: decimal.Decimal) -> str:
    """Equal Decimals, one text: no exponent, no trailing zeros, no minus zero.

    Not ``normalize()``: it rounds to the thread's context precision."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _model(value: Any, meta: Any) -> str:
    if isinstance(value, type):
        raise NotCanonical(f"it is the model class {meta.label_lower}, not a value")
    if value.pk is None:
        raise NotCanonical(f"an unsaved {meta.label_lower} has no primary key to name it by")
    return f"{meta.label_lower}:{_text(value.pk)}"


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data with one spelling in every process.

    Equal values that would be one dict key get one spelling: ``1.0`` is ``1``, Decimals
    drop trailing zeros, aware datetimes are converted to UTC. A bool stays a bool."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, str):  # a subclass: its own __str__/__format__ must not leak in
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return _plain(float.__float__(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, datetime.datetime) and value.utcoffset() is not None:
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(item) for item in value), key=canonical_json)
    if isinstance(value, Mapping):
        return {_text(k): _plain(v) for k, v in value.items()}
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(meta, "label_lower") and hasattr(value, "pk"):
        return _model(value, meta)
    raise NotCanonical(f"a {type(value).__qualname__} has no canonical text")


def _text(value: Any) -> str:
    plain = _plain(value)
    return plain if isinstance(plain, str) else canonical_json(plain)


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys; ``value`` must already be plain."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain_argument(value: Any, argument: str) -> Any:
    try:
        return _plain(value)
    except NotCanonical as exc:
        raise LockError(
            f"cannot derive a lock name from argument {argument!r}: {exc}; pass key= to task_lock"
        ) from None


#: the JSON of the values whose canonical JSON is their own: exact str, int, bool and None
#: (``json.dumps`` writes an int with ``int.__repr__`` too)
_SIMPLE_JSON: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
}


def canonical_text(value: Any, argument: str = "value") -> str:
    """The canonical text of one argument; ``LockError`` naming it when there is none."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return int.__repr__(value)
    plain = _plain_argument(value, argument)
    return plain if isinstance(plain, str) else canonical_json(plain)


def canonical_arguments(arguments: Mapping[str, Any]) -> str:
    """All bound arguments as one canonical JSON object; written directly (no ``json.dumps``)
    when every value is an exact str, int, bool or None."""
    parts = []
    for name in sorted(arguments):
        write = _SIMPLE_JSON.get(type(arguments[name]))
        if write is None:
            return canonical_json({name: _plain_argument(v, name) for name, v in arguments.items()})
        parts.append(f"{encode_basestring(name)}:{write(arguments[name])}")
    return "{" + ",".join(parts) + "}"


class NameBuilder:
    """Turns a ``task_lock`` key spec into lock names; validated against the signature."""

    def __init__(self, key: KeySpec, signature: inspect.Signature) -> None:
        self.key = key
        self.signature = signature
        parameters = signature.parameters
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters.values())
        #: the parameter names, when every parameter can be passed by position or by name
        self._names = tuple(parameters) if simple else None
        self._defaults = {n: p.default for n, p in parameters.items() if p.default is not p.empty}
        if key is None or callable(key):
            self.fields: tuple[str, ...] = ()
        elif isinstance(key, str) and key.isidentifier():
            self.fields = (key,)
        elif isinstance(key, str):
            self.fields = self._template_fields(key)
        elif isinstance(key, tuple | list) and all(isinstance(k, str) for k in key):
            self.fields = tuple(key)
        else:
            raise TypeError(
                "task_lock key= must be None, an argument name, a tuple of argument names, "
                f"a format string or a callable, not {key!r}"
            )
        unknown = [field for field in self.fields if field not in parameters]
        if unknown:
            hint = " (a bare identifier names an argument)" if key == unknown[0] else ""
            raise TypeError(
                f"task_lock key {key!r} names {', '.join(map(repr, unknown))}, "
                f"not a parameter of {list(parameters)}{hint}"
            )

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied, in parameter order: what
        ``signature.bind(...)`` + ``apply_defaults()`` give, without them for a plain call."""
        names = self._names
        if names is not None and len(args) <= len(names):
            arguments = dict(zip(names, args, strict=False))
            taken = 0
            for name in names[len(args) :]:
                if name in kwargs:
                    arguments[name] = kwargs[name]
                    taken += 1
                elif name in self._defaults:
                    arguments[name] = self._defaults[name]
                else:
                    break  # a missing argument: bind() says which
            else:
                if taken == len(kwargs):  # else an unknown or repeated name: bind() says which
                    return arguments
        call = self.signature.bind(*args, **kwargs)
        call.apply_defaults()
        return call.arguments

    @staticmethod
    def _template_fields(template: str) -> tuple[str, ...]:
        fields = []
        for _, field, spec, conversion in string.Formatter().parse(template):
            if field is None:
                continue
            if not field or spec or conversion:
                raise TypeError(
                    f"task_lock key {template!r}: use plain {{argument}} fields, "
                    f"got {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}"
                )
            fields.append(field)
        return tuple(fields)

    def name(self, prefix: str, arguments: Mapping[str, Any], args: tuple, kwargs: dict) -> str:
        """The lock name for one call; ``prefix`` is the task's name."""
        key = self.key
        if key is None:
            return f"{prefix}:{canonical_arguments(arguments)}"
        if callable(key):
            name = key(*args, **kwargs)
            if not isinstance(name, str) or not name:
                problem = "an empty lock name" if name == "" else "not a str"
                what = getattr(key, "__qualname__", repr(key))
                raise LockError(f"task_lock key callable {what} returned {name!r}, {problem}")
            return name
        if isinstance(key, str) and key.isidentifier():
            return f"{prefix}:{canonical_text(arguments[key], key)}"
        if isinstance(key, str):
            name = key.format(**{f: canonical_text(arguments[f], f) for f in self.fields})
            if not name:
                raise LockError(f"task_lock key {key!r} rendered an empty lock name")
            return name
        if not key:
            return prefix
        values = [_plain_argument(arguments[field], field) for field in self.fields]
        return f"{prefix}:{canonical_json(values)}"
