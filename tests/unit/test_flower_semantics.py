"""The data model behaves as Flower 1.12's where Flower is sane (issue 13).

* Side by side with the real flwr 1.12.0 (its cached venv, one subprocess): which record
  values are accepted, ``count_bytes``, ``keep_input`` defaults, what
  ``ndarrays_to_parameters`` accepts and the bytes it makes, writable and independent
  arrays, the Context's constructor and writable ``run_config``. The cases where we
  differ on purpose are listed in ``DIFFERENCES`` and checked for our behaviour.
* Property tests: arrays handed to user code are writable and never alias one another
  or a kept ``Context.state``, whatever buffer they come from.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support.flower_env import FlowerEnv

from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common import _npy
from flwr_sdk.common._npy import NpyPayload
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_records import EVALUATE_KIND, FIT_KIND
from flwr_sdk.common.legacy_types import EvaluateIns, FitIns, Parameters
from flwr_sdk.common.ndarrays import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)

# Record values, as Python expressions evaluated on both sides (``np`` is numpy).
RECORD_VALUES = [
    "1",
    "-7",
    "2.5",
    "True",
    "'abc'",
    "'ü'",
    "b'xy'",
    "[1, 2, 3]",
    "[1.0, 2.5]",
    "[True, False]",
    "['ab', 'c']",
    "[b'x', b'yz']",
    "[]",
    "[1, 2.0]",
    "[True, 1]",
    "[1, 'a']",
    "[[1]]",
    "(1, 2)",
    "None",
    "{'a': 1}",
    "np.float64(1.5)",
    "[np.float64(1.5)]",
    "np.int64(3)",
    "np.float32(2.0)",
    "np.array([1, 2])",
    "2**63",
    "2**64",
    "-(2**63) - 1",
    "[2**63, -1]",
]

# Values where ``ndarrays_to_parameters`` expects an array.
ARRAY_LIKES = [
    "np.arange(6, dtype=np.float32).reshape(2, 3)",
    "np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))",
    "1.0",
    "3",
    "True",
    "[1, 2]",
    "[[1.5, 2.0], [3.0, 4.0]]",
    "(1, 2)",
    "np.float32(2.0)",
    "[1, 'a']",
    "'abc'",
    "None",
    "{'a': 1}",
    "[[1], [2, 3]]",
]

# What a NumPyClient's fit / evaluate returns, carried to a RecordSet as on grpc-rere.
FIT_RETURNS = [
    "([np.ones(2)], 1, {})",
    "((np.ones(2),), 1, {})",
    "([np.ones(2)], np.int64(1), {})",
    "([[1.0, 2.0]], 1, {})",
    "([np.ones(2)], 1, {'l': [1, 2]})",
    "([np.ones(2)], 1, {'n': np.float64(1)})",
    "([np.ones(2)], 1, {'n': np.float32(1)})",
    "([np.ones(2)], 1, {'n': np.int64(1)})",
    "([np.ones(2)], 1.0, {})",
    "([np.ones(2)], True, {})",
    "(np.ones(2), 1, {})",
    "([np.ones(2)], 1)",
]
EVALUATE_RETURNS = [
    "(1.0, 1, {})",
    "(np.float64(0.5), 1, {})",
    "(1, 1, {})",
    "(np.float32(0.5), 1, {})",
    "('0.5', 1, {})",
    "(0.5, 1, {'l': [0.1, 0.2]})",
    "(0.5, 1, None)",
]
# Config values the server sends in a FitIns, read back into the legacy dict.
INS_CONFIGS = ["{'lr': 0.1, 'name': 'x', 'flag': True, 'raw': b'x'}", "{'lrs': [0.1, 0.2]}"]

# Record comparisons, "left == right" evaluated on both sides.
EQUALITIES = [
    "ConfigsRecord({'a': 1, 'b': 'x'}) == {'a': 1, 'b': 'x'}",
    "{'a': 1} == ConfigsRecord({'a': 1})",
    "MetricsRecord({'a': 0.5}) == MetricsRecord({'a': 0.5})",
    "MetricsRecord({'a': [1, 2]}) == {'a': [1, 2]}",
    "ConfigsRecord({'a': 1}) == ConfigsRecord({'a': 2})",
    "ConfigsRecord({'a': 1}) == {'a': 1.0}",
    "ConfigsRecord({'a': True}) == ConfigsRecord({'a': 1})",
    "ParametersRecord({'w': Array('', [], 'x', b'a')}, keep_input=True)"
    " == {'w': Array('', [], 'x', b'a')}",
    "RecordSet() == RecordSet()",
]

# (what, case) pairs where we differ from Flower 1.12 on purpose; each is asserted below.
DIFFERENCES = {
    # Out of the 64-bit range: Flower accepts the value and fails when serializing the
    # message; we refuse it when it is stored (ValueError).
    ("configs", "2**64"),
    ("metrics", "2**64"),
    ("configs", "-(2**63) - 1"),
    ("metrics", "-(2**63) - 1"),
    ("configs", "[2**63, -1]"),
    ("metrics", "[2**63, -1]"),
    *(
        (f"{kind}_bytes", expr)
        for kind in ("configs", "metrics")
        for expr in ("2**64", "-(2**63) - 1", "[2**63, -1]")
    ),
    # Flower's ConfigsRecord.count_bytes raises IndexError on an empty list; ours counts 0.
    ("configs_bytes", "[]"),
    # numpy silently turns [1, 'a'] into strings; a string is not a tensor.
    ("ndarrays", "[1, 'a']"),
    ("ndarrays", "'abc'"),
    # Values NumPy can only store as objects: Flower's numpy.save raises ValueError, we
    # raise TypeError (the value's type is wrong), as for every object dtype.
    ("ndarrays", "None"),
    ("ndarrays", "{'a': 1}"),
    # NumPyClient returns: we also take a tuple of arrays, a NumPy integer num_examples,
    # an int or NumPy float loss; each converts without loss.
    ("fit", "((np.ones(2),), 1, {})"),
    ("fit", "([np.ones(2)], np.int64(1), {})"),
    ("evaluate", "(1, 1, {})"),
    ("evaluate", "(np.float32(0.5), 1, {})"),
    # Records compare values type-strictly: 1 and 1.0 (or True) are different values on
    # the wire (sint64, double, bool), so records that compare equal serialize equally.
    ("equal", "ConfigsRecord({'a': 1}) == {'a': 1.0}"),
    ("equal", "ConfigsRecord({'a': True}) == ConfigsRecord({'a': 1})"),
}

FLOWER_SIDE = r"""
import json, sys
import numpy as np
from flwr.common import (
    Array, ConfigsRecord, Context, MetricsRecord, ParametersRecord, RecordSet,
    array_from_numpy, ndarrays_to_parameters, parameters_to_ndarrays,
)

cases = json.load(sys.stdin)
out = {"configs": {}, "metrics": {}, "configs_bytes": {}, "metrics_bytes": {}, "ndarrays": {}}

def outcome(fn):
    try:
        return ["ok", fn()]
    except Exception as exc:
        return ["error", type(exc).__name__]

for expr in cases["records"]:
    for name, cls in (("configs", ConfigsRecord), ("metrics", MetricsRecord)):
        built = outcome(lambda: (cls({"key": eval(expr)}), None)[1])
        out[name][expr] = built[0]
        if built[0] == "ok":
            out[name + "_bytes"][expr] = outcome(lambda: cls({"key": eval(expr)}).count_bytes())

for expr in cases["arrays"]:
    out["ndarrays"][expr] = outcome(lambda: ndarrays_to_parameters([eval(expr)]).tensors[0].hex())

def emptied(cls, value):
    source = {"k": value}
    cls(source)
    return source == {}

out["keep_input_emptied"] = {
    "parameters": emptied(ParametersRecord, array_from_numpy(np.ones(2))),
    "configs": emptied(ConfigsRecord, 1),
    "metrics": emptied(MetricsRecord, 1),
}
out["parameters_bytes"] = ParametersRecord(
    {"wxyz": Array("", [], "x", b"abc")}, keep_input=True
).count_bytes()

params = ndarrays_to_parameters([np.arange(4.0), np.asfortranarray(np.ones((2, 3)))])
first, fortran = parameters_to_ndarrays(params)
again = parameters_to_ndarrays(params)[0]
first += 1
array = array_from_numpy(np.arange(3.0))
view = array.numpy()
view -= 1
out["arrays"] = {
    "writable": bool(first.flags.writeable and view.flags.writeable),
    "independent": again.tolist() == [0.0, 1.0, 2.0, 3.0]
    and array.numpy().tolist() == [0.0, 1.0, 2.0],
    "fortran_kept": bool(fortran.flags.f_contiguous and not fortran.flags.c_contiguous),
}

state = RecordSet()
context = Context(5, {"partition-id": 1}, state, {"lr": 0.1})
context.run_config["lr"] = 0.2
context.run_config["new"] = "x"
out["context"] = {
    "fields": [context.node_id, context.node_config, context.state is state, context.run_config],
}
context.run_config = {"replaced": 1}
out["context"]["replaced"] = context.run_config
import dataclasses
out["context"]["dataclass_fields"] = [f.name for f in dataclasses.fields(Context)][:4]
from flwr.client import NumPyClient
from flwr.common import EvaluateIns, FitIns
from flwr.common.recordset_compat import (
    evaluateres_to_recordset, fitins_to_recordset, fitres_to_recordset, recordset_to_fitins,
)

class Returns(NumPyClient):
    def __init__(self, result):
        self.result = result
    def fit(self, parameters, config):
        return self.result
    def evaluate(self, parameters, config):
        return self.result

fit_ins = FitIns(ndarrays_to_parameters([np.ones(2)]), {})
evaluate_ins = EvaluateIns(fit_ins.parameters, {})
out["fit"] = {
    expr: outcome(lambda: (fitres_to_recordset(
        Returns(eval(expr)).to_client().fit(fit_ins), True), None)[1])[0]
    for expr in cases["fit"]
}
out["evaluate"] = {
    expr: outcome(lambda: (evaluateres_to_recordset(
        Returns(eval(expr)).to_client().evaluate(evaluate_ins)), None)[1])[0]
    for expr in cases["evaluate"]
}
out["equal"] = {expr: outcome(lambda: eval(expr)) for expr in cases["equal"]}
out["ins_config"] = {
    expr: outcome(lambda: recordset_to_fitins(
        fitins_to_recordset(FitIns(fit_ins.parameters, eval(expr)), True), True
    ).config == eval(expr))
    for expr in cases["ins_config"]
}
print(json.dumps(out))
"""


_NAMES = {
    "np": np,
    "Array": Array,
    "ConfigsRecord": ConfigsRecord,
    "MetricsRecord": MetricsRecord,
    "ParametersRecord": ParametersRecord,
    "RecordSet": RecordSet,
}


def _eval(expr: str) -> Any:
    return eval(expr, dict(_NAMES))  # our own literal test cases, never external input


def _outcome(fn: Callable[[], Any]) -> list[Any]:
    try:
        return ["ok", fn()]
    except Exception as exc:
        return ["error", type(exc).__name__]


def _emptied(cls: Callable[[dict[str, Any]], object], value: object) -> bool:
    source = {"k": value}
    cls(source)
    return source == {}


def ours() -> dict[str, Any]:
    """The same observations as FLOWER_SIDE, made on flwr_sdk."""
    out: dict[str, Any] = {
        "configs": {},
        "metrics": {},
        "configs_bytes": {},
        "metrics_bytes": {},
        "ndarrays": {},
    }
    record_classes: tuple[tuple[str, Any], ...] = (
        ("configs", ConfigsRecord),
        ("metrics", MetricsRecord),
    )
    for expr in RECORD_VALUES:
        for name, cls in record_classes:
            built = _outcome(lambda cls=cls, expr=expr: (cls({"key": _eval(expr)}), None)[1])
            out[name][expr] = built[0]
            if built[0] == "ok":
                out[name + "_bytes"][expr] = _outcome(
                    lambda cls=cls, expr=expr: cls({"key": _eval(expr)}).count_bytes()
                )
    for expr in ARRAY_LIKES:
        out["ndarrays"][expr] = _outcome(
            lambda expr=expr: bytes(ndarrays_to_parameters([_eval(expr)]).tensors[0]).hex()
        )
    out["keep_input_emptied"] = {
        "parameters": _emptied(ParametersRecord, Array.from_numpy(np.ones(2))),
        "configs": _emptied(ConfigsRecord, 1),
        "metrics": _emptied(MetricsRecord, 1),
    }
    out["parameters_bytes"] = ParametersRecord(
        {"wxyz": Array("", [], "x", b"abc")}, keep_input=True
    ).count_bytes()

    params = ndarrays_to_parameters([np.arange(4.0), np.asfortranarray(np.ones((2, 3)))])
    first, fortran = parameters_to_ndarrays(params)
    again = parameters_to_ndarrays(params)[0]
    first += 1
    array = Array.from_numpy(np.arange(3.0))
    view = array.numpy()
    view -= 1
    out["arrays"] = {
        "writable": bool(first.flags.writeable and view.flags.writeable),
        "independent": again.tolist() == [0.0, 1.0, 2.0, 3.0]
        and array.numpy().tolist() == [0.0, 1.0, 2.0],
        "fortran_kept": bool(fortran.flags.f_contiguous and not fortran.flags.c_contiguous),
    }

    state = RecordSet()
    context = Context(5, {"partition-id": 1}, state, {"lr": 0.1})
    context.run_config["lr"] = 0.2
    context.run_config["new"] = "x"
    out["context"] = {
        "fields": [context.node_id, context.node_config, context.state is state, context.run_config]
    }
    context.run_config = {"replaced": 1}
    out["context"]["replaced"] = context.run_config
    # Flower 1.12's four fields come first; run_id (Flower 1.13+) follows.
    out["context"]["dataclass_fields"] = [f.name for f in dataclasses.fields(Context)][:4]

    fit_ins = FitIns(ndarrays_to_parameters([np.ones(2)]), {})
    evaluate_ins = EvaluateIns(fit_ins.parameters, {})

    def fit(expr: str) -> None:
        res = _Returns(_eval(expr)).to_client().fit(fit_ins)
        FIT_KIND.res_to_recordset(res, keep_input=True)

    def evaluate(expr: str) -> None:
        res = _Returns(_eval(expr)).to_client().evaluate(evaluate_ins)
        EVALUATE_KIND.res_to_recordset(res, keep_input=True)

    def ins_config(expr: str) -> bool:
        content = FIT_KIND.ins_to_recordset(FitIns(fit_ins.parameters, _eval(expr)), True)
        return bool(FIT_KIND.recordset_to_ins(content, True).config == _eval(expr))

    out["fit"] = {e: _outcome(lambda e=e: fit(e))[0] for e in FIT_RETURNS}
    out["evaluate"] = {e: _outcome(lambda e=e: evaluate(e))[0] for e in EVALUATE_RETURNS}
    out["ins_config"] = {e: _outcome(lambda e=e: ins_config(e)) for e in INS_CONFIGS}
    out["equal"] = {e: _outcome(lambda e=e: _eval(e)) for e in EQUALITIES}
    return out


class _Returns(NumPyClient):
    def __init__(self, result: Any) -> None:
        self.result = result

    def fit(self, parameters: Any, config: Any) -> Any:
        return self.result

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return self.result


@pytest.fixture(scope="module")
def flower(flwr_1_12: FlowerEnv) -> dict[str, Any]:
    cases = json.dumps(
        {
            "records": RECORD_VALUES,
            "arrays": ARRAY_LIKES,
            "fit": FIT_RETURNS,
            "evaluate": EVALUATE_RETURNS,
            "ins_config": INS_CONFIGS,
            "equal": EQUALITIES,
        }
    )
    done = flwr_1_12.run(
        [flwr_1_12.python, "-c", FLOWER_SIDE],
        input=cases,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"flwr 1.12.0 side failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _without_differences(section: str, table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if (section, k) not in DIFFERENCES}


@pytest.mark.parametrize(
    "section",
    [
        "configs",
        "metrics",
        "configs_bytes",
        "metrics_bytes",
        "ndarrays",
        "fit",
        "evaluate",
        "equal",
    ],
)
def test_same_as_flower_1_12(flower: dict[str, Any], section: str) -> None:
    mine = ours()
    assert _without_differences(section, mine[section]) == _without_differences(
        section, flower[section]
    )


@pytest.mark.parametrize("section", ["keep_input_emptied", "parameters_bytes", "arrays", "context"])
def test_same_behaviour_as_flower_1_12(flower: dict[str, Any], section: str) -> None:
    assert ours()[section] == flower[section]


def test_the_differences_are_what_we_document(flower: dict[str, Any]) -> None:
    mine = ours()
    for section, expr in sorted(DIFFERENCES):
        assert mine[section].get(expr) != flower[section].get(expr), (section, expr)
    # Out-of-range integers: refused when stored, naming the key.
    for expr in ("2**64", "-(2**63) - 1", "[2**63, -1]"):
        for cls in (ConfigsRecord, MetricsRecord):
            with pytest.raises(ValueError, match="'key'"):
                cls({"key": _eval(expr)})
    assert ConfigsRecord({"key": []}).count_bytes() == 3
    with pytest.raises(TypeError, match=r"ndarrays\[0\]"):
        ndarrays_to_parameters([[1, "a"]])  # type: ignore[list-item]


# ----------------------------------------------------------- keep_input and lists


def test_keep_input_defaults() -> None:
    source = {"w": Array.from_numpy(np.ones(2))}
    record = ParametersRecord(source)
    assert source == {} and list(record) == ["w"]  # taken over, as in Flower 1.12
    kept = {"w": record["w"]}
    assert list(ParametersRecord(kept, keep_input=True)) == ["w"] and list(kept) == ["w"]
    configs, metrics = {"a": 1}, {"m": 0.5}
    ConfigsRecord(configs)
    MetricsRecord(metrics)
    assert configs == {"a": 1} and metrics == {"m": 0.5}
    ConfigsRecord(configs, keep_input=False)
    assert configs == {}


_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOATS = st.floats(allow_nan=False)
_LISTS = st.one_of(
    st.lists(_INT64),
    st.lists(_FLOATS),
    st.lists(st.text()),
    st.lists(st.binary()),
    st.lists(st.booleans()),
)


@given(value=_LISTS)
def test_configs_record_stores_any_one_type_list(value: list[Any]) -> None:
    record = ConfigsRecord({"k": value})
    assert record["k"] == value and record["k"] is not value  # copied on insert
    assert [type(v) for v in record["k"]] == [type(v) for v in value]


@given(value=st.one_of(st.lists(_INT64), st.lists(_FLOATS)))
def test_metrics_record_stores_lists_of_numbers(value: list[Any]) -> None:
    assert MetricsRecord({"k": value})["k"] == value


@given(
    ints=st.lists(_INT64, min_size=1),
    other=st.lists(st.one_of(_FLOATS, st.text(), st.booleans()), min_size=1),
)
def test_mixed_lists_are_refused(ints: list[int], other: list[Any]) -> None:
    # Flower refuses them too; serializing one would need one element type per list.
    with pytest.raises(TypeError, match="one type"):
        ConfigsRecord({"k": [*ints, *other]})


@given(
    value=st.one_of(
        hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=4)),
        hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=4)),
    )
)
def test_lists_of_numbers_serialize_like_flower(value: np.ndarray) -> None:
    as_list = value.tolist()
    expected = io.BytesIO()
    np.save(expected, np.asarray(as_list), allow_pickle=False)
    assert ndarray_to_bytes(as_list) == expected.getvalue()  # type: ignore[arg-type]
    got = parameters_to_ndarrays(ndarrays_to_parameters([as_list]))[0]  # type: ignore[list-item]
    np.testing.assert_array_equal(got, np.asarray(as_list))  # NaN equal to NaN
    assert got.flags.writeable


# ----------------------------------------------------------- writable arrays, no aliasing


def npy_of(array: np.ndarray) -> bytes:
    return ndarray_to_bytes(array)


BUFFER_KINDS: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "read-only view": lambda data: memoryview(data),
    "writable view": lambda data: memoryview(bytearray(data)),
}


@settings(max_examples=50)
@given(
    array=hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int16, np.uint8]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    ),
    kind=st.sampled_from(sorted(BUFFER_KINDS)),
    fortran=st.booleans(),
)
def test_loaded_arrays_are_writable_and_never_alias_each_other(
    array: np.ndarray, kind: str, fortran: bool
) -> None:
    if fortran:
        array = np.asfortranarray(array)
    data = BUFFER_KINDS[kind](npy_of(array))
    tensor = Array(
        dtype=str(array.dtype), shape=list(array.shape), stype="numpy.ndarray", data=data
    )
    first = tensor.numpy()
    second = bytes_to_ndarray(tensor.data)
    third = parameters_to_ndarrays(Parameters(tensors=[tensor.data], tensor_type=""))[0]
    loaded = [first, second, third]
    fortran_only = array.flags.f_contiguous and not array.flags.c_contiguous
    for got in loaded:
        assert got.flags.writeable
        np.testing.assert_array_equal(got, array)  # NaN compares equal here
        if fortran_only:
            assert got.flags.f_contiguous  # kept as numpy.load gives it
    for i, a in enumerate(loaded):
        for b in loaded[i + 1 :]:
            assert not np.shares_memory(a, b)
    # Only a writable memoryview is handed over without a copy, and only once.
    assert np.shares_memory(first, np.frombuffer(data, np.uint8)) == (
        kind == "writable view" and array.size > 0
    )


def test_a_mod_reading_parameters_before_the_client_keeps_its_copy() -> None:
    # Flower's clipping mods read the instruction's parameters, call the client (which
    # trains in place), then compare: the two reads must not alias.
    weights = np.arange(5, dtype=np.float64)
    parameters = Parameters(tensors=[memoryview(bytearray(npy_of(weights)))], tensor_type="")
    seen_by_mod = parameters_to_ndarrays(parameters)
    seen_by_client = parameters_to_ndarrays(parameters)
    seen_by_client[0] *= 10
    np.testing.assert_array_equal(seen_by_mod[0], weights)


def test_payload_arrays_are_copied_for_user_code() -> None:
    mine = np.ones(4)
    payload = ndarrays_to_parameters([mine], zero_copy=True).tensors[0]
    assert isinstance(payload, NpyPayload)
    got = bytes_to_ndarray(payload)
    got += 1  # e.g. a mod clipping the reply in place must not change the user's model
    np.testing.assert_array_equal(mine, np.ones(4))


def _received(array: np.ndarray) -> Array:
    """An Array as decoded from a large received message (a writable memoryview)."""
    data = memoryview(bytearray(npy_of(array)))
    return Array(dtype=str(array.dtype), shape=list(array.shape), stype="numpy.ndarray", data=data)


@pytest.mark.parametrize(
    "store",
    ["record into state", "array into state record", "state replaced", "state at construction"],
)
def test_arrays_in_state_are_not_aliased(store: str) -> None:
    weights = np.arange(6, dtype=np.float32)
    fresh, lent, payload_array = _received(weights), _received(weights), np.ones(3)
    handed_out = lent.numpy()  # a user got this array before the Array entered the state
    payload = Array(
        dtype="float64", shape=[3], stype="numpy.ndarray", data=NpyPayload(payload_array)
    )
    arrays = {"fresh": fresh, "lent": lent, "payload": payload}
    if store == "state at construction":
        context = Context(1, {}, RecordSet({"p": ParametersRecord(arrays)}), {})
    else:
        context = Context(1, {}, RecordSet(), {})
        if store == "record into state":
            context.state.parameters_records["p"] = ParametersRecord(arrays)
        elif store == "array into state record":
            context.state.parameters_records["p"] = ParametersRecord()
            for key, value in arrays.items():
                context.state.parameters_records["p"][key] = value
        else:
            context.state = RecordSet({"p": ParametersRecord(arrays)})
    record = context.state.parameters_records["p"]

    handed_out += 100  # earlier arrays cannot change the state ...
    payload_array += 100
    np.testing.assert_array_equal(record["lent"].numpy(), weights)
    np.testing.assert_array_equal(record["payload"].numpy(), np.ones(3))
    for key in arrays:  # ... and arrays read from it are copies
        got = record[key].numpy()
        got += 1
        assert got.flags.writeable and not np.array_equal(got, record[key].numpy())
    # A received Array nobody had loaded is kept without a copy, read-only.
    assert isinstance(fresh.data, memoryview) and fresh.data.readonly


def test_state_record_arrays_added_later_are_protected_too() -> None:
    context = Context(1, {}, RecordSet(), {})
    kept = ParametersRecord()
    context.state.parameters_records["kept"] = kept
    late = _received(np.zeros(3))
    view = late.numpy()
    kept["late"] = late  # stored after the record entered the state
    view += 5
    np.testing.assert_array_equal(kept["late"].numpy(), np.zeros(3))


def test_claims_are_forgotten_with_their_views() -> None:
    before = len(_npy._CLAIMED)
    for _ in range(100):
        bytes_to_ndarray(memoryview(bytearray(npy_of(np.zeros(2)))))
    gc.collect()
    assert len(_npy._CLAIMED) <= before + 1


def test_run_config_changes_persist_for_the_run() -> None:
    context = Context(1, {}, RecordSet(), {"lr": 0.1})
    context.run_config["lr"] *= 0.5  # e.g. a schedule kept across rounds
    assert context.run_config == {"lr": 0.05}


@settings(max_examples=60)
@given(
    loads_before=st.integers(min_value=0, max_value=3),
    loads_after=st.integers(min_value=0, max_value=3),
    via_legacy=st.booleans(),
)
def test_state_content_is_what_it_was_when_stored(
    loads_before: int, loads_after: int, via_legacy: bool
) -> None:
    """Whatever user code does to arrays it loaded, the state keeps what was stored."""
    weights = np.arange(8, dtype=np.float64)
    array = _received(weights)

    def load() -> np.ndarray:
        if via_legacy:
            return parameters_to_ndarrays(Parameters(tensors=[array.data], tensor_type=""))[0]
        return array.numpy()

    loaded = [load() for _ in range(loads_before)]
    for got in loaded:
        got += 1  # each is the user's own: changes stay in it
    stored = _npy.load_npy(array.data).copy()  # what the Array holds entering the state
    context = Context(1, {}, RecordSet(), {})
    context.state.parameters_records["p"] = ParametersRecord({"w": array})
    loaded += [load() for _ in range(loads_after)]
    for got in loaded:
        got *= -3
    np.testing.assert_array_equal(context.state.parameters_records["p"]["w"].numpy(), stored)
    for i, a in enumerate(loaded):
        for b in loaded[i + 1 :]:
            assert not np.shares_memory(a, b)


def test_concurrent_loads_hand_the_buffer_over_once() -> None:
    view = memoryview(bytearray(npy_of(np.zeros(1000))))
    barrier = threading.Barrier(4)
    got: list[np.ndarray] = []

    def load() -> None:
        barrier.wait()
        got.append(bytes_to_ndarray(view))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    whole = np.frombuffer(view, np.uint8)
    assert sum(np.shares_memory(a, whole) for a in got) == 1


def test_sdk_readers_peek_without_taking_the_buffer() -> None:
    view = memoryview(bytearray(npy_of(np.arange(6.0))))
    peeked = _npy.peek_npy(view)  # e.g. a size-logging mod, before the client runs
    assert not peeked.flags.writeable and peeked.size == 6
    whole = np.frombuffer(view, np.uint8)
    assert np.shares_memory(peeked, whole)
    users = bytes_to_ndarray(view)  # the user still gets the buffer, without a copy
    assert users.flags.writeable and np.shares_memory(users, whole)
    mine = np.ones(3)
    assert np.shares_memory(_npy.peek_npy(NpyPayload(mine)), mine) and mine.flags.writeable
