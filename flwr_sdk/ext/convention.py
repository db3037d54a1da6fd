"""The RecordSet convention for user-defined message types, as runtime helpers.

Generated adapters (``flwr-sdk codegen --proto-path DIR --out DIR``) call these helpers
field by field; ``docs/extending.md`` states the convention for people who build or
read such RecordSets by hand (e.g. a server written with plain ``flwr``). In short, a
message whose full protobuf name is ``N`` travels as:

* ``configs_records[N]``: one entry per field, keyed by the field's path (its proto
  name; nested fields joined with ``.``). Scalars and enums (their number) as single
  values, repeated scalars as lists. A singular message field holds a ``bool``
  (present or not) and its own fields follow under ``<path>.``; a repeated message
  field holds its element count and element ``i`` follows under ``<path>.<i>.``.
  ``optional`` scalars and oneof members have an entry only when they are set.
* ``parameters_records[N]`` (only for messages that can contain an
  ``flwr_sdk.ext.v1.NdArray``): one Flower ``Array`` (``stype="numpy.ndarray"``, ``.npy``
  data) per array, keyed by the array field's path (``<path>.<i>`` when repeated).

Decoding is strict about what it reads (every field's key must be there with a value of
the right type) and ignores entries it does not know.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from flwr_sdk.common._npy import peek_npy
from flwr_sdk.common.records import (
    NUMPY_STYPE,
    Array,
    ConfigsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX

__all__ = [
    "ConventionError",
    "MessageCodec",
    "NdArrayLike",
    "RecordReader",
    "RecordSetDecodeError",
    "RecordSetEncodeError",
    "RecordWriter",
    "array_from_ndarray",
    "codec_for",
    "find_codec",
    "ndarray_fields_from_array",
    "ndarray_to_numpy",
    "register_codecs",
]

M = TypeVar("M")

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "enum": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (INT64_MIN, INT64_MAX),
    "sint64": (INT64_MIN, INT64_MAX),
    "sfixed64": (INT64_MIN, INT64_MAX),
    "uint64": (0, UINT64_MAX),
    "fixed64": (0, UINT64_MAX),
}
_PYTHON_TYPE: dict[str, type] = {
    **dict.fromkeys(_INT_RANGES, int),
    "double": float,
    "float": float,
    "bool": bool,
    "string": str,
    "bytes": bytes,
}
"""The Python type of each protobuf scalar type name (plus ``"enum"``) the convention knows."""
_ACCEPTED: dict[type, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
    str: (str,),
    bytes: (bytes, bytearray, memoryview),
}
"""What each Python type accepts as input (``bool`` only as ``bool``)."""


class ConventionError(ValueError):
    """A message and a RecordSet do not match the convention.

    Attributes:
        message_name: full protobuf name of the (top-level) message.
        field: path of the offending field (e.g. ``"inner.values"``), or ``""`` when
            the problem is not tied to one field.
        problem: what is wrong.

    """

    _verb = "convert"

    def __init__(self, message_name: str, field: str, problem: str) -> None:
        self.message_name = message_name
        self.field = field
        self.problem = problem
        where = f"field '{field}'" if field else "message"
        super().__init__(f"cannot {self._verb} {message_name}: {where}: {problem}")


class RecordSetDecodeError(ConventionError):
    """A RecordSet does not hold a valid message (missing key, wrong kind or value type)."""

    _verb = "read"


class RecordSetEncodeError(ConventionError):
    """A message cannot be stored in a RecordSet (e.g. a value out of its type's range)."""

    _verb = "write"


def _type_name(value: object) -> str:
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value})
        return f"list[{' | '.join(kinds)}]" if kinds else "list"
    return type(value).__name__


def _expected(kind: str) -> str:
    return f"{_PYTHON_TYPE[kind].__name__} ({kind})"


def _check_scalar(kind: str, value: object) -> tuple[Any, str | None]:
    """Return ``value`` normalized for ``kind``, or an explanation of why it does not fit."""
    python_type = _PYTHON_TYPE.get(kind)
    if python_type is None:
        raise ValueError(f"unknown scalar kind {kind!r}")
    if not isinstance(value, _ACCEPTED[python_type]) or (
        isinstance(value, bool) and python_type is not bool
    ):
        return None, f"expected {_expected(kind)}, got {_type_name(value)}"
    normalized = python_type(value)
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if not low <= normalized <= high:
            return None, f"value {value} is out of the {kind} range [{low}, {high}]"
    return normalized, None


# --------------------------------------------------------------------------------------
# NdArray <-> Flower Array


class NdArrayLike(Protocol):
    """What a ``flwr_sdk.ext.v1.NdArray`` message looks like."""

    dtype: str
    shape: list[int]
    data: bytes


def _numpy_dtype(dtype: str) -> np.dtype[Any]:
    if not isinstance(dtype, str) or not dtype:
        raise ValueError(f"dtype must be a non-empty NumPy dtype name, got {dtype!r}")
    try:
        parsed: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype {dtype!r} is not a NumPy dtype: {exc}") from None
    if parsed.hasobject:
        raise ValueError(f"dtype {dtype!r} holds Python objects; object arrays are refused")
    return parsed


def ndarray_to_numpy(message: NdArrayLike) -> npt.NDArray[Any]:
    """The NumPy array an ``NdArray`` message describes (a read-only view of its data).

    Raises:
        ValueError: unknown or object dtype, negative dimension, or a data length that
            does not match dtype and shape.

    """
    dtype = _numpy_dtype(message.dtype)
    shape = [int(d) for d in message.shape]
    if any(d < 0 for d in shape):
        raise ValueError(f"shape {shape} has a negative dimension")
    expected = dtype.itemsize * math.prod(shape)
    data = message.data
    if len(data) != expected:
        raise ValueError(
            f"data holds {len(data)} bytes but dtype {message.dtype!r} and shape {shape} "
            f"need {expected}"
        )
    flat: npt.NDArray[Any] = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return flat.reshape(shape)


def array_from_ndarray(message: NdArrayLike) -> Array:
    """A Flower ``Array`` (``stype="numpy.ndarray"``, ``.npy`` data) for an NdArray message."""
    return Array.from_numpy(ndarray_to_numpy(message))


def ndarray_fields_from_array(array: Array) -> tuple[str, list[int], bytes]:
    """``(dtype, shape, data)`` of an NdArray message holding the tensor of ``array``.

    Raises:
        ValueError: ``array`` is not a ``numpy.ndarray`` Array or its ``.npy`` data is
            malformed (object dtypes included).

    """
    if array.stype != NUMPY_STYPE:
        raise ValueError(f"expected an Array with stype {NUMPY_STYPE!r}, got {array.stype!r}")
    try:
        tensor = peek_npy(array.data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Array data is not a valid .npy file: {exc}") from None
    return str(tensor.dtype), [int(d) for d in tensor.shape], tensor.tobytes(order="C")


# --------------------------------------------------------------------------------------
# Writing and reading


class _FieldChecks:
    """What :class:`RecordWriter` and :class:`RecordReader` share: checks that name the field."""

    message_name: str
    _error: type[ConventionError]

    def _fail(self, path: str, problem: str) -> ConventionError:
        return self._error(self.message_name, path, problem)

    def _scalar(self, path: str, kind: str, value: object) -> Any:
        normalized, problem = _check_scalar(kind, value)
        if problem is not None:
            raise self._fail(path, problem)
        return normalized

    def _scalars(self, path: str, kind: str, values: Iterable[object]) -> list[Any]:
        items: list[Any] = []
        for index, value in enumerate(values):
            normalized, problem = _check_scalar(kind, value)
            if problem is not None:
                raise self._fail(path, f"element {index}: {problem}")
            items.append(normalized)
        return items

    def _oneof(
        self, prefix: str, name: str, members: Sequence[str], is_set: Callable[[str], bool]
    ) -> None:
        present = [m for m in members if is_set(prefix + m)]
        if len(present) > 1:
            raise self._fail(
                prefix + name,
                f"oneof '{name}' has more than one member set: {', '.join(present)}",
            )


class RecordWriter(_FieldChecks):
    """Collects the records of one message (see the module docstring for the layout)."""

    _error = RecordSetEncodeError

    def __init__(self, message_name: str, with_arrays: bool) -> None:
        """Start writing message ``message_name``; ``with_arrays`` adds a ParametersRecord."""
        self.message_name = message_name
        self.configs = ConfigsRecord()
        self.parameters: ParametersRecord | None = ParametersRecord() if with_arrays else None

    def scalar(self, path: str, kind: str, value: object) -> None:
        """Store a singular scalar (enum members as their number)."""
        self.configs[path] = self._scalar(path, kind, value)

    def scalar_list(self, path: str, kind: str, values: Iterable[object]) -> None:
        """Store a repeated scalar as a list."""
        self.configs[path] = self._scalars(path, kind, values)

    def presence(self, path: str, present: bool) -> None:
        """Store whether a singular message field is set."""
        self.configs[path] = bool(present)

    def count(self, path: str, count: int) -> None:
        """Store the element count of a repeated message field."""
        self.configs[path] = int(count)

    def array(self, path: str, value: NdArrayLike) -> None:
        """Store an NdArray as a Flower Array in the ParametersRecord."""
        if self.parameters is None:
            raise self._fail(path, "message has no array fields")  # generator bug
        try:
            self.parameters[path] = array_from_ndarray(value)
        except (TypeError, ValueError) as exc:
            raise self._fail(path, str(exc)) from None

    def oneof(self, prefix: str, name: str, members: Sequence[str]) -> None:
        """Check that at most one member of oneof ``name`` was written."""
        self._oneof(prefix, name, members, self.configs.__contains__)

    def recordset(self) -> RecordSet:
        """The finished RecordSet."""
        parameters = {} if self.parameters is None else {self.message_name: self.parameters}
        return RecordSet(
            parameters_records=parameters, configs_records={self.message_name: self.configs}
        )


_MISSING = object()


class RecordReader(_FieldChecks):
    """Reads the fields of one message out of a RecordSet, naming the field on failure."""

    _error = RecordSetDecodeError

    def __init__(self, recordset: RecordSet, message_name: str) -> None:
        """Read message ``message_name`` from ``recordset``."""
        if not isinstance(recordset, RecordSet):
            raise TypeError(f"expected a RecordSet, got {type(recordset).__name__}")
        self.recordset = recordset
        self.message_name = message_name

    def _record(self, path: str, wanted: str) -> Mapping[str, Any]:
        """The record named after the message, of kind ``wanted`` (e.g. ``"ConfigsRecord"``)."""
        name = self.message_name
        sections: dict[str, Mapping[str, Mapping[str, Any]]] = {
            "ParametersRecord": self.recordset.parameters_records,
            "MetricsRecord": self.recordset.metrics_records,
            "ConfigsRecord": self.recordset.configs_records,
        }
        record = sections[wanted].get(name)
        if record is not None:
            return record
        kinds = [kind for kind, section in sections.items() if kind != wanted and name in section]
        if kinds:
            raise self._fail(
                path, f"record '{name}' is a {' and a '.join(kinds)}, expected a {wanted}"
            )
        raise self._fail(path, f"the RecordSet has no {wanted} '{name}'")

    def _raw(self, path: str, wanted: str = "ConfigsRecord") -> Any:
        value = self._record(path, wanted).get(path, _MISSING)
        if value is _MISSING:
            raise self._fail(path, f"missing key '{path}' in {wanted} '{self.message_name}'")
        return value

    def has(self, path: str) -> bool:
        """Whether the ConfigsRecord has an entry for ``path``."""
        return path in self._record(path, "ConfigsRecord")

    def scalar(self, path: str, kind: str) -> Any:
        """A singular scalar (enums as their number)."""
        return self._scalar(path, kind, self._raw(path))

    def optional_scalar(self, path: str, kind: str) -> Any:
        """An ``optional`` scalar or a oneof member: ``None`` when there is no entry."""
        if not self.has(path):
            return None
        return self.scalar(path, kind)

    def scalar_list(self, path: str, kind: str) -> list[Any]:
        """A repeated scalar."""
        raw = self._raw(path)
        if not isinstance(raw, list):
            raise self._fail(path, f"expected a list of {_expected(kind)}, got {_type_name(raw)}")
        return self._scalars(path, kind, raw)

    def presence(self, path: str) -> bool:
        """Whether a singular message field is set (its entry must be a bool)."""
        raw = self._raw(path)
        if not isinstance(raw, bool):
            raise self._fail(
                path, f"expected bool (message field present or not), got {_type_name(raw)}"
            )
        return raw

    def optional_presence(self, path: str) -> bool:
        """Whether a message-typed oneof member is set (no entry: not set)."""
        return self.has(path) and self.presence(path)

    def count(self, path: str) -> int:
        """The element count of a repeated message field."""
        raw = self._raw(path)
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise self._fail(
                path, f"expected int >= 0 (number of elements), got {_type_name(raw)} {raw!r}"
            )
        return raw

    def oneof(self, prefix: str, name: str, members: Sequence[str]) -> None:
        """Check that at most one member of oneof ``name`` has an entry."""
        self._oneof(prefix, name, members, self.has)

    def array(self, path: str, factory: Callable[..., M]) -> M:
        """An NdArray field, built with ``factory(dtype=, shape=, data=)``."""
        array = self._raw(path, "ParametersRecord")
        try:
            dtype, shape, data = ndarray_fields_from_array(array)
        except ValueError as exc:
            raise self._fail(path, str(exc)) from None
        return factory(dtype=dtype, shape=shape, data=data)


# --------------------------------------------------------------------------------------
# Codecs


@dataclass(frozen=True)
class MessageCodec(Generic[M]):
    """The RecordSet adapter of one message class (generated)."""

    message_class: type[M]
    """The generated (betterproto2) class."""
    full_name: str
    """Full protobuf name, e.g. ``"demo.v1.SquareRequest"``; also the record name."""
    to_recordset: Callable[[M], RecordSet]
    """Message → RecordSet; raises :class:`RecordSetEncodeError`."""
    from_recordset: Callable[[RecordSet], M]
    """RecordSet → message; raises :class:`RecordSetDecodeError`."""


_CODECS: dict[type[Any], MessageCodec[Any]] = {}


def register_codecs(codecs: Iterable[MessageCodec[Any]]) -> None:
    """Make ``codecs`` known to :func:`codec_for` (generated packages call this on import)."""
    for codec in codecs:
        if not isinstance(codec, MessageCodec):
            raise TypeError(f"expected MessageCodec, got {type(codec).__name__}")
        _CODECS[codec.message_class] = codec


def find_codec(message_class: type[M]) -> MessageCodec[M] | None:
    """The registered codec of ``message_class``, or None."""
    codec: MessageCodec[M] | None = _CODECS.get(message_class)
    return codec


def codec_for(message_class: type[M]) -> MessageCodec[M]:
    """The codec of ``message_class``.

    Raises:
        TypeError: no codec is registered: the class does not come from a package made
            by ``flwr-sdk codegen`` (or that package's root was never imported).

    """
    codec = find_codec(message_class)
    if codec is None:
        name = getattr(message_class, "__qualname__", repr(message_class))
        raise TypeError(
            f"no RecordSet adapter for {name}: generate its package with "
            "`flwr-sdk codegen --proto-path DIR --out DIR` and import it"
        )
    return codec
