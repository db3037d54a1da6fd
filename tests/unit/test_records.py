"""Array, the three record kinds and RecordSet: type checks, ranges, equality, no copies.

Flower 1.12's semantics (writable arrays, keep_input defaults, state aliasing, lists) are
in ``test_flower_semantics.py``.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def make_array(data: bytes | memoryview = b"abc") -> Array:
    return Array(dtype="", shape=[], stype="numpy.ndarray", data=data)


# ----------------------------------------------------------------------------- Array


def test_from_numpy_follows_flower_semantics() -> None:
    ndarray = np.arange(6, dtype=np.float32).reshape(2, 3)
    array = Array.from_numpy(ndarray)
    assert array.dtype == "float32"
    assert array.shape == [2, 3]
    assert array.stype == "numpy.ndarray"
    assert array.data == npy(ndarray)
    back = array.numpy()
    assert back.dtype == ndarray.dtype and back.tolist() == ndarray.tolist()


def test_from_numpy_refuses_object_dtype() -> None:
    with pytest.raises(TypeError, match="object dtype"):
        Array.from_numpy(np.array(["a", None], dtype=object))


def test_numpy_requires_numpy_stype() -> None:
    array = Array(dtype="float32", shape=[1], stype="torch.Tensor", data=b"x")
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        array.numpy()


def test_numpy_refuses_pickled_objects() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([1, {}], dtype=object), allow_pickle=True)
    array = Array(dtype="object", shape=[2], stype="numpy.ndarray", data=buffer.getvalue())
    with pytest.raises(TypeError, match="object dtype"):
        array.numpy()


def test_numpy_is_a_view_of_memoryview_data_the_first_time() -> None:
    buffer = bytearray(npy(np.zeros(3, dtype=np.int32)))
    array = make_array(memoryview(buffer))
    view = array.numpy()
    assert view.flags.writeable
    view[1] = 42
    # the write went straight into the original buffer: no copy was made
    assert bytes(buffer[-8:-4]) == (42).to_bytes(4, "little")
    # a second numpy() is a copy: it does not alias the first
    again = array.numpy()
    assert again.tolist() == [0, 42, 0] and not np.shares_memory(again, view)


def test_memoryview_data_is_kept_not_copied() -> None:
    payload = bytearray(b"0123456789")
    view = memoryview(payload)[2:6]
    array = make_array(view)
    assert array.data is view
    assert isinstance(array.data, memoryview)


def test_non_byte_memoryview_is_cast_without_copy() -> None:
    ints = np.arange(4, dtype=np.int32)
    array = make_array(memoryview(ints))  # type: ignore[arg-type]
    assert isinstance(array.data, memoryview)
    assert array.data.format == "B" and len(array.data) == 16
    ints[0] = 9
    assert array.data[0] == 9


def test_array_equality_compares_content() -> None:
    assert make_array(b"abc") == make_array(memoryview(bytearray(b"abc")))
    assert make_array(b"abc") != make_array(b"abd")
    assert make_array() != Array(dtype="x", shape=[], stype="numpy.ndarray", data=b"abc")
    assert make_array() != Array(dtype="", shape=[1], stype="numpy.ndarray", data=b"abc")
    assert make_array() != Array(dtype="", shape=[], stype="other", data=b"abc")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dtype": 1, "shape": [], "stype": "", "data": b""}, "dtype"),
        ({"dtype": "", "shape": [], "stype": None, "data": b""}, "stype"),
        ({"dtype": "", "shape": [1.0], "stype": "", "data": b""}, "shape"),
        ({"dtype": "", "shape": [True], "stype": "", "data": b""}, "shape"),
        ({"dtype": "", "shape": "12", "stype": "", "data": b""}, "shape"),
        ({"dtype": "", "shape": [], "stype": "", "data": "text"}, "data"),
        ({"dtype": "", "shape": [], "stype": "", "data": [1, 2]}, "data"),
    ],
)
def test_array_field_types_checked(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(TypeError, match=field):
        Array(**kwargs)


def test_array_repr_does_not_dump_data() -> None:
    text = repr(make_array(b"x" * 10_000))
    assert "10000 bytes" in text and "xxxx" not in text


# ------------------------------------------------------------------- ParametersRecord


def test_parameters_record_checks_keys_and_values() -> None:
    record = ParametersRecord()
    with pytest.raises(TypeError, match=r"'w'.*must be Array, got bytes"):
        record["w"] = b"raw"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="keys must be str"):
        record[0] = make_array()  # type: ignore[index]
    with pytest.raises(TypeError, match="'bad'"):
        ParametersRecord({"ok": make_array(), "bad": 1})  # type: ignore[dict-item]


def test_parameters_record_keeps_order_and_equality_is_order_sensitive() -> None:
    a, b = make_array(b"a"), make_array(b"b")
    record = ParametersRecord({"z": a, "a": b})
    assert list(record) == ["z", "a"]
    assert record == ParametersRecord({"z": a, "a": b}, keep_input=True)
    assert record != ParametersRecord({"a": b, "z": a}, keep_input=True)
    assert record["z"] is a  # stored, not copied


def test_parameters_record_keep_input_false_empties_input() -> None:
    source = {"0": make_array(), "1": make_array()}
    record = ParametersRecord(source, keep_input=False)
    assert source == {}
    assert list(record) == ["0", "1"]


# ---------------------------------------------------------------------- MetricsRecord


@pytest.mark.parametrize(
    "value", [0, -5, 2.5, [1, 2, 3], [0.5, 1.5], [], INT64_MIN, UINT64_MAX, [UINT64_MAX, 0]]
)
def test_metrics_record_accepts_valid_values(value: Any) -> None:
    record = MetricsRecord({"m": value})
    assert record["m"] == value


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (True, "bool"),
        ("0.9", "str"),
        (b"x", "bytes"),
        (None, "NoneType"),
        ((1, 2), "tuple"),
        ([True, False], "list[bool]"),
        (["a"], "list[str]"),
        (np.float32(1.0), "float32"),
        (np.int64(3), "int64"),
        ({"a": 1}, "dict"),
    ],
)
def test_metrics_record_rejects_invalid_values(value: Any, got: str) -> None:
    with pytest.raises(TypeError) as info:
        MetricsRecord({"accuracy": value})
    message = str(info.value)
    assert "'accuracy'" in message
    assert "int, float, list[int] or list[float]" in message
    assert got in message


def test_metrics_record_rejects_mixed_lists() -> None:
    with pytest.raises(TypeError, match=r"'xs'.*one type"):
        MetricsRecord({"xs": [1, 2.0]})


@pytest.mark.parametrize("value", [UINT64_MAX + 1, INT64_MIN - 1, [1, 2**64], [-(2**63) - 1]])
def test_metrics_record_int_range(value: Any) -> None:
    with pytest.raises(ValueError, match="'big'"):
        MetricsRecord({"big": value})


def test_int_list_must_fit_one_wire_type() -> None:
    with pytest.raises(ValueError, match="'mixed'"):
        ConfigsRecord({"mixed": [-1, 2**63]})
    assert ConfigsRecord({"ok": [0, 2**63]})["ok"] == [0, 2**63]


def test_metrics_record_setitem_update_setdefault_are_checked() -> None:
    record = MetricsRecord()
    with pytest.raises(TypeError, match="'flag'"):
        record["flag"] = True
    with pytest.raises(TypeError, match="'s'"):
        record.update({"ok": 1, "s": "no"})  # type: ignore[dict-item]
    assert record["ok"] == 1  # entries before the bad one were stored
    with pytest.raises(TypeError, match="'d'"):
        record.setdefault("d", "x")  # type: ignore[arg-type]
    assert "d" not in record
    with pytest.raises(TypeError, match="keys must be str"):
        record[1] = 1  # type: ignore[index]


def test_float_subclass_normalized_and_lists_copied() -> None:
    values = [1.0, 2.0]
    record = MetricsRecord({"loss": np.float64(0.25), "xs": values})
    assert type(record["loss"]) is float and record["loss"] == 0.25
    values.append(3.0)
    assert record["xs"] == [1.0, 2.0]


def test_metrics_record_keep_input_false() -> None:
    source: dict[str, Any] = {"a": 1, "b": 2.0}
    record = MetricsRecord(source, keep_input=False)
    assert source == {} and dict(record) == {"a": 1, "b": 2.0}


# ---------------------------------------------------------------------- ConfigsRecord


@pytest.mark.parametrize(
    "value",
    [1, 1.5, "s", b"b", True, [1], [1.0], ["a", "b"], [b"x"], [True, False], [], UINT64_MAX],
)
def test_configs_record_accepts_valid_values(value: Any) -> None:
    assert ConfigsRecord({"c": value})["c"] == value


@pytest.mark.parametrize(
    "value", [None, (1,), {"a": 1}, bytearray(b"x"), [True, 1], [1, "a"], [[1]], np.int32(1)]
)
def test_configs_record_rejects_invalid_values(value: Any) -> None:
    with pytest.raises(TypeError) as info:
        ConfigsRecord({"lr": value})
    assert "'lr'" in str(info.value)
    assert "int, float, str, bytes, bool or a list of one of those types" in str(info.value)


def test_configs_record_int_range() -> None:
    with pytest.raises(ValueError, match="'n'"):
        ConfigsRecord({"n": 2**64})


# ------------------------------------------------------------------------- equality


def test_record_equality_is_type_strict() -> None:
    assert MetricsRecord({"a": 1}) == MetricsRecord({"a": 1})
    assert MetricsRecord({"a": 1}) != MetricsRecord({"a": 1.0})
    assert ConfigsRecord({"a": 1}) != ConfigsRecord({"a": True})
    assert ConfigsRecord({"a": [1]}) != ConfigsRecord({"a": [1.0]})
    assert MetricsRecord({"a": 1}) != ConfigsRecord({"a": 1})
    assert MetricsRecord({"a": 1}) != MetricsRecord({"a": 1, "b": 2})
    assert MetricsRecord({"x": math.nan}) == MetricsRecord({"x": math.nan})


scalar = st.one_of(
    st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.floats(),
    st.text(),
    st.binary(),
    st.booleans(),
)
config_value = st.one_of(
    scalar,
    st.lists(st.integers(min_value=INT64_MIN, max_value=2**63 - 1)),
    st.lists(st.floats()),
    st.lists(st.text()),
    st.lists(st.binary()),
    st.lists(st.booleans()),
)


@given(st.dictionaries(st.text(), config_value))
def test_configs_record_accepts_generated_values(values: dict[str, Any]) -> None:
    record = ConfigsRecord(values)
    assert list(record) == list(values)
    assert record == ConfigsRecord(dict(record))
    for key, value in values.items():
        assert record[key] is not value or not isinstance(value, list)


# -------------------------------------------------------------------------- RecordSet


def test_recordset_sections_are_type_checked() -> None:
    recordset = RecordSet()
    recordset.parameters_records["p"] = ParametersRecord()
    recordset.metrics_records["m"] = MetricsRecord({"a": 1})
    recordset.configs_records["c"] = ConfigsRecord({"b": "x"})
    with pytest.raises(TypeError, match=r"'wrong'.*ParametersRecord.*ConfigsRecord"):
        recordset.parameters_records["wrong"] = ConfigsRecord()  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"'x'.*MetricsRecord"):
        recordset.metrics_records["x"] = {"a": 1}  # type: ignore[assignment]
    with pytest.raises(TypeError, match="keys must be str"):
        recordset.configs_records[3] = ConfigsRecord()  # type: ignore[index]
    with pytest.raises(TypeError, match="'bad'"):
        RecordSet(configs_records={"bad": MetricsRecord()})  # type: ignore[dict-item]


def test_recordset_holds_records_without_copying_them() -> None:
    params = ParametersRecord({"0": make_array()})
    source = {"fitins.parameters": params}
    recordset = RecordSet(parameters_records=source)
    assert recordset.parameters_records["fitins.parameters"] is params
    source.clear()  # the mapping itself was copied
    assert "fitins.parameters" in recordset.parameters_records


def test_recordset_equality() -> None:
    def build() -> RecordSet:
        return RecordSet(
            parameters_records={"p": ParametersRecord({"0": make_array(b"x")})},
            metrics_records={"m": MetricsRecord({"n": 3})},
            configs_records={"c": ConfigsRecord({"s": "v"})},
        )

    assert build() == build()
    other = build()
    other.metrics_records["m"]["n"] = 4
    assert build() != other
    other = build()
    del other.configs_records["c"]
    assert build() != other
    assert RecordSet() == RecordSet()
    assert RecordSet() != "RecordSet()"
