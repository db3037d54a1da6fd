"""Reading and writing NumPy ``.npy`` files without needless copies.

This is the one place where the SDK turns arrays into ``.npy`` bytes and back. It is
shared by :class:`flwr_sdk.common.records.Array` and :mod:`flwr_sdk.common.ndarrays`.

* :func:`dump_npy` produces exactly the bytes that ``numpy.save(..., allow_pickle=False)``
  writes (format 1.0 for every ordinary array), with a single copy of the tensor data.
* :class:`NpyPayload` is the same ``.npy`` file *not* materialised: the header bytes plus a
  view of the array's data. The generated fast codecs write it into a message without
  an intermediate ``bytes`` object (its ``byte_segments()``), or stream it by reference.
* :func:`load_npy` parses the header itself and returns a view of the input buffer
  (``numpy.frombuffer``); the tensor data is never copied. The returned array is
  read-only when the buffer is (``bytes``) and writable when the buffer is (for example a
  ``memoryview`` of a ``bytearray``). It is the internal, zero-copy reader.
* :func:`load_npy_writable` is what user code gets (``Array.numpy()``,
  ``bytes_to_ndarray``, ``parameters_to_ndarrays``, the NumPyClient's parameters): always
  a writable array that shares memory with nothing else handed out, as Flower's fresh
  arrays do, without copying where that is not needed. The rule:

  - a writable ``memoryview`` is *handed over* the first time: the array is a view of it,
    no copy. The decoders produce such views for large received messages (each a slice
    of a buffer allocated for that one message), so training in place on received
    arrays costs nothing; the changes are visible in that message's tensor, which belongs
    to the round being handled;
  - every later conversion of the same ``memoryview`` object gets a copy, so an array
    handed out earlier never aliases a later one (``before = a.numpy(); after =
    a.numpy(); after -= step`` leaves ``before`` alone, as in Flower);
  - read-only buffers (``bytes``: small messages, arrays built with ``Array.from_numpy``
    or ``ndarray_to_bytes``), ``bytearray`` and :class:`NpyPayload` (the array behind it
    belongs to whoever made it) always give a copy.

  Handing over is tracked per ``memoryview`` object (weakly: the record disappears with
  the view), so a message's ``Array.data`` and the legacy ``Parameters.tensors`` made
  from it, which are the same objects, share one hand-over.
* :func:`peek_npy` is for SDK code that only reads a tensor (its size, an aggregate):
  a read-only view that neither copies nor hands the buffer over, so the user's later
  load still gets it without a copy. Internal readers must use it (or :func:`load_npy`),
  never the user-facing functions, which would copy or take the buffer away.

Nothing is ever unpickled: object dtypes are refused with :class:`TypeError` in both
directions, and the header is parsed with :func:`ast.literal_eval`, limited in size,
one thread at a time (:data:`_LITERAL_EVAL`), and each distinct header once
(:data:`HEADER_CACHE` entries).
"""

from __future__ import annotations

import ast
import functools
import io
import math
import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

__all__ = [
    "MAX_HEADER_SIZE",
    "NPY_MAGIC",
    "NpyPayload",
    "claim_view",
    "dump_npy",
    "is_immutable_bytes",
    "load_npy",
    "load_npy_writable",
    "peek_npy",
]

NPY_MAGIC = b"\x93NUMPY"
"""The six bytes every ``.npy`` file starts with."""

MAX_HEADER_SIZE = 10_000
"""Longest header (in bytes) we agree to parse; numpy's own default limit."""

_VERSIONS: dict[tuple[int, int], tuple[int, str]] = {
    # version -> (size in bytes of the little-endian header length, header encoding)
    (1, 0): (2, "latin1"),
    (2, 0): (4, "latin1"),
    (3, 0): (4, "utf8"),
}
_EXPECTED_KEYS = frozenset({"descr", "fortran_order", "shape"})


def _refuse_object_dtype(dtype: np.dtype[Any], what: str) -> None:
    if dtype.hasobject:
        raise TypeError(
            f"{what}: arrays with object dtype ({dtype}) are not supported; "
            "they would need pickle, which the SDK never uses"
        )


def _npy_parts(array: npt.NDArray[Any]) -> tuple[bytes, memoryview]:
    """``(header, data view)`` of ``array``'s ``.npy`` file (rarely: the whole file, ``b""``).

    The data view shares memory with ``array`` when it is C- or F-contiguous; other
    arrays are copied once into C order (as ``numpy.save`` writes them).
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array must be a numpy.ndarray, got {type(array).__name__}")
    arr: npt.NDArray[Any] = np.asarray(array)
    _refuse_object_dtype(arr.dtype, "cannot serialize array")
    header_data = npy_format.header_data_from_array_1_0(arr)
    header = io.BytesIO()
    try:
        npy_format.write_array_header_1_0(header, header_data)
    except (ValueError, UnicodeError):
        # Header does not fit format 1.0 (huge structured dtypes, non-latin1 field
        # names): rare, so defer to numpy's own writer and its version selection.
        whole = io.BytesIO()
        np.save(whole, arr, allow_pickle=False)
        return whole.getvalue(), memoryview(b"")
    if arr.itemsize == 0 or arr.size == 0:
        return header.getvalue(), memoryview(b"")
    # Same byte order as numpy.save: Fortran order only for arrays that are
    # F-contiguous but not C-contiguous, otherwise C order.
    if header_data["fortran_order"]:
        flat = arr.T.reshape(-1)
    else:
        flat = np.ascontiguousarray(arr).reshape(-1)
    return header.getvalue(), memoryview(flat.view(np.uint8))


def dump_npy(array: npt.NDArray[Any]) -> bytes:
    """Serialize ``array`` to ``.npy`` bytes, identical to ``numpy.save(allow_pickle=False)``.

    Raises:
        TypeError: ``array`` is not a NumPy array or has an object dtype.

    """
    # b"".join copies straight from the array's buffer into the result: one copy.
    return b"".join(_npy_parts(array))


class NpyPayload:
    """The ``.npy`` file of an array as ``(header bytes, view of the array data)``.

    Holds exactly the bytes :func:`dump_npy` returns, without building them: the data
    segment shares memory with the array (C- or F-contiguous arrays; others are copied
    once into C order, as ``numpy.save`` would write them). So the array must not be
    modified while the payload is in use (e.g. until a reply holding it has been sent).

    It implements the generated codecs' ``SegmentedBytes`` protocol (``len`` and
    :meth:`byte_segments`), so it can stand in a protobuf ``bytes`` field
    (``Array.data``, ``Parameters.tensors``); :meth:`numpy` gives the array back
    without parsing, ``bytes(payload)`` materialises the file (one copy), and payloads
    compare equal to bytes-like objects with the same content.

    Raises:
        TypeError: ``array`` is not a NumPy array or has an object dtype.

    """

    __slots__ = ("_array", "_data", "_header", "_nbytes")

    def __init__(self, array: npt.NDArray[Any]) -> None:
        self._header, self._data = _npy_parts(array)
        self._array = array
        self._nbytes = len(self._header) + self._data.nbytes

    def __len__(self) -> int:
        """Length of the ``.npy`` file in bytes."""
        return self._nbytes

    @property
    def nbytes(self) -> int:
        """Length of the ``.npy`` file in bytes (same as ``len``)."""
        return self._nbytes

    def byte_segments(self) -> tuple[bytes | memoryview, ...]:
        """The header and the data view, whose concatenation is the ``.npy`` file."""
        if self._data.nbytes == 0:
            return (self._header,)
        return (self._header, self._data)

    def numpy(self) -> npt.NDArray[Any]:
        """The array this payload was made from (not a copy)."""
        return self._array

    def __bytes__(self) -> bytes:
        """The ``.npy`` file as ``bytes`` (a copy)."""
        return b"".join(self.byte_segments())

    def __eq__(self, other: object) -> bool:
        """Compare content with another payload or a bytes-like object."""
        if isinstance(other, NpyPayload):
            return self._nbytes == other._nbytes and bytes(self) == bytes(other)
        if isinstance(other, (bytes, bytearray, memoryview)):
            view = memoryview(other)
            return self._nbytes == view.nbytes and bytes(self) == view.cast("B").tobytes()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Describe the payload without dumping its bytes."""
        array = self._array
        return f"NpyPayload(<{self._nbytes} bytes>, dtype={array.dtype}, shape={array.shape})"


def as_byte_view(data: bytes | bytearray | memoryview, not_contiguous: str) -> memoryview:
    """``data`` as a flat view of bytes (a flat memoryview itself); no copy of the bytes.

    Raises:
        ValueError: ``not_contiguous``, when ``data`` is a non-contiguous view.

    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise ValueError(not_contiguous)
        view = view.cast("B")
    return view


def load_npy(data: bytes | bytearray | memoryview | NpyPayload) -> npt.NDArray[Any]:
    """Load a ``.npy`` file held in memory, as a view of ``data`` (no copy of the tensor).

    An :class:`NpyPayload` gives back the array it was made from.

    Accepts format versions 1.0, 2.0 and 3.0. The result shares memory with ``data``:
    it is read-only for ``bytes`` and writable for writable buffers.

    Raises:
        ValueError: ``data`` is not a well-formed ``.npy`` file (bad magic, unknown
            version, malformed or oversized header, data length not matching the header).
        TypeError: the header declares an object dtype (loading it would need pickle).

    """
    if isinstance(data, NpyPayload):
        return data.numpy()
    view = as_byte_view(data, "npy data must be a contiguous buffer")
    if len(view) < len(NPY_MAGIC) + 2 or view[: len(NPY_MAGIC)] != NPY_MAGIC:
        raise ValueError("not a .npy file: missing magic string")
    version = (view[6], view[7])
    if version not in _VERSIONS:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    len_size, encoding = _VERSIONS[version]
    header_start = 8 + len_size
    if len(view) < header_start:
        raise ValueError("truncated .npy file: incomplete header length")
    header_len = int.from_bytes(view[8:header_start], "little")
    if header_len > MAX_HEADER_SIZE:
        raise ValueError(
            f".npy header is {header_len} bytes long; at most {MAX_HEADER_SIZE} are accepted"
        )
    data_start = header_start + header_len
    if len(view) < data_start:
        raise ValueError("truncated .npy file: incomplete header")
    dtype, fortran_order, shape = _parse_header(bytes(view[header_start:data_start]), encoding)

    count = math.prod(shape)
    expected = count * dtype.itemsize
    available = len(view) - data_start
    if available != expected:
        raise ValueError(
            f".npy data is {available} bytes long, but the header "
            f"(dtype {dtype}, shape {shape}) requires {expected}"
        )
    if dtype.itemsize == 0:
        return np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
    flat = np.frombuffer(view, dtype=dtype, count=count, offset=data_start)
    result: npt.NDArray[Any] = (
        flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)
    )
    return result


# Writable memoryviews already claimed (see claim_view), by id; each entry removes itself
# when its view is garbage-collected (so a reused id never finds a stale entry). The lock
# is re-entrant: a collection (and so a callback) can run while it is held.
_CLAIMED: dict[int, weakref.ref[memoryview]] = {}
_CLAIMED_LOCK = threading.RLock()


def claim_view(view: memoryview) -> bool:
    """Claim a writable memoryview: True the first time, False on every later call.

    A claim is made when an array viewing ``view`` is handed to user code, or when the
    Array holding it is kept in ``Context.state`` (after which loads copy).
    """
    key = id(view)
    with _CLAIMED_LOCK:
        known = _CLAIMED.get(key)
        if known is not None and known() is view:
            return False
        _CLAIMED[key] = weakref.ref(view, lambda _ref: _forget(key, _ref))
        return True


def _forget(key: int, ref: weakref.ref[memoryview]) -> None:
    with _CLAIMED_LOCK:
        if _CLAIMED.get(key) is ref:
            del _CLAIMED[key]


def is_immutable_bytes(data: object) -> bool:
    """True for ``bytes`` and read-only memoryviews of ``bytes``: content that cannot change."""
    if isinstance(data, bytes):
        return True
    return isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes)


def load_npy_writable(data: bytes | bytearray | memoryview | NpyPayload) -> npt.NDArray[Any]:
    """Load a ``.npy`` file as a writable array for user code; copy only where needed.

    A writable ``memoryview`` is handed over on its first load (the array is a view of
    it, nothing copied); later loads of the same memoryview object, read-only buffers,
    ``bytearray`` and :class:`NpyPayload` give a fresh copy (see the module docstring).
    A copy keeps the memory order of the file (Fortran-ordered files load
    Fortran-contiguous, as ``numpy.load`` does).

    Raises:
        ValueError: ``data`` is not a well-formed ``.npy`` file.
        TypeError: the header declares an object dtype.

    """
    array = load_npy(data)
    if (
        isinstance(data, memoryview)
        and not data.readonly
        and array.flags.writeable
        and claim_view(data)
    ):
        return array
    copied: npt.NDArray[Any] = array.copy(order="K")
    return copied


def peek_npy(data: bytes | bytearray | memoryview | NpyPayload) -> npt.NDArray[Any]:
    """A read-only view of a ``.npy`` tensor for SDK code that only reads it.

    Never copies the data and never hands a buffer over (see :func:`load_npy_writable`):
    a user's later load of the same tensor is unaffected.

    Raises:
        ValueError: ``data`` is not a well-formed ``.npy`` file.
        TypeError: the header declares an object dtype.

    """
    view: npt.NDArray[Any] = load_npy(data).view()
    view.flags.writeable = False
    return view


HEADER_CACHE = 256
"""Distinct ``.npy`` headers whose parse is kept (a swarm's nodes load the same shapes)."""

_LITERAL_EVAL = threading.Lock()
"""``ast.literal_eval`` one thread at a time: CPython 3.11 keeps the AST converter's
recursion depth per interpreter, not per thread, and two threads parsing at once raised
``SystemError: AST constructor recursion depth mismatch`` (seen in a 2,000-node swarm's
instruction threads and in the reference server's aggregation)."""


@functools.lru_cache(maxsize=HEADER_CACHE)
def _parse_header(raw: bytes, encoding: str) -> tuple[np.dtype[Any], bool, tuple[int, ...]]:
    try:
        text = raw.decode(encoding)
        with _LITERAL_EVAL:
            header = ast.literal_eval(text)
    except (UnicodeDecodeError, SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ValueError(f"malformed .npy header: {exc}") from None
    if not isinstance(header, dict) or set(header) != _EXPECTED_KEYS:
        raise ValueError(
            ".npy header must be a dict with exactly the keys 'descr', 'fortran_order' "
            f"and 'shape', got {header!r}"
        )
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise ValueError(f"malformed .npy header: invalid shape {shape!r}")
    fortran_order = header["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise ValueError(f"malformed .npy header: invalid fortran_order {fortran_order!r}")
    try:
        dtype = npy_format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed .npy header: invalid descr {header['descr']!r}") from exc
    _refuse_object_dtype(dtype, "cannot load .npy data")
    return dtype, fortran_order, shape
