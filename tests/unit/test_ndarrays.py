"""NumPy ⇄ .npy bytes ⇄ Parameters: byte-exactness, no copies, no pickle."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flwr_sdk.common._npy import load_npy
from flwr_sdk.common.legacy_types import Parameters
from flwr_sdk.common.ndarrays import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)


def numpy_save(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes = b"", version: bytes = b"\x01\x00") -> bytes:
    raw = header.encode("latin1")
    return b"\x93NUMPY" + version + len(raw).to_bytes(2, "little") + raw + data


ANY_ENDIAN = "?"
dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness=ANY_ENDIAN),
    hnp.unsigned_integer_dtypes(endianness=ANY_ENDIAN),
    hnp.floating_dtypes(endianness=ANY_ENDIAN),
    hnp.complex_number_dtypes(endianness=ANY_ENDIAN),
    hnp.datetime64_dtypes(endianness=ANY_ENDIAN),
    hnp.timedelta64_dtypes(endianness=ANY_ENDIAN),
    hnp.byte_string_dtypes(endianness=ANY_ENDIAN, min_len=1, max_len=4),
    hnp.unicode_string_dtypes(endianness=ANY_ENDIAN, min_len=1, max_len=4),
)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
arrays = hnp.arrays(dtype=dtypes, shape=shapes)


def assert_same_array(loaded: Any, original: Any) -> None:
    assert loaded.dtype == original.dtype
    assert loaded.shape == original.shape
    assert loaded.tobytes() == original.tobytes()


@settings(max_examples=300, deadline=None)
@given(arrays)
def test_bytes_equal_numpy_save_and_round_trip(array: Any) -> None:
    data = ndarray_to_bytes(array)
    assert data == numpy_save(array)
    assert isinstance(data, bytes)
    assert_same_array(bytes_to_ndarray(data), array)
    # numpy's own loader agrees with our header parser
    assert_same_array(np.load(io.BytesIO(data), allow_pickle=False), array)


@settings(max_examples=150, deadline=None)
@given(arrays, st.sampled_from(["fortran", "transposed", "strided", "reversed"]))
def test_non_c_contiguous_layouts(array: Any, layout: str) -> None:
    if layout == "fortran":
        view = np.asfortranarray(array)
    elif layout == "transposed":
        view = array.T
    elif layout == "strided":
        view = array[..., ::2] if array.ndim else array
    else:
        view = array[::-1] if array.ndim else array
    data = ndarray_to_bytes(view)
    assert data == numpy_save(view)
    loaded = bytes_to_ndarray(data)
    # tobytes() serializes logical (C) order, so this compares element by element
    assert_same_array(loaded, view)


def test_fortran_order_header_and_layout() -> None:
    array = np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3))
    data = ndarray_to_bytes(array)
    assert b"'fortran_order': True" in data[:128]
    # data section is column-major
    assert data[128:] == np.array([0, 3, 1, 4, 2, 5], dtype="<i4").tobytes()
    loaded = bytes_to_ndarray(data)
    assert loaded.flags.f_contiguous and not loaded.flags.c_contiguous
    assert loaded.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_documented_header_example() -> None:
    data = ndarray_to_bytes(np.zeros((3, 2), dtype=np.float32))
    assert data[:8] == b"\x93NUMPY\x01\x00"
    header_len = int.from_bytes(data[8:10], "little")
    assert 10 + header_len == 128
    assert data[10:128].startswith(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }")
    assert data[127:128] == b"\n"
    assert len(data) == 128 + 24


def test_zero_d_and_empty_arrays() -> None:
    scalar = np.array(3.5, dtype=">f8")
    loaded = bytes_to_ndarray(ndarray_to_bytes(scalar))
    assert loaded.shape == () and loaded.dtype == np.dtype(">f8") and float(loaded) == 3.5
    empty = np.zeros((0, 3), dtype=np.int16)
    data = ndarray_to_bytes(empty)
    assert data == numpy_save(empty)
    assert bytes_to_ndarray(data).shape == (0, 3)


def test_big_endian_values_preserved() -> None:
    array = np.array([1, 256, -2], dtype=">i4")
    loaded = bytes_to_ndarray(ndarray_to_bytes(array))
    assert loaded.dtype.byteorder == ">"
    assert loaded.tolist() == [1, 256, -2]


def test_structured_dtype_round_trip() -> None:
    array = np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "<i4"), ("b", ">f8")])
    data = ndarray_to_bytes(array)
    assert data == numpy_save(array)
    assert_same_array(bytes_to_ndarray(data), array)


def test_loader_does_not_copy() -> None:
    buffer = bytearray(ndarray_to_bytes(np.arange(4, dtype=np.int64)))
    loaded = bytes_to_ndarray(memoryview(buffer))
    assert loaded.flags.writeable
    # the array is a view of the buffer: a change to the buffer shows in the array
    buffer[-8:] = (99).to_bytes(8, "little")
    assert loaded.tolist() == [0, 1, 2, 99]
    loaded[0] = 7
    assert int.from_bytes(buffer[-32:-24], "little") == 7


def test_loader_from_bytes_is_a_writable_copy() -> None:
    data = ndarray_to_bytes(np.arange(4, dtype=np.float32))
    loaded = bytes_to_ndarray(data)
    assert loaded.flags.writeable and loaded.flags.owndata
    loaded[0] = 9.0
    assert bytes_to_ndarray(data).tolist() == [0.0, 1.0, 2.0, 3.0]  # bytes untouched


def test_object_dtype_refused_on_write() -> None:
    with pytest.raises(TypeError, match="object dtype"):
        ndarray_to_bytes(np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(TypeError, match="object dtype"):
        ndarray_to_bytes(np.zeros(2, dtype=[("x", "<i4"), ("y", "O")]))


def test_object_dtype_refused_on_read() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match="object dtype"):
        bytes_to_ndarray(buffer.getvalue())


def test_non_array_refused() -> None:
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        ndarray_to_bytes("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        ndarray_to_bytes([1, "a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object dtype"):
        ndarray_to_bytes(np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="rectangular"):
        ndarray_to_bytes([[1], [2, 3]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes or memoryview"):
        bytes_to_ndarray("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "magic"),
        (b"\x93NUMPZ\x01\x00\x00\x00", "magic"),
        (b"\x93NUMPY\x09\x00\x00\x00", "version"),
        (npy_with_header("[1, 2]\n"), "keys"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False}\n"), "keys"),
        (
            npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n"),
            "keys",
        ),
        (npy_with_header("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}\n"), "fortran"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n"), "shape"),
        (npy_with_header("{'descr': 'zz9', 'fortran_order': False, 'shape': (1,)}\n"), "descr"),
        (npy_with_header("{'descr': __import__('os')}\n"), "header"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n"), "bytes"),
        (
            npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n", b"12345"),
            "bytes",
        ),
    ],
)
def test_malformed_npy_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bytes_to_ndarray(data)


def test_truncated_real_file_rejected() -> None:
    data = ndarray_to_bytes(np.arange(10, dtype=np.float64))
    with pytest.raises(ValueError):
        bytes_to_ndarray(data[:-1])
    with pytest.raises(ValueError):
        bytes_to_ndarray(data[:50])


def test_oversized_header_rejected_before_parsing() -> None:
    data = b"\x93NUMPY\x02\x00" + (50_000).to_bytes(4, "little") + b" " * 50_000
    with pytest.raises(ValueError, match="header"):
        load_npy(data)


def test_format_version_2_is_read() -> None:
    array = np.arange(5, dtype=np.uint8)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=(2, 0))
    assert buffer.getvalue()[6:8] == b"\x02\x00"
    assert bytes_to_ndarray(buffer.getvalue()).tolist() == [0, 1, 2, 3, 4]


def test_multidimensional_memoryview_is_accepted() -> None:
    data = ndarray_to_bytes(np.arange(3, dtype=np.int8))
    view = memoryview(data).cast("B", shape=[1, len(data)])
    assert view.ndim == 2
    assert bytes_to_ndarray(view).tolist() == [0, 1, 2]


def test_ndarrays_to_parameters_and_back() -> None:
    ndarrays = [np.arange(6, dtype=np.float32).reshape(3, 2), np.array([True, False])]
    parameters = ndarrays_to_parameters(ndarrays)
    assert parameters.tensor_type == "numpy.ndarray"
    assert parameters.tensors == [numpy_save(a) for a in ndarrays]
    back = parameters_to_ndarrays(parameters)
    assert len(back) == 2
    for loaded, original in zip(back, ndarrays, strict=True):
        assert_same_array(loaded, original)


def test_parameters_to_ndarrays_accepts_memoryviews() -> None:
    data = ndarray_to_bytes(np.arange(3, dtype=np.int32))
    back = parameters_to_ndarrays(Parameters(tensors=[memoryview(data)], tensor_type="x"))
    assert back[0].tolist() == [0, 1, 2]


def test_ndarrays_to_parameters_validates_input() -> None:
    with pytest.raises(TypeError, match=r"list of numpy\.ndarray"):
        ndarrays_to_parameters(np.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ndarrays\[1\]"):
        ndarrays_to_parameters([np.zeros(3), ["a", "b"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"ndarrays\[0\]"):
        ndarrays_to_parameters([None])  # type: ignore[list-item]
    assert ndarrays_to_parameters([]).tensors == []
