"""Our generated classes and flwr's own protobuf classes agree on the wire, both ways.

Random RecordSet / TaskIns / TaskRes (1.12 line, against flwr 1.12.0) and RecordSet /
Message (1.15 line, against flwr 1.15.2) values are

* encoded with ``bytes(ours)`` and decoded by flwr (in its isolated venv, through
  ``tests/support/flwr_worker.py``); flwr's ``MessageToDict`` must equal our
  ``to_dict``, and flwr's re-serialisation must parse back to the same value here;
* built by flwr from the proto-JSON description and serialised there; ``Class.parse`` of
  those bytes must equal the original value.

Strategies set exactly one member of every oneof (betterproto2 serialises every member
that is set), cover every value kind of Configs/Metrics records (scalars and lists),
negative sint64, uint64 ≥ 2**63, node and run ids ≥ 2**63, and empty and multi-MiB bytes.

Known, tolerated here: betterproto2 omits a singular (implicit-presence) double that is
-0.0, where protobuf sends it; flwr then reads +0.0. Values compare equal (-0.0 == 0.0).
"""

from __future__ import annotations

import random
from typing import Any

import betterproto2
import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from flwr_sdk_proto.v1_15.flwr import proto as pb15
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.interop

MiB = 1024 * 1024
U64_MAX = 2**64 - 1
S64_MIN, S64_MAX = -(2**63), 2**63 - 1

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG_SETTINGS = settings(SETTINGS, max_examples=4)

# ----------------------------------------------------------------------------- values

uint64s = st.one_of(
    st.integers(0, U64_MAX),
    st.integers(2**63, U64_MAX),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, U64_MAX]),
)
sint64s = st.one_of(
    st.integers(S64_MIN, S64_MAX),
    st.integers(S64_MIN, -1),
    st.sampled_from([S64_MIN, -1, 0, 1, S64_MAX]),
)
int32s = st.integers(-(2**31), 2**31 - 1)
# Every Python float is a double: values travel exactly (NaN is left out: NaN != NaN).
doubles = st.floats(allow_nan=False, allow_infinity=True)
texts = st.text(max_size=12)
keys = st.text(max_size=8)
small_bytes = st.binary(max_size=48)


def big_bytes(min_size: int = 2 * MiB, max_size: int = 8 * MiB) -> st.SearchStrategy[bytes]:
    """Multi-MiB payloads, cheap to draw: a seeded PRNG fills them."""
    return st.builds(
        lambda n, seed: random.Random(seed).randbytes(n),
        st.integers(min_size, max_size),
        st.integers(0, 2**32),
    )


def lists(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(inner, max_size=5)


def one_of_members(cls: type, members: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy:
    """Values of ``cls`` with exactly one oneof member set (each member equally likely)."""
    return st.one_of(
        *(
            st.builds(lambda v, name=name: cls(**{name: v}), strat)
            for name, strat in members.items()
        )
    )


def line_strategies(pb: Any) -> dict[str, st.SearchStrategy[Any]]:
    """Strategies for the record types, which both lines share."""
    double_list = st.builds(pb.DoubleList, vals=lists(doubles))
    sint_list = st.builds(pb.SintList, vals=lists(sint64s))
    uint_list = st.builds(pb.UintList, vals=lists(uint64s))
    metrics_value = one_of_members(
        pb.MetricsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "double_list": double_list,
            "sint_list": sint_list,
            "uint_list": uint_list,
        },
    )
    configs_value = one_of_members(
        pb.ConfigsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "bool": st.booleans(),
            "string": texts,
            "bytes": small_bytes,
            "double_list": double_list,
            "sint_list": sint_list,
            "uint_list": uint_list,
            "bool_list": st.builds(pb.BoolList, vals=lists(st.booleans())),
            "string_list": st.builds(pb.StringList, vals=lists(texts)),
            "bytes_list": st.builds(pb.BytesList, vals=lists(small_bytes)),
        },
    )

    def array(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[Any]:
        return st.builds(
            pb.Array,
            dtype=st.sampled_from(["", "float32", "float64", "int64", "<f4"]),
            shape=st.lists(int32s, max_size=4),
            stype=st.sampled_from(["", "numpy.ndarray"]),
            data=data,
        )

    def parameters(data: st.SearchStrategy[bytes], max_size: int) -> st.SearchStrategy[Any]:
        return st.builds(
            lambda pairs: pb.ParametersRecord(
                data_keys=[k for k, _ in pairs], data_values=[a for _, a in pairs]
            ),
            st.lists(st.tuples(keys, array(data)), max_size=max_size),
        )

    def recordset(params: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.builds(
            pb.RecordSet,
            parameters=st.dictionaries(keys, params, max_size=2),
            metrics=st.dictionaries(
                keys,
                st.builds(pb.MetricsRecord, data=st.dictionaries(keys, metrics_value, max_size=4)),
                max_size=2,
            ),
            configs=st.dictionaries(
                keys,
                st.builds(pb.ConfigsRecord, data=st.dictionaries(keys, configs_value, max_size=6)),
                max_size=2,
            ),
        )

    big_params = parameters(st.one_of(st.just(b""), big_bytes()), max_size=2).filter(
        lambda p: len(p.data_values) > 0
    )
    return {
        "metrics_value": metrics_value,
        "configs_value": configs_value,
        "recordset": recordset(parameters(small_bytes, max_size=3)),
        "big_recordset": st.builds(
            pb.RecordSet, parameters=st.dictionaries(keys, big_params, min_size=1, max_size=1)
        ),
        "error": st.builds(pb.Error, code=sint64s, reason=texts),
    }


S12 = line_strategies(pb12)
S15 = line_strategies(pb15)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def task_12(recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    node = st.builds(pb12.Node, node_id=uint64s, anonymous=st.booleans())
    return st.builds(
        pb12.Task,
        producer=maybe(node),
        consumer=maybe(node),
        created_at=doubles,
        delivered_at=texts,
        pushed_at=doubles,
        ttl=doubles,
        ancestry=lists(texts),
        task_type=st.sampled_from(["", "train", "evaluate", "query", "reconnect", "x.custom"]),
        recordset=maybe(recordset),
        error=maybe(S12["error"]),
    )


def task_envelope(cls: type, recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        cls, task_id=texts, group_id=texts, run_id=uint64s, task=maybe(task_12(recordset))
    )


def message_15(recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    metadata = st.builds(
        pb15.Metadata,
        run_id=uint64s,
        message_id=texts,
        src_node_id=uint64s,
        dst_node_id=uint64s,
        reply_to_message=texts,
        group_id=texts,
        ttl=doubles,
        message_type=st.sampled_from(["", "train", "evaluate", "query", "x.custom"]),
        created_at=doubles,
    )
    return st.builds(
        pb15.Message,
        metadata=maybe(metadata),
        content=maybe(recordset),
        error=maybe(S15["error"]),
    )


# ------------------------------------------------------------------------- checking


def canonical(msg: betterproto2.Message) -> dict[str, Any]:
    """Proto-JSON dict with proto field names: the shape of flwr's ``MessageToDict``."""
    return msg.to_dict(casing=betterproto2.Casing.SNAKE)


def full_name(msg: betterproto2.Message) -> str:
    name = type(msg).__name__
    assert name in {
        "RecordSet",
        "TaskIns",
        "TaskRes",
        "Message",
        "Task",
        "ConfigsRecordValue",
        "MetricsRecordValue",
    }, name
    return f"flwr.proto.{name}"


def assert_ours_to_flwr(worker, msg: betterproto2.Message) -> None:
    """bytes(ours) → flwr decodes the same value; flwr's bytes → we decode it back."""
    cls = type(msg)
    data = bytes(msg)
    theirs, their_bytes = worker.parse(full_name(msg), data)
    assert theirs == canonical(msg)
    assert cls.parse(their_bytes) == msg


def assert_flwr_to_ours(worker, msg: betterproto2.Message) -> None:
    """flwr builds the value from its proto-JSON and serialises; we parse the same value."""
    cls = type(msg)
    description = canonical(msg)
    data, theirs = worker.build(full_name(msg), description)
    assert theirs == description
    ours = cls.parse(data)
    assert ours == msg
    assert canonical(ours) == description


def roundtrip(worker, msg: betterproto2.Message) -> None:
    assert_ours_to_flwr(worker, msg)
    assert_flwr_to_ours(worker, msg)


# ---------------------------------------------------------------- property tests 1.12


@SETTINGS
@given(value=S12["recordset"])
def test_recordset_1_12(flwr_1_12_worker, value):
    roundtrip(flwr_1_12_worker, value)


@SETTINGS
@given(value=task_envelope(pb12.TaskIns, S12["recordset"]))
def test_taskins_1_12(flwr_1_12_worker, value):
    roundtrip(flwr_1_12_worker, value)


@SETTINGS
@given(value=task_envelope(pb12.TaskRes, S12["recordset"]))
def test_taskres_1_12(flwr_1_12_worker, value):
    roundtrip(flwr_1_12_worker, value)


@BIG_SETTINGS
@given(value=task_envelope(pb12.TaskIns, S12["big_recordset"]))
def test_taskins_big_arrays_1_12(flwr_1_12_worker, value):
    roundtrip(flwr_1_12_worker, value)


# ---------------------------------------------------------------- property tests 1.15


@SETTINGS
@given(value=S15["recordset"])
def test_recordset_1_15(flwr_1_15_worker, value):
    roundtrip(flwr_1_15_worker, value)


@SETTINGS
@given(value=message_15(S15["recordset"]))
def test_message_1_15(flwr_1_15_worker, value):
    roundtrip(flwr_1_15_worker, value)


@BIG_SETTINGS
@given(value=message_15(S15["big_recordset"]))
def test_message_big_arrays_1_15(flwr_1_15_worker, value):
    roundtrip(flwr_1_15_worker, value)


# ------------------------------------------------------------ fixed edge cases, both


def edge_values(pb: Any) -> list[Any]:
    """Every oneof member of both record value types, at its edges."""
    values = []
    scalars = {
        "double": [0.0, -1.5, 2.0**-1074, 1.7976931348623157e308, float("inf"), float("-inf")],
        "sint64": [0, -1, S64_MIN, S64_MAX],
        "uint64": [0, 2**63, U64_MAX],
        "bool": [False, True],
        "string": ["", "ünïcödé ✓ \x00"],
        "bytes": [b"", b"\x00\xff" * 3],
    }
    lists_ = {
        "double_list": pb.DoubleList(vals=[0.0, -0.5, 1e-300]),
        "sint_list": pb.SintList(vals=[S64_MIN, -1, 0, S64_MAX]),
        "uint_list": pb.UintList(vals=[0, 2**63, U64_MAX]),
        "bool_list": pb.BoolList(vals=[True, False]),
        "string_list": pb.StringList(vals=["", "a"]),
        "bytes_list": pb.BytesList(vals=[b"", b"\x01"]),
    }
    metrics_members = {"double", "sint64", "uint64", "double_list", "sint_list", "uint_list"}
    for name, vals in scalars.items():
        for v in vals:
            values.append(pb.ConfigsRecordValue(**{name: v}))
            if name in metrics_members:
                values.append(pb.MetricsRecordValue(**{name: v}))
    for name, v in lists_.items():
        values.append(pb.ConfigsRecordValue(**{name: v}))
        if name in metrics_members:
            values.append(pb.MetricsRecordValue(**{name: v}))
        empty = type(v)()
        values.append(pb.ConfigsRecordValue(**{name: empty}))
    return values


@pytest.mark.parametrize(
    ("pb", "worker_fixture"),
    [(pb12, "flwr_1_12_worker"), (pb15, "flwr_1_15_worker")],
    ids=["1.12", "1.15"],
)
def test_every_record_value_kind_at_its_edges(pb, worker_fixture, request):
    worker = request.getfixturevalue(worker_fixture)
    values = edge_values(pb)
    kinds = {betterproto2.which_one_of(v, "value")[0] for v in values}
    assert len(kinds) == 12
    for value in values:
        roundtrip(worker, value)
    # All of them at once, in one RecordSet.
    rs = pb.RecordSet(
        configs={
            "c": pb.ConfigsRecord(
                data={
                    str(i): v for i, v in enumerate(values) if isinstance(v, pb.ConfigsRecordValue)
                }
            )
        },
        metrics={
            "m": pb.MetricsRecord(
                data={
                    str(i): v for i, v in enumerate(values) if isinstance(v, pb.MetricsRecordValue)
                }
            )
        },
        parameters={
            "p": pb.ParametersRecord(data_keys=["empty"], data_values=[pb.Array(data=b"")])
        },
    )
    roundtrip(worker, rs)


def test_large_ids_and_empty_and_big_payload_1_12(flwr_1_12_worker):
    payload = random.Random(7).randbytes(5 * MiB + 3)
    msg = pb12.TaskIns(
        task_id="t",
        run_id=U64_MAX,
        task=pb12.Task(
            producer=pb12.Node(node_id=2**63, anonymous=False),
            consumer=pb12.Node(node_id=U64_MAX),
            recordset=pb12.RecordSet(
                parameters={
                    "p": pb12.ParametersRecord(
                        data_keys=["empty", "big"],
                        data_values=[pb12.Array(data=b""), pb12.Array(dtype="<f4", data=payload)],
                    )
                }
            ),
        ),
    )
    roundtrip(flwr_1_12_worker, msg)
    theirs, _ = flwr_1_12_worker.parse("flwr.proto.TaskIns", bytes(msg))
    assert theirs["run_id"] == str(U64_MAX)
    assert theirs["task"]["producer"]["node_id"] == str(2**63)


def test_large_ids_and_big_payload_1_15(flwr_1_15_worker):
    payload = random.Random(8).randbytes(3 * MiB)
    msg = pb15.Message(
        metadata=pb15.Metadata(run_id=2**63, src_node_id=U64_MAX, dst_node_id=2**63 + 1),
        content=pb15.RecordSet(
            parameters={
                "p": pb15.ParametersRecord(data_keys=["w"], data_values=[pb15.Array(data=payload)])
            }
        ),
    )
    roundtrip(flwr_1_15_worker, msg)
    theirs, _ = flwr_1_15_worker.parse("flwr.proto.Message", bytes(msg))
    assert theirs["metadata"]["src_node_id"] == str(U64_MAX)
