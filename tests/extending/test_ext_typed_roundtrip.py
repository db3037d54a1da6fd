"""Maps and well-known types: typed → RecordSet → wire → RecordSet → typed is the identity.

The schema is tests/extending/proto/exttest/v1/typed.proto: ``Maps`` (every key type
protobuf allows, scalar / enum / message / NdArray values), ``WellKnown`` (Timestamp,
Duration, the wrappers, Struct / Value / ListValue; singular, repeated, map values) and
``Job`` (issue 14's done-when 1: a map of scalars, of messages and of arrays, a
Timestamp, a oneof and a nested repeated message). "Wire" is our 1.12 codec of Flower's
RecordSet proto. The last test crosses to Flower itself: the generated ``flwr_records``
module, in flwr 1.12.0 and 1.15.2 venvs without flwr-sdk, reads our bytes and writes its
own.
"""

from __future__ import annotations

import base64
import datetime
import importlib
import json
import math
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from ext_support import (
    doubles,
    float32s,
    ints,
    ndarrays,
    recordset_from_wire_bytes,
    recordset_to_wire_bytes,
    wire_roundtrip,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.flower_env import FlowerEnv

from flwr_sdk.ext import (
    ConventionError,
    RecordSetDecodeError,
    RecordSetEncodeError,
    from_recordset,
    ndarray_from_numpy,
    to_recordset,
)

UTC = datetime.timezone.utc
DURATION_MAX = datetime.timedelta(seconds=315_576_000_000)
KEY_KINDS = {"m_int32": "int32", "m_int64": "int64", "m_uint32": "uint32",
             "m_uint64": "uint64", "m_sint32": "sint32", "m_sint64": "sint64",
             "m_fixed32": "fixed32", "m_fixed64": "fixed64", "m_sfixed32": "sfixed32",
             "m_sfixed64": "sfixed64"}  # fmt: skip
VALUE_KINDS = {"m_int32": st.text(max_size=4), "m_int64": ints("int64"),
               "m_uint32": st.booleans(), "m_uint64": st.binary(max_size=4),
               "m_sint32": float32s, "m_sint64": ints("sint64"), "m_fixed32": ints("fixed32"),
               "m_fixed64": ints("fixed64"), "m_sfixed32": ints("sfixed32"),
               "m_sfixed64": ints("uint64")}  # fmt: skip


def small_dicts(keys: st.SearchStrategy[Any], values: st.SearchStrategy[Any]) -> Any:
    return st.dictionaries(keys, values, max_size=3)


@pytest.fixture(scope="module")
def wkt(exttest_pb: ModuleType) -> ModuleType:
    """The package's generated ``google.protobuf`` module."""
    return importlib.import_module("exttest_proto.google.protobuf")


def json_values(wkt: ModuleType) -> st.SearchStrategy[Any]:
    """``google.protobuf.Value`` messages of any kind, nested a little."""
    leaves = st.one_of(
        st.just(wkt.Value(null_value=wkt.NullValue(0))),
        st.builds(lambda v: wkt.Value(number_value=v), doubles),
        st.builds(lambda v: wkt.Value(string_value=v), st.text(max_size=5)),
        st.builds(lambda v: wkt.Value(bool_value=v), st.booleans()),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(
                lambda v: wkt.Value(list_value=wkt.ListValue(values=v)),
                st.lists(children, max_size=3),
            ),
            st.builds(
                lambda v: wkt.Value(struct_value=wkt.Struct(fields=v)),
                small_dicts(st.text(max_size=4), children),
            ),
        ),
        max_leaves=6,
    )


def strategies(pb: ModuleType, wkt: ModuleType) -> dict[str, st.SearchStrategy[Any]]:
    points = st.builds(pb.Point, x=doubles, y=doubles, label=st.text(max_size=4))
    colors = st.one_of(st.sampled_from(list(pb.Color)), ints("int32").map(pb.Color))
    maps_fields: dict[str, st.SearchStrategy[Any]] = {
        name: small_dicts(ints(KEY_KINDS[name]), VALUE_KINDS[name]) for name in KEY_KINDS
    }
    maps_fields.update(
        scores=small_dicts(st.text(max_size=6), doubles),
        m_bool=small_dicts(st.booleans(), ints("int32")),
        colors=small_dicts(st.text(max_size=3), colors),
        points=small_dicts(st.text(max_size=3), points),
        arrays=small_dicts(ints("int64"), ndarrays()),
    )
    maps = st.builds(lambda kw: pb.Maps(**kw), st.fixed_dictionaries(maps_fields))
    times = st.datetimes(timezones=st.just(UTC))
    durations = st.timedeltas(min_value=-DURATION_MAX, max_value=DURATION_MAX)
    values = json_values(wkt)
    structs = st.builds(lambda v: wkt.Struct(fields=v), small_dicts(st.text(max_size=4), values))
    lists = st.builds(lambda v: wkt.ListValue(values=v), st.lists(values, max_size=3))
    wrappers = {
        "w_double": doubles, "w_float": float32s, "w_int64": ints("int64"),
        "w_uint64": ints("uint64"), "w_int32": ints("int32"), "w_uint32": ints("uint32"),
        "w_bool": st.booleans(), "w_string": st.text(max_size=4), "w_bytes": st.binary(max_size=4),
    }  # fmt: skip
    wellknown_fields: dict[str, st.SearchStrategy[Any]] = {
        name: st.none() | strategy for name, strategy in wrappers.items()
    }
    wellknown_fields.update(
        at=st.none() | times,
        took=st.none() | durations,
        history=st.lists(times, max_size=2),
        timings=small_dicts(st.text(max_size=3), durations),
        r_int64=st.lists(ints("int64"), max_size=3),
        m_string=small_dicts(st.text(max_size=3), st.text(max_size=3)),
        config=st.none() | structs,
        any_value=st.none() | values,
        items=st.none() | lists,
        structs=st.lists(structs, max_size=2),
        values=small_dicts(st.text(max_size=3), values),
    )
    wellknown = st.builds(lambda kw: pb.WellKnown(**kw), st.fixed_dictionaries(wellknown_fields))
    shapes = st.builds(pb.Shape, name=st.text(max_size=3), points=st.lists(points, max_size=2))
    steps = st.builds(
        pb.JobStep,
        name=st.text(max_size=4),
        path=st.lists(points, max_size=3),
        children=small_dicts(ints("uint32"), maps),
    )
    target = st.one_of(
        st.just({}),
        st.builds(lambda v: {"node": v}, st.text(max_size=4)),
        st.builds(lambda v: {"region": v}, shapes),
        st.builds(lambda v: {"not_before": v}, times),
    )
    job = st.builds(
        lambda kw, member: pb.Job(**kw, **member),
        st.fixed_dictionaries(
            {
                "weights": small_dicts(st.text(max_size=5), doubles),
                "anchors": small_dicts(st.text(max_size=5), points),
                "tensors": small_dicts(st.text(max_size=5), ndarrays()),
                "deadline": st.none() | times,
                "steps": st.lists(steps, max_size=2),
            }
        ),
        target,
    )
    return {"maps": maps, "wellknown": wellknown, "job": job}


def roundtrip(message: Any) -> Any:
    recordset = to_recordset(message)
    after_wire = wire_roundtrip(recordset)
    assert after_wire == recordset
    return from_recordset(type(message), after_wire)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_job_roundtrips_through_the_wire(exttest_pb: ModuleType, wkt: ModuleType, data: Any):
    """Done-when 1: maps of scalars, messages and arrays, a Timestamp, a oneof, nested lists."""
    message = data.draw(strategies(exttest_pb, wkt)["job"])
    assert roundtrip(message) == message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_maps_of_every_key_type_roundtrip(exttest_pb: ModuleType, wkt: ModuleType, data: Any):
    message = data.draw(strategies(exttest_pb, wkt)["maps"])
    assert roundtrip(message) == message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_well_known_types_roundtrip(exttest_pb: ModuleType, wkt: ModuleType, data: Any):
    message = data.draw(strategies(exttest_pb, wkt)["wellknown"])
    assert roundtrip(message) == message


def test_map_and_well_known_layout_is_the_documented_one(exttest_pb: ModuleType, wkt: ModuleType):
    pb = exttest_pb
    job = pb.Job(
        weights={"bob": 0.25, "alice": 0.5},
        anchors={"z": pb.Point(x=1.0)},
        tensors={"w": ndarray_from_numpy(np.arange(2, dtype=np.float32))},
        deadline=datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        not_before=datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    )
    recordset = to_recordset(job)
    configs = recordset.configs_records["exttest.v1.Job"]
    assert configs["weights"] == ["alice", "bob"] and configs["weights.values"] == [0.5, 0.25]
    assert configs["anchors"] == ["z"] and configs["anchors.0.x"] == 1.0
    assert configs["tensors"] == ["w"]
    assert list(recordset.parameters_records["exttest.v1.Job"]) == ["tensors.0"]
    assert configs["deadline"] is True
    assert (configs["deadline.seconds"], configs["deadline.nanos"]) == (1767323045, 6000)
    # Before 1970: seconds floor, nanos stay positive (protobuf's rule).
    assert (configs["not_before.seconds"], configs["not_before.nanos"]) == (-1, 500_000_000)
    assert configs["steps"] == 0 and "node" not in configs and "region" not in configs

    keys = to_recordset(pb.Maps(m_bool={True: 1, False: 2}, m_sint64={5: 1, -3: 2}))
    maps = keys.configs_records["exttest.v1.Maps"]
    assert maps["m_bool"] == [False, True] and maps["m_bool.values"] == [2, 1]
    assert maps["m_sint64"] == [-3, 5] and maps["m_sint64.values"] == [2, 1]

    well = pb.WellKnown(
        took=datetime.timedelta(seconds=-1.5),
        w_int64=0,
        config=wkt.Struct(
            fields={
                "b": wkt.Value(list_value=wkt.ListValue(values=[wkt.Value(bool_value=True)])),
                "a": wkt.Value(null_value=wkt.NullValue(0)),
            }
        ),
        values={"n": wkt.Value(number_value=-0.0)},
    )
    configs = to_recordset(well).configs_records["exttest.v1.WellKnown"]
    assert (configs["took.seconds"], configs["took.nanos"]) == (-1, -500_000_000)
    assert configs["w_int64"] == 0 and "w_double" not in configs  # wrappers: when set
    assert configs["config"] == '{"a":null,"b":[true]}'
    assert configs["values"] == ["n"] and configs["values.values"] == ["-0.0"]
    assert "any_value" not in configs and configs["at"] is False


def test_special_numbers_in_wrappers_and_json(exttest_pb: ModuleType, wkt: ModuleType):
    """NaN, infinities and -0.0 survive, in wrappers and in Struct / Value numbers."""
    numbers = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    message = exttest_pb.WellKnown(
        w_double=math.nan,
        w_float=-0.0,
        any_value=wkt.Value(
            list_value=wkt.ListValue(values=[wkt.Value(number_value=n) for n in numbers])
        ),
    )
    back = roundtrip(message)
    assert math.isnan(back.w_double)
    assert math.copysign(1.0, back.w_float) == -1.0
    got = [v.number_value for v in back.any_value.list_value.values]
    assert [repr(n) for n in got] == [repr(n) for n in numbers]
    text = to_recordset(message).configs_records["exttest.v1.WellKnown"]["any_value"]
    assert text == "[NaN,Infinity,-Infinity,-0.0,5e-324,1.7976931348623157e+308]"


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("weights.values", ["x"], "field 'weights.values' (map 'weights' key 'a'): expected float"),
        ("weights", ["a", "a"], "field 'weights' (map 'weights' key 'a'): the key is listed twice"),
        ("weights", "a", "field 'weights': expected a list of map keys"),
        ("weights.values", [1.0, 2.0], "field 'weights.values': 2 values for 1 keys"),
        ("anchors", [True], "(map 'anchors' key True): expected str (string), got bool"),
        ("anchors.0.x", "far", "field 'anchors.0.x' (map 'anchors' key 'p'): expected float"),
        ("deadline.nanos", 1, "field 'deadline': nanos 1 is not a whole number of microseconds"),
        ("deadline.nanos", -1000, "field 'deadline': nanos -1000 is outside [0, 999999999]"),
        ("deadline.seconds", 2**62, "field 'deadline': seconds 4611686018427387904 is outside"),
    ],
)
def test_map_and_time_errors_name_the_field_and_key(
    exttest_pb: ModuleType, key: str, value: Any, error: str
):
    pb = exttest_pb
    job = pb.Job(
        weights={"a": 1.0},
        anchors={"p": pb.Point()},
        deadline=datetime.datetime(2000, 1, 1, tzinfo=UTC),
    )
    recordset = to_recordset(job)
    recordset.configs_records["exttest.v1.Job"][key] = value
    with pytest.raises(RecordSetDecodeError) as info:
        from_recordset(pb.Job, recordset)
    assert error in str(info.value)
    assert isinstance(info.value, ConventionError)


def test_json_and_key_errors(exttest_pb: ModuleType, wkt: ModuleType):
    pb = exttest_pb
    recordset = to_recordset(pb.WellKnown(config=wkt.Struct()))
    configs = recordset.configs_records["exttest.v1.WellKnown"]
    for text, problem in [
        ("[1]", "expected a JSON object, got list"),
        ('{"a":1,"a":2}', "JSON object has the key 'a' twice"),
        ("{", "not JSON text"),
    ]:
        configs["config"] = text
        with pytest.raises(RecordSetDecodeError, match="field 'config': " + problem.split("'")[0]):
            from_recordset(pb.WellKnown, recordset)
    with pytest.raises(RecordSetEncodeError, match="exactly one kind set, got none"):
        to_recordset(pb.WellKnown(any_value=wkt.Value()))
    with pytest.raises(RecordSetEncodeError, match="timezone-aware"):
        to_recordset(pb.WellKnown(at=datetime.datetime(2020, 1, 1)))
    with pytest.raises(RecordSetEncodeError, match="beyond the Duration range"):
        to_recordset(pb.WellKnown(took=DURATION_MAX + datetime.timedelta(seconds=1)))
    with pytest.raises(RecordSetEncodeError) as info:
        to_recordset(pb.Maps(m_uint32={-1: True}))
    assert info.value.map_field == "m_uint32" and info.value.key == -1
    assert "key: value -1 is out of the uint32 range" in str(info.value)


# --------------------------------------------------------------------------------------
# Across to Flower: the generated flwr_records module in a venv without flwr-sdk

FLWR_SIDE = textwrap.dedent(
    """
    import base64, importlib.util, json, sys
    assert importlib.util.find_spec("flwr_sdk") is None, "flwr-sdk must not be installed here"
    from flwr.common import serde
    from flwr.proto.recordset_pb2 import RecordSet as RecordSetProto
    from exttest_proto.exttest import v1 as pb
    from exttest_proto.flwr_records import from_flwr_recordset, to_flwr_recordset
    out = []
    for item in json.load(sys.stdin):
        cls = getattr(pb, item["class"])
        proto = RecordSetProto.FromString(base64.b64decode(item["wire"]))
        message = from_flwr_recordset(cls, serde.recordset_from_proto(proto))
        again = serde.recordset_to_proto(to_flwr_recordset(message)).SerializeToString()
        out.append({"typed": base64.b64encode(bytes(message)).decode(),
                    "wire": base64.b64encode(again).decode()})
    print(json.dumps(out))
    """
)


@pytest.mark.interop
def test_flower_reads_and_writes_the_same_records(
    exttest_pb: ModuleType, wkt: ModuleType, flwr_typed: FlowerEnv
):
    """Our bytes → Flower's serde → from_flwr_recordset → to_flwr_recordset → Flower's
    bytes → ours: the typed message is the same at every step."""
    pb = exttest_pb
    examples = [
        pb.Job(
            weights={"b": 0.5, "a": -0.0},
            anchors={"x": pb.Point(x=1.0, label="p")},
            tensors={"t": ndarray_from_numpy(np.arange(6, dtype=">i4").reshape(2, 3))},
            deadline=datetime.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
            region=pb.Shape(name="r", points=[pb.Point(y=2.0)]),
            steps=[
                pb.JobStep(
                    name="s",
                    path=[pb.Point(x=3.0)],
                    children={7: pb.Maps(m_bool={True: 1}, m_uint64={2**64 - 1: b"x"})},
                )
            ],
        ),
        pb.Maps(
            scores={"q": 1.5},
            m_sfixed64={-(2**63): 2**64 - 1},
            colors={"c": pb.Color.RED},
            arrays={-1: ndarray_from_numpy(np.ones((0, 2)))},
        ),
        pb.WellKnown(
            at=datetime.datetime(1, 1, 1, tzinfo=UTC),
            # Positive: betterproto2 0.10's own binary form of a negative Duration is off
            # by a second, and the typed message comes back here in that form.
            took=datetime.timedelta(days=3, microseconds=7),
            history=[datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
            timings={"t": datetime.timedelta(0)},
            w_double=-0.0,
            w_bytes=b"",
            w_string="",
            r_int64=[1, -1],
            m_string={"k": "v"},
            config=wkt.Struct(fields={"n": wkt.Value(number_value=math.inf)}),
            any_value=wkt.Value(string_value="é"),
            items=wkt.ListValue(values=[wkt.Value(null_value=wkt.NullValue(0))]),
            values={"v": wkt.Value(struct_value=wkt.Struct())},
        ),
    ]
    package_parent = Path(exttest_pb.__file__).resolve().parents[3]
    payload = [
        {
            "class": type(m).__name__,
            "wire": base64.b64encode(recordset_to_wire_bytes(to_recordset(m))).decode(),
        }
        for m in examples
    ]
    done = flwr_typed.run(
        [flwr_typed.python, "-c", FLWR_SIDE],
        cwd=package_parent,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for message, result in zip(examples, results, strict=True):
        cls = type(message)
        assert cls.parse(base64.b64decode(result["typed"])) == message
        back = from_recordset(cls, recordset_from_wire_bytes(base64.b64decode(result["wire"])))
        assert back == message
