"""One guard for reading what a server sends: the shape check and guarded readers.

The protobuf decoders are lenient: betterproto2 decodes a field sent with another wire
type than its declaration into whatever that wire type gives (the 2 bytes ``08 01`` read
as a ``CreateNodeResponse`` put the *int* 1 where a ``Node`` belongs; a varint field sent
length-delimited becomes a *list*), and both decoders accept enum values no line defines.
Reading code that trusts such a message fails deep inside with ``AttributeError`` or
``TypeError``. Two pieces close that gap once, for every line:

* :func:`check_shape` walks a decoded message against its declaration: every field's
  value has its declared Python type (messages, lists, maps, enums included), integers fit
  their protobuf type's range and enum values are defined. The first offending field
  raises :class:`~flwr_sdk.errors.MalformedMessageError` naming it
  (``node.node_id``). Byte strings are not looked into (tensor data is never touched or
  copied).
* :func:`reader` wraps a function that reads a peer's message (a line adapter's
  response readers, the grpc-bidi instruction reader): it checks the shape of the
  message it is given first, then runs the function; an error the function raises on
  purpose (a :class:`~flwr_sdk.errors.FlwrSdkError`) passes unchanged, and any other
  exception — the reader met a value it cannot use — becomes
  :class:`~flwr_sdk.errors.MalformedMessageError` with the original chained as its
  cause. :class:`~flwr_sdk.wire.base.FleetLine` applies it to every reader a line
  defines, so a new line is guarded without doing anything.

What decoding itself refuses (truncated or undecodable bytes) is reported by the
transport before a reader runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import betterproto2

from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX
from flwr_sdk.errors import FlwrSdkError, MalformedMessageError

__all__ = ["check_shape", "is_reader", "reader"]

P = ParamSpec("P")
R = TypeVar("R")

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT32_MAX = 2**32 - 1

_INT_RANGES: Mapping[str, tuple[int, int]] = {
    betterproto2.TYPE_INT32: (_INT32_MIN, _INT32_MAX),
    betterproto2.TYPE_SINT32: (_INT32_MIN, _INT32_MAX),
    betterproto2.TYPE_SFIXED32: (_INT32_MIN, _INT32_MAX),
    betterproto2.TYPE_UINT32: (0, _UINT32_MAX),
    betterproto2.TYPE_FIXED32: (0, _UINT32_MAX),
    betterproto2.TYPE_INT64: (INT64_MIN, INT64_MAX),
    betterproto2.TYPE_SINT64: (INT64_MIN, INT64_MAX),
    betterproto2.TYPE_SFIXED64: (INT64_MIN, INT64_MAX),
    betterproto2.TYPE_UINT64: (0, UINT64_MAX),
    betterproto2.TYPE_FIXED64: (0, UINT64_MAX),
}
_FLOATS = (betterproto2.TYPE_DOUBLE, betterproto2.TYPE_FLOAT)
_BYTES_LIKE = (bytes, bytearray, memoryview)

_READER_MARK = "__flwr_sdk_reader__"


class _MisshapenError(Exception):
    """Internal: a field's value is wrong; ``path`` is filled in on the way up."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def under(self, name: str) -> _MisshapenError:
        self.path = f"{name}.{self.path}" if self.path else name
        return self


def _kind(value: object) -> str:
    """A value's type as the error message names it (``a list``, ``an int``)."""
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _check_value(value: object, proto_type: str, cls: Any) -> None:
    """Check one singular value of ``proto_type`` (``cls``: its message or enum class)."""
    if proto_type == betterproto2.TYPE_MESSAGE:
        if not isinstance(value, cls):
            raise _MisshapenError(f"is {_kind(value)}, not a {cls.__name__} message")
        _check_fields(value)
        return
    if proto_type in _INT_RANGES or proto_type == betterproto2.TYPE_ENUM:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _MisshapenError(f"is {_kind(value)}, not an integer ({proto_type})")
        if proto_type == betterproto2.TYPE_ENUM:
            if int(value) not in cls._value2member_map_:
                raise _MisshapenError(f"holds {int(value)}, which {cls.__name__} does not define")
            return
        low, high = _INT_RANGES[proto_type]
        if not low <= value <= high:
            raise _MisshapenError(f"holds {value}, out of the range of {proto_type}")
        return
    if proto_type in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (float, int)):
            raise _MisshapenError(f"is {_kind(value)}, not a number ({proto_type})")
        return
    expected: tuple[type, ...] = {
        betterproto2.TYPE_BOOL: (bool,),
        betterproto2.TYPE_STRING: (str,),
        betterproto2.TYPE_BYTES: _BYTES_LIKE,
    }[proto_type]
    if not isinstance(value, expected):
        raise _MisshapenError(f"is {_kind(value)}, not {proto_type}")


def _check_field(message: betterproto2.Message, field: dataclasses.Field[Any]) -> None:
    meta: betterproto2.FieldMetadata = field.metadata["betterproto"]
    value = getattr(message, field.name)
    instance: Any = message  # typed loosely by betterproto2
    classes: Mapping[str, Any] = instance._betterproto.cls_by_field
    if meta.proto_type == betterproto2.TYPE_MAP:
        if not isinstance(value, dict):
            raise _MisshapenError(f"is {_kind(value)}, not a map")
        assert meta.map_meta is not None
        key_meta, value_meta = meta.map_meta
        value_cls = classes.get(f"{field.name}.value")
        for key, item in value.items():
            try:
                _check_value(key, key_meta.proto_type, None)
                _check_value(item, value_meta.proto_type, value_cls)
            except _MisshapenError as exc:
                raise exc.under(f"[{key!r}]") from None
        return
    cls = classes.get(field.name)
    if meta.repeated:
        if not isinstance(value, list):
            raise _MisshapenError(f"is {_kind(value)}, not a list")
        for index, item in enumerate(value):
            try:
                _check_value(item, meta.proto_type, cls)
            except _MisshapenError as exc:
                raise exc.under(f"[{index}]") from None
        return
    if value is None and (meta.optional or meta.group is not None):
        return
    _check_value(value, meta.proto_type, cls)


def _check_fields(message: betterproto2.Message) -> None:
    instance: Any = message  # betterproto2 messages are dataclasses
    for field in dataclasses.fields(instance):
        try:
            _check_field(message, field)
        except _MisshapenError as exc:
            raise exc.under(field.name) from None


def check_shape(message: object, what: str) -> None:
    """Check that a decoded ``message`` has the shape its class declares.

    ``what`` names it in the error (e.g. ``"CreateNode response"``).

    Raises:
        MalformedMessageError: ``message`` is not a protobuf message, or one of its
            fields (at any depth) holds a value of the wrong type, an integer out of its
            type's range or an undefined enum value; the error names the field's path.

    """
    if not isinstance(message, betterproto2.Message):
        raise MalformedMessageError(
            f"{what} is {_kind(message)}, not a protobuf message", what=what
        )
    try:
        _check_fields(message)
    except _MisshapenError as exc:
        path = exc.path.replace(".[", "[")
        raise MalformedMessageError(
            f"malformed {what}: {type(message).__name__}.{path} {exc.problem}",
            what=what,
            field=path,
        ) from None


def reader(
    what: str | Callable[[Any], str], *, position: int = 0
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a function that reads a message a peer sent (see the module docs).

    The positional argument at ``position`` (1 for a method: the one after ``self``) is
    the message; it is shape-checked before the function runs. ``what`` names it in
    errors; a callable is given the function's first argument (``self`` for a method)
    and returns the name, so a line adapter can name its RPC (``"PullTaskIns
    response"``).

    The wrapped function raises :class:`~flwr_sdk.errors.MalformedMessageError` where the
    message's shape is wrong or the function fails on a value it cannot use; errors of
    :class:`~flwr_sdk.errors.FlwrSdkError` type pass unchanged.
    """

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        if is_reader(function):
            return function

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            name = what(args[0]) if callable(what) else what
            check_shape(args[position], name)
            try:
                return function(*args, **kwargs)
            except FlwrSdkError:
                raise
            except Exception as exc:  # the reader met a value it cannot use
                raise MalformedMessageError(
                    f"malformed {name}: {type(exc).__name__}: {exc}", what=name
                ) from exc

        setattr(guarded, _READER_MARK, True)
        return guarded

    return wrap


def is_reader(function: object) -> bool:
    """Whether ``function`` is guarded by :func:`reader`."""
    return bool(getattr(function, _READER_MARK, False))
