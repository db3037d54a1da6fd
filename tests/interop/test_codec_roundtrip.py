"""Our generated classes and flwr's own protobuf classes agree on the wire, both ways.

Random RecordSet / TaskIns / TaskRes (1.12 line, against flwr 1.12.0) and RecordSet /
Message (1.15 line, against flwr 1.15.2) values are

* encoded with ``bytes(ours)`` and decoded by flwr (in its isolated venv, through
  ``tests/support/flwr_worker.py``); flwr's ``MessageToDict`` must equal our
  ``to_dict``, and flwr's re-serialisation must parse back to the same value here;
* built by flwr from the proto-JSON description and serialised there; ``Class.parse`` of
  those bytes must equal the original value.

The strategies (``tests/support/strategies.py``) set exactly one member of every oneof
(betterproto2 serialises every member that is set), cover every value kind of
Configs/Metrics records (scalars and lists), negative sint64, uint64 ≥ 2**63, node and run
ids ≥ 2**63, and empty and multi-MiB bytes.

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
from support.strategies import (
    S12,
    S15,
    S64_MAX,
    S64_MIN,
    U64_MAX,
    MiB,
    message_15,
    task_envelope,
)

pytestmark = pytest.mark.interop

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG_SETTINGS = settings(SETTINGS, max_examples=4)


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
