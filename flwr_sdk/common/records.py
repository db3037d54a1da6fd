"""The record data model: :class:`Array`, the three record kinds and :class:`RecordSet`.

These are plain Python objects with the semantics of Flower 1.12's records; they know
nothing about protobuf (the ``flwr_sdk.wire`` modules convert them).

* :class:`ParametersRecord` maps ``str`` to :class:`Array` and keeps insertion order
  (order is significant on the wire and for the legacy mapping). As in Flower 1.12 it
  takes its entries *out* of the dict it is built from unless ``keep_input=True``.
* :class:`MetricsRecord` maps ``str`` to ``int``, ``float``, ``list[int]`` or
  ``list[float]`` (``bool`` is not a metric).
* :class:`ConfigsRecord` maps ``str`` to ``int``, ``float``, ``str``, ``bytes``, ``bool``
  or a list whose elements all have one of those types.

Every record checks keys and values when they are stored (constructor, ``[]=``,
``update``, ``setdefault``) and raises :class:`TypeError` naming the key and the allowed
types, as Flower does for the same values. Integers must fit the wire: the signed or the
unsigned 64-bit range (:class:`ValueError` when stored; Flower accepts them and fails
when the message is serialized). Numbers are stored as the builtin types, so a subclass
such as ``numpy.float64`` is stored as ``float``; lists are copied on insert (so a
later change to the caller's list cannot slip a value of another type into a record).

A record equals a record of the same kind or a plain mapping with the same entries.
Values compare type-strictly (``1 != 1.0``, ``True != 1``: different values on the
wire) and NaN equals NaN; ParametersRecords also compare key order.

Arrays and memory: :meth:`Array.numpy` returns a writable array. For an Array decoded
from a large received message it is a view of the received buffer the first time
(no copy; modifying it modifies the Array), and a fresh copy otherwise (see
:func:`flwr_sdk.common._npy.load_npy_writable`). Arrays kept beyond one message, in
``Context.state``, are never aliased: an Array entering a state RecordSet (directly,
inside a record, or inside a record stored there earlier) keeps its data read-only
from then on, and is copied once if an array was already handed out from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy.typing as npt

from flwr_sdk.common._npy import (
    NpyPayload,
    as_byte_view,
    claim_view,
    dump_npy,
    is_immutable_bytes,
    load_npy_writable,
)
from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX

__all__ = [
    "Array",
    "ConfigsRecord",
    "ConfigsRecordValues",
    "ConfigsScalar",
    "MetricsRecord",
    "MetricsRecordValues",
    "MetricsScalar",
    "NUMPY_STYPE",
    "ParametersRecord",
    "RecordMapping",
    "RecordSet",
]

NUMPY_STYPE = "numpy.ndarray"
"""``Array.stype`` of arrays holding ``.npy`` bytes."""


MetricsScalar = int | float
"""A single metrics value."""
MetricsRecordValues = int | float | list[int] | list[float]
"""What a :class:`MetricsRecord` may hold."""
ConfigsScalar = int | float | str | bytes | bool
"""A single configs value."""
ConfigsRecordValues = (
    int
    | float
    | str
    | bytes
    | bool
    | list[int]
    | list[float]
    | list[str]
    | list[bytes]
    | list[bool]
)
"""What a :class:`ConfigsRecord` may hold."""


# --------------------------------------------------------------------------------------
# Array


@dataclass(eq=False)
class Array:
    """One tensor: a dtype/shape/serialization-type description plus its raw bytes.

    ``data`` may be ``bytes``, a ``bytearray`` (stored as a ``bytes`` copy), a
    ``memoryview`` (kept as given, never copied, so that a decoder can hand out views of
    a received buffer) or an
    :class:`~flwr_sdk.common._npy.NpyPayload` (a ``.npy`` file not materialised: header plus a
    view of an array; the transports write it without copying). For NumPy arrays ``stype`` is
    ``"numpy.ndarray"`` and ``data`` holds a complete ``.npy`` file; see
    :meth:`from_numpy` and :meth:`numpy`.

    Equality compares ``dtype``, ``shape``, ``stype`` and the content of ``data``.
    """

    dtype: str
    shape: list[int]
    stype: str
    data: bytes | memoryview | NpyPayload

    def __post_init__(self) -> None:
        """Validate the field types."""
        for name in ("dtype", "stype"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(
                    f"Array.{name} must be str, got {type(getattr(self, name)).__name__}"
                )
        shape: object = self.shape
        if isinstance(shape, tuple):
            shape = list(shape)
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            raise TypeError(f"Array.shape must be a list of int, got {self.shape!r}")
        self.shape = [int(d) for d in shape]
        data: object = self.data
        if isinstance(data, bytearray):
            # A buffer its owner may change: keep a copy (Flower keeps it and copies on load).
            self.data = bytes(data)
        elif isinstance(data, memoryview):
            self.data = as_byte_view(data, "Array.data memoryview must be C-contiguous")
        elif not isinstance(data, (bytes, NpyPayload)):
            raise TypeError(
                f"Array.data must be bytes, bytearray or memoryview, got {type(data).__name__}"
            )
        # The data this Array made safe to keep (see _make_shared); not a dataclass field.
        self._shared_data: bytes | memoryview | NpyPayload | None = None

    @classmethod
    def from_numpy(cls, ndarray: npt.NDArray[Any]) -> Array:
        """Build an Array holding ``ndarray`` as ``.npy`` bytes.

        ``dtype`` is ``str(ndarray.dtype)``, ``shape`` is ``list(ndarray.shape)``,
        ``stype`` is ``"numpy.ndarray"`` and ``data`` is what
        ``numpy.save(allow_pickle=False)`` writes.

        Raises:
            TypeError: ``ndarray`` is not a NumPy array or has an object dtype.

        """
        data = dump_npy(ndarray)
        return cls(
            dtype=str(ndarray.dtype), shape=list(ndarray.shape), stype=NUMPY_STYPE, data=data
        )

    def numpy(self) -> npt.NDArray[Any]:
        """Return the tensor as a writable NumPy array.

        When ``data`` is a writable ``memoryview`` (what the decoders give for the tensors
        of a large received message: a slice of a buffer received for that message
        alone) the first call returns a view of it, without a copy: changes to the array
        are changes to this Array's data. Every other call returns a fresh copy, as Flower
        does: later calls on the same Array, ``bytes`` data (small messages, Arrays built
        with :meth:`from_numpy`), Arrays kept in ``Context.state`` and
        :class:`~flwr_sdk.common._npy.NpyPayload` data.

        Raises:
            TypeError: ``stype`` is not ``"numpy.ndarray"``, or the data declares an object
                dtype.
            ValueError: ``data`` is not a well-formed ``.npy`` file.

        """
        if self.stype != NUMPY_STYPE:
            raise TypeError(f"Array.numpy() needs stype {NUMPY_STYPE!r}, got {self.stype!r}")
        return load_npy_writable(self.data)

    def _make_shared(self) -> None:
        """Make this Array safe to keep beyond its message (it enters ``Context.state``).

        Afterwards ``data`` cannot change through any array handed out by
        :meth:`numpy` (or ``parameters_to_ndarrays``), earlier or later: a writable
        memoryview nobody has claimed yet is claimed (later loads copy) and kept as a
        read-only view, with no copy; data that may already be aliased (a view handed
        out before, an NpyPayload, a foreign mutable buffer) is copied once to ``bytes``.
        """
        data = self.data
        if self._shared_data is not None and data is self._shared_data:
            return
        if isinstance(data, memoryview) and not data.readonly and claim_view(data):
            self.data = data.toreadonly()
        elif not is_immutable_bytes(data):
            self.data = bytes(data)
        self._shared_data = self.data

    def __eq__(self, other: object) -> bool:
        """Compare field by field; ``data`` by content (bytes vs memoryview is irrelevant)."""
        if not isinstance(other, Array):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and self.stype == other.stype
            and self.data == other.data
        )

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value

    def __repr__(self) -> str:
        """Describe the array without dumping its bytes."""
        return (
            f"Array(dtype={self.dtype!r}, shape={self.shape!r}, stype={self.stype!r}, "
            f"data=<{len(self.data)} {type(self.data).__name__}>)"
        )


# --------------------------------------------------------------------------------------
# Value checks


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_key(record_name: str, key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{record_name} keys must be str, got {_type_name(key)} ({key!r})")
    return key


def _check_int_range(record_name: str, key: str, value: int) -> None:
    if not INT64_MIN <= value <= UINT64_MAX:
        raise ValueError(
            f"{record_name} value for key {key!r} is out of range: {value} does not fit "
            "a signed or unsigned 64-bit integer"
        )


def _scalar_kind(value: object) -> type | None:
    """Return the builtin type a scalar is stored as, or None if it is not a scalar."""
    # bool before int: a bool is an int too.
    return next((kind for kind in (bool, int, float, str, bytes) if isinstance(value, kind)), None)


def _normalize(value: Any, kind: type) -> Any:
    return value if type(value) is kind else kind(value)


def _check_value(
    record_name: str, key: str, value: object, allowed: tuple[type, ...], allowed_text: str
) -> Any:
    """Validate ``value`` for ``key`` and return it normalized to builtin types."""
    if isinstance(value, list):
        kinds = {_scalar_kind(v) for v in value}
        if len(kinds) > 1:
            raise TypeError(
                f"{record_name} value for key {key!r} must be {allowed_text}; "
                f"list elements must all have one type, got "
                f"{sorted({_type_name(v) for v in value})}"
            )
        if not value:
            return []
        (kind,) = kinds
        if kind is None or kind not in allowed:
            raise TypeError(
                f"{record_name} value for key {key!r} must be {allowed_text}, "
                f"got list[{_type_name(value[0])}]"
            )
        items = [_normalize(v, kind) for v in value]
        if kind is int:
            for v in items:
                _check_int_range(record_name, key, v)
            if min(items) < 0 and max(items) > INT64_MAX:
                raise ValueError(
                    f"{record_name} value for key {key!r}: a list of int must fit either "
                    "the signed or the unsigned 64-bit range as a whole"
                )
        return items
    kind = _scalar_kind(value)
    if kind is None or kind not in allowed:
        raise TypeError(
            f"{record_name} value for key {key!r} must be {allowed_text}, got {_type_name(value)}"
        )
    normalized = _normalize(value, kind)
    if kind is int:
        _check_int_range(record_name, key, normalized)
    return normalized


def _value_size(value: object) -> int:
    """Bytes a record value counts for in ``count_bytes`` (Flower 1.12's counting)."""
    if isinstance(value, list):
        return sum(_value_size(item) for item in value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 8
    if isinstance(value, (str, bytes)):
        return len(value)
    return 0


def _values_equal(a: object, b: object) -> bool:
    """Type-strict equality (1 != 1.0, True != 1) with NaN equal to NaN."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=False))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# --------------------------------------------------------------------------------------
# Records

V = TypeVar("V")


class _CheckedDict(MutableMapping[str, V]):
    """A ``str``-keyed dict whose ``[]=`` checks the key and has :meth:`_check` vet the value."""

    _name: str
    _data: dict[str, V]

    def _check(self, key: str, value: object) -> V:
        raise NotImplementedError

    def __setitem__(self, key: str, value: V) -> None:
        """Store ``value`` under ``key`` after checking both."""
        checked_key = _check_key(self._name, key)
        self._data[checked_key] = self._check(checked_key, value)

    def __getitem__(self, key: str) -> V:
        """Return the value stored under ``key``."""
        return self._data[key]

    def __delitem__(self, key: str) -> None:
        """Remove ``key``."""
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        """Iterate over keys in insertion order."""
        return iter(self._data)

    def __len__(self) -> int:
        """Return the number of entries."""
        return len(self._data)

    __hash__ = None  # type: ignore[assignment]


class _Record(_CheckedDict[V]):
    """Base of the three record kinds; values are vetted against ``_allowed``."""

    _name = "Record"
    _allowed: tuple[type, ...] = ()
    _allowed_text = ""

    def __init__(self, data: Mapping[str, V] | None = None, keep_input: bool = True) -> None:
        self._data = {}
        if data is None:
            return
        if not isinstance(data, Mapping):
            raise TypeError(f"{self._name} expects a mapping (or None), got {_type_name(data)}")
        for key in list(data):
            self[key] = data[key]
            if not keep_input and isinstance(data, MutableMapping):
                del data[key]

    def _check(self, key: str, value: object) -> V:
        checked: V = _check_value(self._name, key, value, self._allowed, self._allowed_text)
        return checked

    def count_bytes(self) -> int:
        """Approximate size in bytes, counted as Flower 1.12 counts it.

        Each key counts its length; an ``int`` or ``float`` 8 bytes, a ``bool`` 1, a
        ``str`` its length in characters, ``bytes`` their length; a list the sum of its
        elements (an empty list 0).
        """
        return sum(len(key) + _value_size(value) for key, value in self._data.items())

    def __eq__(self, other: object) -> bool:
        """Equal to a record of the same kind, or a plain mapping, with equal entries.

        Values compare type-strictly (``1 != 1.0``, ``True != 1``: they are different
        values on the wire) and NaN equals NaN. A record of another kind is never equal.
        """
        if isinstance(other, _Record):
            if type(other) is not type(self):
                return False
        elif not isinstance(other, Mapping):
            return NotImplemented
        return self._data.keys() == other.keys() and all(
            _values_equal(v, other[k]) for k, v in self._data.items()
        )

    def __repr__(self) -> str:
        """Show the kind and the entries."""
        return f"{type(self).__name__}({self._data!r})"


class ParametersRecord(_Record[Array]):
    """An ordered mapping of ``str`` keys to :class:`Array` values.

    Order matters: it is kept on the wire and the legacy mapping reads tensors in key
    order. Equality therefore also compares the key order.

    Args:
        array_dict: initial entries (inserted in iteration order).
        keep_input: if False (the default, as in Flower 1.12), entries are removed from
            ``array_dict`` as they are taken over, so that large tensors are referenced
            once; pass True to leave ``array_dict`` as it is. A read-only mapping is
            never changed.

    """

    _name = "ParametersRecord"

    def __init__(
        self, array_dict: Mapping[str, Array] | None = None, keep_input: bool = False
    ) -> None:
        """Create the record from ``array_dict`` (see class docstring)."""
        # True once the record is part of a Context.state: Arrays stored in it are shared.
        self._shared = False
        super().__init__(array_dict, keep_input)

    def _check(self, key: str, value: object) -> Array:
        if not isinstance(value, Array):
            raise TypeError(
                f"ParametersRecord value for key {key!r} must be Array, got {_type_name(value)}"
            )
        if self._shared:
            value._make_shared()
        return value

    def _make_shared(self) -> None:
        """Keep this record beyond one message: its Arrays, now and later, are shared."""
        self._shared = True
        for array in self._data.values():
            array._make_shared()

    def __eq__(self, other: object) -> bool:
        """Equal to a ParametersRecord or plain mapping with the same keys, in order.

        The Arrays must be equal too. A record of another kind is never equal.
        """
        if isinstance(other, _Record) and not isinstance(other, ParametersRecord):
            return False
        if not isinstance(other, Mapping):
            return NotImplemented
        return list(self._data.items()) == list(other.items())

    def count_bytes(self) -> int:
        """Size in bytes as Flower 1.12 counts it: each Array's data plus each key's length."""
        return sum(len(key) + len(array.data) for key, array in self._data.items())


class MetricsRecord(_Record[MetricsRecordValues]):
    """A mapping of ``str`` keys to ``int``, ``float``, ``list[int]`` or ``list[float]``.

    ``bool`` is not accepted. Args as for :class:`ParametersRecord`.
    """

    _name = "MetricsRecord"
    _allowed = (int, float)
    _allowed_text = "int, float, list[int] or list[float]"

    def __init__(
        self,
        metrics_dict: Mapping[str, MetricsRecordValues] | None = None,
        keep_input: bool = True,
    ) -> None:
        """Create the record from ``metrics_dict``."""
        super().__init__(metrics_dict, keep_input)


class ConfigsRecord(_Record[ConfigsRecordValues]):
    """A mapping of ``str`` keys to int, float, str, bytes, bool or a one-type list of those.

    Args as for :class:`ParametersRecord`.
    """

    _name = "ConfigsRecord"
    _allowed = (int, float, str, bytes, bool)
    _allowed_text = "int, float, str, bytes, bool or a list of one of those types"

    def __init__(
        self,
        configs_dict: Mapping[str, ConfigsRecordValues] | None = None,
        keep_input: bool = True,
    ) -> None:
        """Create the record from ``configs_dict``."""
        super().__init__(configs_dict, keep_input)


# --------------------------------------------------------------------------------------
# RecordSet

R = TypeVar("R")


class RecordMapping(_CheckedDict[R], Generic[R]):
    """A ``str``-keyed mapping that only accepts values of one record type.

    The three sections of a :class:`RecordSet` are RecordMappings.
    """

    def __init__(self, value_type: type[R], name: str) -> None:
        """Create an empty mapping accepting ``value_type`` values, called ``name``."""
        self._value_type = value_type
        self._name = name
        self._data = {}
        self._shared = False

    def _check(self, key: str, value: object) -> R:
        if not isinstance(value, self._value_type):
            raise TypeError(
                f"{self._name} value for key {key!r} must be "
                f"{self._value_type.__name__}, got {_type_name(value)}"
            )
        checked: R = value
        if self._shared and isinstance(value, ParametersRecord):
            value._make_shared()
        return checked

    def _make_shared(self) -> None:
        """Keep this mapping beyond one message: its ParametersRecords, now and later."""
        self._shared = True
        for value in self._data.values():
            if isinstance(value, ParametersRecord):
                value._make_shared()

    def __eq__(self, other: object) -> bool:
        """Equal to a RecordMapping (or plain mapping) with equal entries."""
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self._data) == dict(other.items())

    def __repr__(self) -> str:
        """Show the entries."""
        return repr(self._data)


def _fill(target: RecordMapping[R], source: Mapping[str, R] | None, arg: str) -> None:
    if source is None:
        return
    if not isinstance(source, Mapping):
        raise TypeError(f"RecordSet argument {arg} must be a mapping or None")
    for key, value in source.items():
        target[key] = value


class RecordSet:
    """Content of a message: named ParametersRecords, MetricsRecords and ConfigsRecords.

    Each section is a :class:`RecordMapping` keyed by ``str`` that only accepts its
    record type. The mappings passed in are copied (the records themselves are not).

    A RecordSet that is a ``Context.state`` outlives single messages, so the Arrays in it
    are never aliased by arrays handed to user code: storing an Array there (directly
    or in a ParametersRecord of it) makes its data read-only, copying it once only if
    an array viewing it was already handed out; ``numpy()`` on it then returns copies.
    """

    __slots__ = ("_configs", "_metrics", "_parameters")

    def __init__(
        self,
        parameters_records: Mapping[str, ParametersRecord] | None = None,
        metrics_records: Mapping[str, MetricsRecord] | None = None,
        configs_records: Mapping[str, ConfigsRecord] | None = None,
    ) -> None:
        """Create a RecordSet from optional mappings of records."""
        self._parameters = RecordMapping(ParametersRecord, "RecordSet.parameters_records")
        self._metrics = RecordMapping(MetricsRecord, "RecordSet.metrics_records")
        self._configs = RecordMapping(ConfigsRecord, "RecordSet.configs_records")
        _fill(self._parameters, parameters_records, "parameters_records")
        _fill(self._metrics, metrics_records, "metrics_records")
        _fill(self._configs, configs_records, "configs_records")

    def _make_shared(self) -> None:
        """Keep this RecordSet beyond one message (it is a ``Context.state``).

        Every Array stored in it, now or later, directly or through a record stored in
        it, is made safe from aliasing (see ``Array._make_shared``).
        """
        self._parameters._make_shared()

    @property
    def parameters_records(self) -> RecordMapping[ParametersRecord]:
        """The ParametersRecords, by name."""
        return self._parameters

    @property
    def metrics_records(self) -> RecordMapping[MetricsRecord]:
        """The MetricsRecords, by name."""
        return self._metrics

    @property
    def configs_records(self) -> RecordMapping[ConfigsRecord]:
        """The ConfigsRecords, by name."""
        return self._configs

    def __eq__(self, other: object) -> bool:
        """Equal when all three sections are equal."""
        if not isinstance(other, RecordSet):
            return NotImplemented
        return (
            self._parameters == other._parameters
            and self._metrics == other._metrics
            and self._configs == other._configs
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show the three sections."""
        return (
            f"RecordSet(parameters_records={self._parameters!r}, "
            f"metrics_records={self._metrics!r}, configs_records={self._configs!r})"
        )
