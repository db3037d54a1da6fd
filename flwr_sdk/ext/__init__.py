"""Extending flwr-sdk with your own message types (see ``docs/extending.md``).

* :class:`NdArray` is the protobuf type (``flwr_sdk.ext.v1.NdArray``, from
  ``proto/flwr_sdk/flwr_sdk/ext/v1/ndarray.proto``) that marks a NumPy array field; build
  one with :func:`ndarray_from_numpy` and read it with :func:`ndarray_to_numpy`.
* :func:`to_recordset` / :func:`from_recordset` convert any message of a package made by
  ``flwr-sdk codegen --proto-path DIR --out DIR`` to and from a
  :class:`~flwr_sdk.common.records.RecordSet`, following the convention of
  :mod:`flwr_sdk.ext.convention`.
* Typed handlers for such messages: :class:`flwr_sdk.clientapp.handlers.MessageHandlers`.
* Code on plain Flower (no flwr-sdk) uses the generated package's own
  ``<package>.flwr_records`` (``to_flwr_recordset`` / ``from_flwr_recordset``) instead:
  the same convention on ``flwr.common.RecordSet``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy.typing as npt
from flwr_sdk_proto.ext.convention_core import ndarray_parts
from flwr_sdk_proto.ext.flwr_sdk.ext.v1 import NdArray

from flwr_sdk.common.records import RecordSet
from flwr_sdk.ext.convention import (
    ConventionError,
    MessageCodec,
    RecordSetDecodeError,
    RecordSetEncodeError,
    codec_for,
    find_codec,
    ndarray_to_numpy,
    register_codecs,
)

__all__ = [
    "ConventionError",
    "MessageCodec",
    "NdArray",
    "RecordSetDecodeError",
    "RecordSetEncodeError",
    "codec_for",
    "find_codec",
    "from_recordset",
    "ndarray_from_numpy",
    "ndarray_to_numpy",
    "register_codecs",
    "to_recordset",
]

M = TypeVar("M")


def ndarray_from_numpy(array: npt.ArrayLike) -> NdArray:
    """An :class:`NdArray` message holding a copy of ``array`` (C order).

    Raises:
        ValueError: ``array`` has an object dtype.

    """
    dtype, shape, data = ndarray_parts(array)
    return NdArray(dtype=dtype, shape=shape, data=data)


def to_recordset(message: Any) -> RecordSet:
    """The RecordSet of a generated message (its class's registered codec).

    Raises:
        TypeError: no codec is registered for the message's class.
        RecordSetEncodeError: a field value does not fit the convention.

    """
    return codec_for(type(message)).to_recordset(message)


def from_recordset(message_class: type[M], recordset: RecordSet) -> M:
    """Read a ``message_class`` message from ``recordset``.

    Raises:
        TypeError: no codec is registered for ``message_class``.
        RecordSetDecodeError: the RecordSet does not hold such a message; the error
            names the field.

    """
    return codec_for(message_class).from_recordset(recordset)
