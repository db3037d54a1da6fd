"""Flower's ``flwr.common.array_from_numpy``."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from flwr_sdk.common.records import Array

__all__ = ["array_from_numpy"]


def array_from_numpy(ndarray: npt.NDArray[Any]) -> Array:
    """An :class:`Array` holding ``ndarray`` as ``.npy`` bytes (``Array.from_numpy``).

    Same fields and bytes as Flower's: ``dtype=str(ndarray.dtype)``,
    ``shape=list(ndarray.shape)``, ``stype="numpy.ndarray"``, ``data`` what
    ``numpy.save(allow_pickle=False)`` writes.

    Raises:
        TypeError: ``ndarray`` is not a NumPy array or has an object dtype.

    """
    return Array.from_numpy(ndarray)
