"""NumPy arrays ⇄ legacy :class:`~flwr_sdk.common.legacy_types.Parameters`.

Tensors are ``.npy`` files exactly as ``numpy.save(allow_pickle=False)`` writes them
(``tensor_type = "numpy.ndarray"``). Loading never unpickles, refuses object dtypes and
does not copy the tensor data: the arrays are views of the received buffers (read-only
for ``bytes``, writable for writable buffers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flwr_sdk.common._npy import NpyPayload, dump_npy, load_npy
from flwr_sdk.common.legacy_types import Parameters, TensorBytes
from flwr_sdk.common.records import NUMPY_STYPE

__all__ = [
    "NDArray",
    "NDArrays",
    "bytes_to_ndarray",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]

NDArray = npt.NDArray[Any]
"""A NumPy array of any dtype."""
NDArrays = list[NDArray]
"""A list of NumPy arrays (e.g. a model's weights)."""


def ndarray_to_bytes(ndarray: NDArray) -> bytes:
    """Serialize one array to ``.npy`` bytes (byte-identical to ``numpy.save``).

    Raises:
        TypeError: ``ndarray`` is not a NumPy array or has an object dtype.

    """
    return dump_npy(ndarray)


def bytes_to_ndarray(tensor: TensorBytes) -> NDArray:
    """Load one ``.npy`` tensor as a view of ``tensor`` (no copy, no pickle).

    Raises:
        TypeError: object dtype, or ``tensor`` is not bytes-like.
        ValueError: ``tensor`` is not a well-formed ``.npy`` file.

    """
    if not isinstance(tensor, (bytes, bytearray, memoryview, NpyPayload)):
        raise TypeError(f"tensor must be bytes or memoryview, got {type(tensor).__name__}")
    return load_npy(tensor)


def ndarrays_to_parameters(ndarrays: Sequence[NDArray], *, zero_copy: bool = False) -> Parameters:
    """Serialize arrays into :class:`Parameters` with ``tensor_type="numpy.ndarray"``.

    With ``zero_copy=True`` the tensors are :class:`~flwr_sdk.common._npy.NpyPayload` objects
    (``.npy`` header + a view of each array, nothing copied for contiguous arrays) that
    the transports write straight from the arrays; the arrays must then stay unchanged
    until the parameters have been sent. Otherwise they are ``bytes`` (one copy each).

    Raises:
        TypeError: ``ndarrays`` is not a sequence of NumPy arrays, or one has an object
            dtype.

    """
    if isinstance(ndarrays, np.ndarray) or not isinstance(ndarrays, Sequence):
        raise TypeError(f"ndarrays must be a list of numpy.ndarray, got {type(ndarrays).__name__}")
    tensors: list[TensorBytes] = []
    for index, ndarray in enumerate(ndarrays):
        if not isinstance(ndarray, np.ndarray):
            raise TypeError(
                f"ndarrays[{index}] must be a numpy.ndarray, got {type(ndarray).__name__}"
            )
        tensors.append(NpyPayload(ndarray) if zero_copy else dump_npy(ndarray))
    return Parameters(tensors=tensors, tensor_type=NUMPY_STYPE)


def parameters_to_ndarrays(parameters: Parameters) -> NDArrays:
    """Load every tensor of ``parameters`` (views, no copies; see :func:`bytes_to_ndarray`)."""
    return [bytes_to_ndarray(tensor) for tensor in parameters.tensors]
