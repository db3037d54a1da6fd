"""NumPy arrays ⇄ legacy :class:`~flwr_sdk.common.legacy_types.Parameters`.

Tensors are ``.npy`` files exactly as ``numpy.save(allow_pickle=False)`` writes them
(``tensor_type = "numpy.ndarray"``). Loading never unpickles and refuses object dtypes.

The arrays handed out are always writable, so training in place works as with Flower.
They are views of the received buffer, without a copy, where that buffer belongs to the
message alone (large messages: each is received into a buffer of its own) and has not
been handed out before; otherwise they are fresh copies, as Flower's always are (small
messages arrive as ``bytes``; see :func:`flwr_sdk.common._npy.load_npy_writable`).

As in Flower, anything NumPy turns into an array of numbers or booleans (a list of
numbers, a nested rectangular list, a Python or NumPy scalar) is accepted where an
array is expected when serializing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from flwr_sdk.common._npy import NpyPayload, dump_npy, load_npy_writable
from flwr_sdk.common.legacy_types import Parameters, TensorBytes
from flwr_sdk.common.records import NUMPY_STYPE

__all__ = [
    "NDArray",
    "NDArrays",
    "as_ndarray",
    "bytes_to_ndarray",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]

NDArray = npt.NDArray[Any]
"""A NumPy array of any dtype."""
NDArrays = list[NDArray]
"""A list of NumPy arrays (e.g. a model's weights)."""


_NUMERIC_KINDS = frozenset("biufc")  # bool, int, uint, float, complex


def as_ndarray(value: object, what: str) -> NDArray:
    """``value`` itself if it is a NumPy array, else ``numpy.asarray(value)`` if numeric.

    Flower serializes whatever ``numpy.save`` accepts; so do we for values that NumPy
    turns into an array of numbers or booleans (lists of numbers, rectangular nested
    lists, scalars). Other values are refused rather than coerced: ``[1, "a"]`` would
    silently become an array of strings.

    Raises:
        TypeError: ``value`` is not an array and does not convert to numbers or booleans
            (``what`` names it in the message).
        ValueError: ``value`` is a ragged nested sequence.

    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        kind = None
    else:
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise ValueError(f"{what} is not a rectangular array: {exc}") from None
        kind = array.dtype.kind
        if kind in _NUMERIC_KINDS:
            return array
    raise TypeError(
        f"{what} must be a numpy.ndarray or convert to an array of numbers or booleans "
        f"(a list of numbers, a scalar), got {type(value).__name__}"
        + (f" (dtype kind {kind!r})" if kind else "")
    )


def ndarray_to_bytes(ndarray: NDArray) -> bytes:
    """Serialize one array to ``.npy`` bytes (byte-identical to ``numpy.save``).

    Like Flower, accepts what converts to an array of numbers (see :func:`as_ndarray`).

    Raises:
        TypeError: ``ndarray`` is not array-like as described, or has an object dtype.
        ValueError: ``ndarray`` is a ragged nested sequence.

    """
    return dump_npy(as_ndarray(ndarray, "ndarray"))


def bytes_to_ndarray(tensor: TensorBytes) -> NDArray:
    """Load one ``.npy`` tensor as a writable array (no pickle).

    A view of ``tensor`` (no copy) the first time a writable ``memoryview`` of a
    received message is loaded; a fresh copy otherwise (``bytes``, ``bytearray``, a
    memoryview loaded before, an ``NpyPayload``). See the module docstring.

    Raises:
        TypeError: object dtype, or ``tensor`` is not bytes-like.
        ValueError: ``tensor`` is not a well-formed ``.npy`` file.

    """
    if not isinstance(tensor, (bytes, bytearray, memoryview, NpyPayload)):
        raise TypeError(f"tensor must be bytes or memoryview, got {type(tensor).__name__}")
    return load_npy_writable(tensor)


def ndarrays_to_parameters(ndarrays: Iterable[NDArray], *, zero_copy: bool = False) -> Parameters:
    """Serialize arrays into :class:`Parameters` with ``tensor_type="numpy.ndarray"``.

    With ``zero_copy=True`` the tensors are :class:`~flwr_sdk.common._npy.NpyPayload` objects
    (``.npy`` header + a view of each array, nothing copied for contiguous arrays) that
    the transports write straight from the arrays; the arrays must then stay unchanged
    until the parameters have been sent. Otherwise they are ``bytes`` (one copy each).
    Elements that are not arrays are converted as by :func:`as_ndarray`.

    Raises:
        TypeError: ``ndarrays`` is a single array or not iterable, or an element is not
            array-like (see :func:`as_ndarray`) or has an object dtype.
        ValueError: an element is a ragged nested sequence.

    """
    if isinstance(ndarrays, (np.ndarray, str, bytes)) or not isinstance(ndarrays, Iterable):
        raise TypeError(f"ndarrays must be a list of numpy.ndarray, got {type(ndarrays).__name__}")
    tensors: list[TensorBytes] = []
    for index, value in enumerate(ndarrays):
        ndarray = as_ndarray(value, f"ndarrays[{index}]")
        tensors.append(NpyPayload(ndarray) if zero_copy else dump_npy(ndarray))
    return Parameters(tensors=tensors, tensor_type=NUMPY_STYPE)


def parameters_to_ndarrays(parameters: Parameters) -> NDArrays:
    """Load every tensor of ``parameters`` as writable arrays (see :func:`bytes_to_ndarray`)."""
    return [bytes_to_ndarray(tensor) for tensor in parameters.tensors]
