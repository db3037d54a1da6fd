"""Property: typed → RecordSet → wire → RecordSet → typed is the identity.

The schema (tests/extending/proto/exttest/v1/everything.proto) covers every scalar type,
repeated fields, bytes, enums (known and unknown numbers), nested and recursive
messages, repeated messages, optional fields, a oneof and NdArray payloads.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
from ext_support import INT_RANGES, doubles, float32s, ints, ndarrays, wire_roundtrip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flwr_sdk.ext import from_recordset, ndarray_from_numpy, ndarray_to_numpy, to_recordset


def strategies(pb: ModuleType) -> dict[str, st.SearchStrategy[Any]]:
    colors = st.one_of(
        st.sampled_from(list(pb.Color)), st.integers(-(2**31), 2**31 - 1).map(pb.Color)
    )
    points = st.builds(pb.Point, x=doubles, y=doubles, label=st.text(max_size=8))
    shapes = st.recursive(
        st.builds(
            pb.Shape,
            name=st.text(max_size=5),
            points=st.lists(points, max_size=2),
            center=st.none() | points,
            mask=st.none() | ndarrays(),
        ),
        lambda children: st.builds(
            pb.Shape,
            name=st.text(max_size=5),
            points=st.lists(points, max_size=2),
            center=st.none() | points,
            mask=st.none() | ndarrays(),
            child=children,
        ),
        max_leaves=3,
    )
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "double": doubles,
        "float": float32s,
        "bool": st.booleans(),
        "string": st.text(),
        "bytes": st.binary(),
        **{kind: ints(kind) for kind in INT_RANGES},
    }
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for kind, strategy in scalars.items():
        fields[f"f_{kind}"] = strategy
        fields[f"r_{kind}"] = st.lists(strategy, max_size=4)
    fields.update(
        color=colors,
        r_color=st.lists(colors, max_size=4),
        point=st.none() | points,
        points=st.lists(points, max_size=3),
        shape=st.none() | shapes,
        weights=st.none() | ndarrays(),
        layers=st.lists(ndarrays(), max_size=3),
        o_int64=st.none() | ints("int64"),
        o_string=st.none() | st.text(max_size=5),
        o_color=st.none() | colors,
        tags=st.lists(
            st.builds(pb.EverythingTag, key=st.text(max_size=5), value=st.binary(max_size=5)),
            max_size=3,
        ),
    )
    choice = st.one_of(
        st.just({}),
        st.builds(lambda v: {"c_text": v}, st.text(max_size=5)),
        st.builds(lambda v: {"c_point": v}, points),
        st.builds(lambda v: {"c_array": v}, ndarrays()),
    )
    everything = st.builds(
        lambda values, member: pb.Everything(**values, **member),
        st.fixed_dictionaries(fields),
        choice,
    )
    return {"everything": everything, "shape": shapes, "point": points}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_everything_roundtrips_through_the_wire(exttest_pb: ModuleType, data: st.DataObject):
    message = data.draw(strategies(exttest_pb)["everything"])
    recordset = to_recordset(message)
    after_wire = wire_roundtrip(recordset)
    assert after_wire == recordset
    back = from_recordset(exttest_pb.Everything, after_wire)
    assert back == message
    assert bytes(back) == bytes(message)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_recursive_shapes_roundtrip(exttest_pb: ModuleType, data: st.DataObject):
    shape = data.draw(strategies(exttest_pb)["shape"])
    back = from_recordset(exttest_pb.Shape, wire_roundtrip(to_recordset(shape)))
    assert back == shape


@settings(max_examples=100, deadline=None)
@given(array=ndarrays())
def test_arrays_are_flower_numpy_arrays(array: Any):
    """Array entries carry Flower's Array form: stype numpy.ndarray, dtype, shape, .npy."""
    expected = ndarray_to_numpy(array)
    from flwr_sdk.ext.convention import array_from_ndarray

    flower_array = array_from_ndarray(array)
    assert flower_array.stype == "numpy.ndarray"
    assert flower_array.dtype == str(expected.dtype)
    assert flower_array.shape == list(expected.shape)
    assert bytes(flower_array.data[:6]) == b"\x93NUMPY"
    loaded = flower_array.numpy()
    assert loaded.dtype == expected.dtype
    np.testing.assert_array_equal(loaded, expected)


def test_special_floats_roundtrip(exttest_pb: ModuleType):
    message = exttest_pb.Everything(
        f_double=math.nan, f_float=math.inf, r_double=[-math.inf, math.nan, -0.0]
    )
    back = from_recordset(exttest_pb.Everything, wire_roundtrip(to_recordset(message)))
    assert math.isnan(back.f_double)
    assert back.f_float == math.inf
    assert math.isinf(back.r_double[0]) and math.isnan(back.r_double[1])
    assert math.copysign(1.0, back.r_double[2]) == -1.0
    assert bytes(back) == bytes(message)


def test_layout_is_the_documented_one(exttest_pb: ModuleType):
    """Spot-check the convention's keys and value kinds on one message."""
    pb = exttest_pb
    message = pb.Everything(
        f_int32=-7,
        f_bytes=b"\x00\x01",
        color=pb.Color.GREEN,
        r_string=["a", "b"],
        point=pb.Point(x=1.5, label="p"),
        points=[pb.Point(y=2.0)],
        weights=ndarray_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3)),
        layers=[ndarray_from_numpy(np.ones(2))],
        o_string="set",
        c_text="chosen",
    )
    recordset = to_recordset(message)
    name = "exttest.v1.Everything"
    assert list(recordset.configs_records) == [name]
    assert list(recordset.parameters_records) == [name]
    assert not recordset.metrics_records
    configs = recordset.configs_records[name]
    assert configs["f_int32"] == -7
    assert configs["f_bytes"] == b"\x00\x01"
    assert configs["color"] == 2
    assert configs["r_string"] == ["a", "b"]
    assert configs["point"] is True
    assert configs["point.x"] == 1.5 and configs["point.label"] == "p"
    assert configs["points"] == 1 and configs["points.0.y"] == 2.0
    assert configs["shape"] is False and not any(k.startswith("shape.") for k in configs)
    assert configs["weights"] is True and configs["layers"] == 1
    assert configs["o_string"] == "set" and "o_int64" not in configs
    assert configs["c_text"] == "chosen"
    assert "c_point" not in configs and "c_array" not in configs
    parameters = recordset.parameters_records[name]
    assert list(parameters) == ["weights", "layers.0"]
    np.testing.assert_array_equal(
        parameters["weights"].numpy(), np.arange(6, dtype=np.float32).reshape(2, 3)
    )
    # A message that cannot hold arrays has no ParametersRecord.
    point_rs = to_recordset(pb.Point(x=1.0))
    assert not point_rs.parameters_records
    assert dict(point_rs.configs_records["exttest.v1.Point"]) == {
        "x": 1.0,
        "y": 0.0,
        "label": "",
    }
