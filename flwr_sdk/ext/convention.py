"""The RecordSet convention for user-defined message types, as runtime helpers.

Generated adapters (``flwr-sdk codegen --proto-path DIR --out DIR``) call these helpers
field by field; ``docs/extending.md`` states the convention for people who build or
read such RecordSets by hand (e.g. a server written with plain ``flwr``).

The rules (:class:`RecordWriter`, :class:`RecordReader`, the error types, the NdArray
helpers) come from ``flwr_sdk_proto.ext.convention_core``: the codegen template
``codegen/templates/convention_core.py.j2`` rendered for flwr-sdk's records. The same
template, rendered for ``flwr.common`` records, ships inside every generated package
(``<package>._flwr_convention``, used by ``<package>.flwr_records``), so plain Flower
and flwr-sdk follow one source. This module adds the codec registry typed handlers use.
In short, a message whose full protobuf name is ``N`` travels as:

* ``configs_records[N]``: one entry per field, keyed by the field's path (its proto
  name; nested fields joined with ``.``). Scalars and enums (their number) as single
  values, repeated scalars as lists. A singular message field holds a ``bool``
  (present or not) and its own fields follow under ``<path>.``; a repeated message
  field holds its element count and element ``i`` follows under ``<path>.<i>.``.
  ``optional`` scalars and oneof members have an entry only when they are set. A map
  holds its sorted keys; scalar values follow under ``<path>.values``, others under
  ``<path>.<i>``. ``Timestamp`` / ``Duration``: ``seconds`` and ``nanos`` like a message;
  wrappers: like ``optional`` scalars; ``Struct`` / ``Value`` / ``ListValue``: JSON text.
* ``parameters_records[N]`` (only for messages that can contain an
  ``flwr_sdk.ext.v1.NdArray``): one Flower ``Array`` (``stype="numpy.ndarray"``, ``.npy``
  data) per array, keyed by the array field's path (``<path>.<i>`` when repeated).

Decoding is strict about what it reads (every field's key must be there with a value of
the right type) and ignores entries it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flwr_sdk_proto.ext.convention_core import (
    ConventionError,
    NdArrayLike,
    RecordReader,
    RecordSetDecodeError,
    RecordSetEncodeError,
    RecordWriter,
    array_from_ndarray,
    ndarray_fields_from_array,
    ndarray_to_numpy,
)

from flwr_sdk.common.records import RecordSet

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
