"""The generated fast codec (``flwr_sdk_proto.<line>.fastcodec``) and ``FastProtoCodec``.

Property tests, for random messages of every covered type of both lines:

(a) the fast encoder's bytes equal google protobuf's ``SerializeToString(deterministic=True)``
    of the same message (upb classes compiled from our protos at session start, in a private
    descriptor pool per line; the message is copied field by field, so ``-0.0`` and set-but-
    default oneof members reach protobuf as they are), and equal ``bytes(msg)`` of
    betterproto2 (same insertion order of map entries; betterproto2 drops ``-0.0``, so that
    comparison draws doubles without it);
(b) ``decode(encode(msg)) == msg`` field by field (memoryviews turned into bytes);
(c) decoded ``Array.data`` / ``Parameters.tensors`` are views of the received buffer;
(d) (interop) flwr 1.12.0's / 1.15.2's own classes parse our bytes to the same value and
    re-serialise them to the same bytes.

Plus malformed-input handling (truncation checked differentially against protobuf,
bad varints, wrong wire types, unknown fields, nesting depth, random bytes), encode-side
validation, and the grpclib codec end to end.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import betterproto2
import numpy as np
import pytest
from flwr_sdk_proto.v1_12 import fastcodec as fc12
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from flwr_sdk_proto.v1_15 import fastcodec as fc15
from flwr_sdk_proto.v1_15.flwr import proto as pb15
from google.protobuf import descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flwr_sdk.net.fast_codec import (
    DECODE_ERRORS,
    FastProtoCodec,
    decode_message,
    encode_message,
    fast_codec_for,
)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from codegen.toolchain import compile_descriptor_set  # noqa: E402

MiB = 1024 * 1024
U64_MAX = 2**64 - 1
S64_MIN, S64_MAX = -(2**63), 2**63 - 1

LINES: dict[str, tuple[ModuleType, ModuleType]] = {"v1_12": (pb12, fc12), "v1_15": (pb15, fc15)}

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG_SETTINGS = settings(SETTINGS, max_examples=3)

# ------------------------------------------------------------------ protobuf reference


def _upb_pool(line: str) -> descriptor_pool.DescriptorPool:
    root = REPO / "proto" / "flower" / line
    files = sorted(p.relative_to(root) for p in root.rglob("*.proto"))
    pool = descriptor_pool.DescriptorPool()
    for fd in compile_descriptor_set(root, files).file:
        pool.Add(fd)
    return pool


_POOLS: dict[str, descriptor_pool.DescriptorPool] = {}


def upb_class(line: str, full_name: str) -> Any:
    """google protobuf's class of ``full_name``, compiled from our protos of ``line``."""
    if line not in _POOLS:
        _POOLS[line] = _upb_pool(line)
    desc = _POOLS[line].FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(desc)


def full_name(msg: betterproto2.Message) -> str:
    pool_name = type(msg).__name__
    for name, cls in NESTED_NAMES.items():
        if cls == pool_name:
            return f"flwr.proto.{name}"
    return f"flwr.proto.{pool_name}"


NESTED_NAMES = {
    f"{outer}.{inner}": f"{outer}{inner}"
    for outer, inners in {
        "ServerMessage": [
            "ReconnectIns",
            "GetPropertiesIns",
            "GetParametersIns",
            "FitIns",
            "EvaluateIns",
        ],
        "ClientMessage": [
            "DisconnectRes",
            "GetPropertiesRes",
            "GetParametersRes",
            "FitRes",
            "EvaluateRes",
        ],
    }.items()
    for inner in inners
}


def _fill(out: Any, msg: betterproto2.Message) -> None:
    """Copy ``msg`` into the protobuf message ``out``, field by field."""
    names = msg._betterproto.field_name_by_number
    for fd in out.DESCRIPTOR.fields:
        value = getattr(msg, names[fd.number])
        target = getattr(out, fd.name)
        is_message = fd.type == fd.TYPE_MESSAGE
        if is_message and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_number[2]
            for key, item in value.items():
                if value_fd.type == value_fd.TYPE_MESSAGE:
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif fd.is_repeated:
            for item in value:
                if is_message:
                    _fill(target.add(), item)
                else:
                    target.append(bytes(item) if isinstance(item, memoryview) else item)
        elif value is None:
            continue
        elif is_message:
            target.SetInParent()
            _fill(target, value)
        else:
            setattr(out, fd.name, bytes(value) if isinstance(value, memoryview) else value)


def to_upb(line: str, msg: betterproto2.Message) -> Any:
    out = upb_class(line, full_name(msg))()
    _fill(out, msg)
    return out


def materialize(value: Any) -> Any:
    """``value`` with every memoryview replaced by bytes (recursively)."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, betterproto2.Message):
        names = value._betterproto.meta_by_field_name
        return type(value)(**{n: materialize(getattr(value, n)) for n in names})
    return value


def assert_same_message(got: Any, want: Any, *, ordered: bool = True) -> None:
    """Equal field by field, with the same Python types (enums stay enums, etc.).

    ``ordered``: map entries must also come in the same order (true for our own round
    trips; protobuf re-serialises maps in its hash-table order).
    """
    got = materialize(got)
    assert type(got) is type(want)
    assert got == want
    for name in want._betterproto.meta_by_field_name:
        g, w = getattr(got, name), getattr(want, name)
        if isinstance(w, betterproto2.Message):
            assert_same_message(g, w, ordered=ordered)
        elif isinstance(w, list) and w and isinstance(w[0], betterproto2.Message):
            for gi, wi in zip(g, w, strict=True):
                assert_same_message(gi, wi, ordered=ordered)
        elif isinstance(w, dict):
            if ordered:
                assert list(g) == list(w)  # insertion order survives the round trip
            for key in w:
                if isinstance(w[key], betterproto2.Message):
                    assert_same_message(g[key], w[key], ordered=ordered)
        elif isinstance(w, float) and math.copysign(1.0, w) < 0:
            assert math.copysign(1.0, g) < 0, name  # -0.0 survives
        else:
            assert type(g) is type(w) or (w is None) == (g is None), (name, g, w)


# --------------------------------------------------------------------------- values

uint64s = st.one_of(st.integers(0, U64_MAX), st.sampled_from([0, 1, 127, 128, 2**63, U64_MAX]))
sint64s = st.one_of(
    st.integers(S64_MIN, S64_MAX), st.sampled_from([S64_MIN, -1, 0, 1, -64, 64, S64_MAX])
)
int64s = sint64s
int32s = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-(2**31), -1, 0]))
floats32 = st.floats(width=32, allow_nan=False)
texts = st.text(max_size=10)
keys = st.text(max_size=6)
small_bytes = st.binary(max_size=40)


def big_bytes(min_size: int = 1 * MiB, max_size: int = 4 * MiB) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda n, seed: random.Random(seed).randbytes(n),
        st.integers(min_size, max_size),
        st.integers(0, 2**32),
    )


def lists(inner: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[list[Any]]:
    return st.lists(inner, max_size=max_size)


def builds(cls: type, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``st.builds`` over the fields ``cls`` has (the two lines differ in a few)."""
    known = cls._betterproto.meta_by_field_name  # type: ignore[attr-defined]
    return st.builds(cls, **{k: v for k, v in fields.items() if k in known})


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def one_of_members(cls: type, members: dict[str, st.SearchStrategy[Any]]) -> Any:
    """Values of ``cls`` with at most one oneof member set (protobuf's only states)."""
    return st.one_of(
        st.builds(cls),
        *(st.builds(lambda v, n=name: cls(**{n: v}), strat) for name, strat in members.items()),
    )


def strategies(pb: ModuleType, *, neg_zero: bool, data: st.SearchStrategy[bytes]) -> dict:
    """Strategies for every covered message of one line's module ``pb``."""
    doubles = st.floats(allow_nan=False)
    floats = floats32
    if not neg_zero:  # betterproto2 drops -0.0 (protobuf writes it)
        doubles = doubles.map(lambda x: 0.0 if x == 0 else x)
        floats = floats.map(lambda x: 0.0 if x == 0 else x)
    s: dict[str, st.SearchStrategy[Any]] = {}
    s["DoubleList"] = st.builds(pb.DoubleList, vals=lists(doubles))
    s["SintList"] = st.builds(pb.SintList, vals=lists(sint64s))
    s["UintList"] = st.builds(pb.UintList, vals=lists(uint64s))
    s["BoolList"] = st.builds(pb.BoolList, vals=lists(st.booleans()))
    s["StringList"] = st.builds(pb.StringList, vals=lists(texts))
    s["BytesList"] = st.builds(pb.BytesList, vals=lists(small_bytes))
    s["MetricsRecordValue"] = one_of_members(
        pb.MetricsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "double_list": s["DoubleList"],
            "sint_list": s["SintList"],
            "uint_list": s["UintList"],
        },
    )
    s["ConfigsRecordValue"] = one_of_members(
        pb.ConfigsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "bool": st.booleans(),
            "string": texts,
            "bytes": small_bytes,
            "double_list": s["DoubleList"],
            "sint_list": s["SintList"],
            "uint_list": s["UintList"],
            "bool_list": s["BoolList"],
            "string_list": s["StringList"],
            "bytes_list": s["BytesList"],
        },
    )
    s["Array"] = st.builds(
        pb.Array,
        dtype=st.sampled_from(["", "float32", "<f4", "int64"]),
        shape=lists(int32s),
        stype=st.sampled_from(["", "numpy.ndarray", "raw"]),
        data=data,
    )
    s["ParametersRecord"] = st.builds(
        lambda pairs: pb.ParametersRecord(
            data_keys=[k for k, _ in pairs], data_values=[a for _, a in pairs]
        ),
        lists(st.tuples(keys, s["Array"]), max_size=3),
    )
    s["MetricsRecord"] = st.builds(
        pb.MetricsRecord, data=st.dictionaries(keys, s["MetricsRecordValue"], max_size=4)
    )
    s["ConfigsRecord"] = st.builds(
        pb.ConfigsRecord, data=st.dictionaries(keys, s["ConfigsRecordValue"], max_size=4)
    )
    s["RecordSet"] = st.builds(
        pb.RecordSet,
        parameters=st.dictionaries(keys, s["ParametersRecord"], max_size=2),
        metrics=st.dictionaries(keys, s["MetricsRecord"], max_size=2),
        configs=st.dictionaries(keys, s["ConfigsRecord"], max_size=2),
    )
    s["Error"] = st.builds(pb.Error, code=sint64s, reason=texts)
    s["Node"] = builds(pb.Node, node_id=uint64s, anonymous=st.booleans())
    s["Reconnect"] = st.builds(pb.Reconnect, reconnect=uint64s)
    s["Metadata"] = metadata = builds(
        pb.Metadata,
        run_id=uint64s,
        message_id=texts,
        src_node_id=uint64s,
        dst_node_id=uint64s,
        reply_to_message=texts,
        group_id=texts,
        ttl=doubles,
        message_type=st.sampled_from(["", "train", "evaluate", "query"]),
        created_at=doubles,
    )
    s["Message"] = builds(
        pb.Message,
        metadata=maybe(metadata),
        content=maybe(s["RecordSet"]),
        error=maybe(s["Error"]),
    )
    if hasattr(pb, "PullMessagesResponse"):
        s["PullMessagesResponse"] = st.builds(
            pb.PullMessagesResponse,
            reconnect=maybe(s["Reconnect"]),
            messages_list=lists(s["Message"], max_size=2),
        )
        s["PushMessagesRequest"] = st.builds(
            pb.PushMessagesRequest,
            node=maybe(s["Node"]),
            messages_list=lists(s["Message"], max_size=2),
        )
    if hasattr(pb, "TaskIns"):
        s["Task"] = builds(
            pb.Task,
            producer=maybe(s["Node"]),
            consumer=maybe(s["Node"]),
            created_at=doubles,
            delivered_at=texts,
            pushed_at=doubles,
            ttl=doubles,
            ancestry=lists(texts),
            task_type=st.sampled_from(["", "train", "evaluate"]),
            recordset=maybe(s["RecordSet"]),
            error=maybe(s["Error"]),
        )
        for name in ("TaskIns", "TaskRes"):
            s[name] = builds(
                getattr(pb, name),
                task_id=texts,
                group_id=texts,
                run_id=uint64s,
                task=maybe(s["Task"]),
            )
    if hasattr(pb, "PullTaskInsResponse"):
        s["PullTaskInsResponse"] = st.builds(
            pb.PullTaskInsResponse,
            reconnect=maybe(s["Reconnect"]),
            task_ins_list=lists(s["TaskIns"], max_size=2),
        )
        s["PushTaskResRequest"] = st.builds(
            pb.PushTaskResRequest,
            node=maybe(s["Node"]),
            task_res_list=lists(s["TaskRes"], max_size=2),
        )
    # Legacy grpc-bidi messages.
    s["Scalar"] = one_of_members(
        pb.Scalar,
        {
            "double": doubles,
            "uint64": uint64s,
            "sint64": sint64s,
            "bool": st.booleans(),
            "string": texts,
            "bytes": small_bytes,
        },
    )
    scalars = st.dictionaries(keys, s["Scalar"], max_size=3)
    s["Parameters"] = st.builds(
        pb.Parameters,
        tensors=lists(data, max_size=3),
        tensor_type=st.sampled_from(["", "numpy.ndarray"]),
    )
    s["Status"] = st.builds(
        pb.Status, code=st.sampled_from(list(pb.Code)).map(pb.Code), message=texts
    )
    ins = {
        "reconnect_ins": st.builds(pb.ServerMessageReconnectIns, seconds=int64s),
        "get_properties_ins": st.builds(pb.ServerMessageGetPropertiesIns, config=scalars),
        "get_parameters_ins": st.builds(pb.ServerMessageGetParametersIns, config=scalars),
        "fit_ins": st.builds(
            pb.ServerMessageFitIns, parameters=maybe(s["Parameters"]), config=scalars
        ),
        "evaluate_ins": st.builds(
            pb.ServerMessageEvaluateIns, parameters=maybe(s["Parameters"]), config=scalars
        ),
    }
    res = {
        "disconnect_res": st.builds(
            pb.ClientMessageDisconnectRes,
            reason=st.one_of(st.sampled_from(list(pb.Reason)), st.just(pb.Reason(99))),
        ),
        "get_properties_res": st.builds(
            pb.ClientMessageGetPropertiesRes, status=maybe(s["Status"]), properties=scalars
        ),
        "get_parameters_res": st.builds(
            pb.ClientMessageGetParametersRes,
            status=maybe(s["Status"]),
            parameters=maybe(s["Parameters"]),
        ),
        "fit_res": st.builds(
            pb.ClientMessageFitRes,
            status=maybe(s["Status"]),
            parameters=maybe(s["Parameters"]),
            num_examples=int64s,
            metrics=scalars,
        ),
        "evaluate_res": st.builds(
            pb.ClientMessageEvaluateRes,
            status=maybe(s["Status"]),
            loss=floats,
            num_examples=int64s,
            metrics=scalars,
        ),
    }
    for member, strat in {**ins, **res}.items():
        s[type_name_of(strat, pb, member)] = strat
    s["ServerMessage"] = one_of_members(pb.ServerMessage, ins)
    s["ClientMessage"] = one_of_members(pb.ClientMessage, res)
    return s


def type_name_of(_strat: Any, _pb: ModuleType, member: str) -> str:
    outer = "ServerMessage" if member.endswith("_ins") else "ClientMessage"
    inner = "".join(part.capitalize() for part in member.split("_"))
    return outer + inner


S_PROTOBUF = {
    line: strategies(pb, neg_zero=True, data=small_bytes) for line, (pb, _) in LINES.items()
}
S_BETTER = {
    line: strategies(pb, neg_zero=False, data=small_bytes) for line, (pb, _) in LINES.items()
}
S_INTEROP_BIG = {
    line: strategies(pb, neg_zero=False, data=st.one_of(st.just(b""), big_bytes(64 << 10, MiB)))
    for line, (pb, _) in LINES.items()
}
S_BIG = {
    line: strategies(pb, neg_zero=False, data=st.one_of(st.just(b""), big_bytes()))
    for line, (pb, _) in LINES.items()
}

CASES = [(line, name) for line in LINES for name in sorted(S_PROTOBUF[line])]


def test_every_covered_type_has_a_strategy() -> None:
    for line, (_, fc) in LINES.items():
        covered = {cls.__name__ for cls in fc.MESSAGE_TYPES}
        assert covered == set(S_PROTOBUF[line]), line


def test_covered_sets() -> None:
    for fc in (fc12, fc15):
        names = {cls.__name__ for cls in fc.ROOTS}
        assert {"Array", "ParametersRecord", "RecordSet", "Message", "Parameters"} <= names
        assert {"ServerMessage", "ClientMessage", "Scalar"} <= names
    assert {"TaskIns", "TaskRes", "PullTaskInsResponse", "PushTaskResRequest"} <= {
        cls.__name__ for cls in fc12.ROOTS
    }
    assert {"PullMessagesResponse", "PushMessagesRequest"} <= {cls.__name__ for cls in fc15.ROOTS}
    assert pb12.ServerMessageFitIns in fc12.MESSAGE_TYPES
    assert pb15.ClientMessageEvaluateRes in fc15.MESSAGE_TYPES
    assert pb12.PingRequest not in fc12.MESSAGE_TYPES


def test_lines_share_one_runtime() -> None:
    """The model-independent part is generated once; each line re-exports its public names."""
    import flwr_sdk_proto.fastcodec_runtime as runtime

    for fc in (fc12, fc15):
        assert fc.DecodeError is runtime.DecodeError
        assert fc.EncodeError is runtime.EncodeError
        assert fc.SegmentedBytes is runtime.SegmentedBytes
        assert fc.MAX_DEPTH == runtime.MAX_DEPTH
        assert {"DecodeError", "EncodeError", "SegmentedBytes", "MAX_DEPTH"} <= set(fc.__all__)


# --------------------------------------------------------------------- (a) bytes


@pytest.mark.parametrize(("line", "name"), CASES)
@SETTINGS
@given(data=st.data())
def test_bytes_equal_protobuf(line: str, name: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    msg = data.draw(S_PROTOBUF[line][name])
    reference = to_upb(line, msg)
    ours = fc.encode(msg, deterministic=True)
    assert bytes(ours) == reference.SerializeToString(deterministic=True)
    # The streamed form holds the same bytes, piece by piece.
    assert b"".join(fc.encode_chunks(msg, deterministic=True)) == bytes(ours)
    assert fc.encoded_size(msg) == len(ours) == reference.ByteSize()
    # Insertion-ordered maps: same message for protobuf, possibly other entry order.
    assert type(reference).FromString(bytes(fc.encode(msg))) == reference


@pytest.mark.parametrize(("line", "name"), CASES)
@SETTINGS
@given(data=st.data())
def test_bytes_equal_betterproto(line: str, name: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    msg = data.draw(S_BETTER[line][name])
    encoded = fc.encode(msg)
    assert isinstance(encoded, memoryview)
    assert bytes(encoded) == bytes(msg)
    per_type = getattr(fc, f"encode_{name}")(msg)
    assert bytes(per_type) == bytes(msg)
    assert getattr(fc, f"encoded_size_{name}")(msg) == len(encoded)


@pytest.mark.parametrize("line", list(LINES))
@BIG_SETTINGS
@given(data=st.data())
def test_big_arrays_bytes_equal(line: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    msg = data.draw(S_BIG[line]["RecordSet"].filter(lambda r: r.parameters))
    assert bytes(fc.encode(msg)) == bytes(msg)
    pieces = fc.encode_chunks(msg)
    assert b"".join(pieces) == bytes(msg)
    # Values of 64 KiB and more are referenced (the very objects), never copied.
    big = [a.data for r in msg.parameters.values() for a in r.data_values if len(a.data) >= 1 << 16]
    referenced = [p for p in pieces if any(p is d for d in big)]
    assert len(referenced) == len(big)
    reference = to_upb(line, msg)
    assert bytes(fc.encode(msg, deterministic=True)) == reference.SerializeToString(
        deterministic=True
    )


def test_protobuf_edge_values() -> None:
    """Values where protobuf and betterproto2 disagree: we follow protobuf."""
    for value in (1e300, -1e300, 1e-50, -1e-50, 3.4028235e38, float("inf")):
        msg = pb12.ClientMessageEvaluateRes(loss=value)
        reference = to_upb("v1_12", msg).SerializeToString()
        assert bytes(fc12.encode(msg)) == reference, value
    task = pb12.Task(created_at=-0.0, ttl=0.0)
    assert bytes(fc12.encode(task)) == to_upb("v1_12", task).SerializeToString()
    assert bytes(fc12.encode(task)) == b"\x19" + struct.pack("<d", -0.0)
    assert bytes(task) == b""  # betterproto2 drops -0.0
    # NaN payloads travel as they are.
    nan = pb12.Task(ttl=float("nan"))
    assert bytes(fc12.encode(nan)) == to_upb("v1_12", nan).SerializeToString()
    # Set-but-default oneof members and empty sub-messages are written.
    assert bytes(fc12.encode(pb12.Scalar(sint64=0))) == b"\x40\x00"
    assert bytes(fc12.encode(pb12.Task(producer=pb12.Node()))) == b"\x0a\x00"
    # Map entries always carry key and value, even when both are defaults.
    record = pb12.MetricsRecord(data={"": pb12.MetricsRecordValue()})
    assert bytes(fc12.encode(record)) == b"\x0a\x04\x0a\x00\x12\x00"
    assert bytes(fc12.encode(record)) == to_upb("v1_12", record).SerializeToString()


def test_deterministic_sorts_map_entries() -> None:
    record = pb15.RecordSet(
        metrics={k: pb15.MetricsRecord() for k in ["b", "é", "a", "zz", "", "Z"]}
    )
    reference = to_upb("v1_15", record)
    assert bytes(fc15.encode(record, deterministic=True)) == reference.SerializeToString(
        deterministic=True
    )
    assert bytes(fc15.encode(record)) == bytes(record)  # insertion order otherwise


def test_accepts_other_buffers_in_bytes_fields() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    want = bytes(pb15.Array(dtype="<f4", data=array.tobytes()))
    for data in (bytearray(array.tobytes()), memoryview(array), memoryview(array.tobytes())):
        assert bytes(fc15.encode(pb15.Array(dtype="<f4", data=data))) == want  # type: ignore[arg-type]
    strided = memoryview(np.arange(8, dtype=np.uint8))[::2]
    with pytest.raises(fc15.EncodeError, match="contiguous"):
        fc15.encode(pb15.Array(data=strided))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (pb12.Node(node_id=-1), "uint64"),
        (pb12.Node(node_id=2**64), "uint64"),
        (pb12.Array(shape=[2**31]), "int32"),
        (pb12.Error(code=2**63), "sint64"),
        (pb12.ServerMessageReconnectIns(seconds=-(2**63) - 1), "int64"),
        (pb12.Scalar(double=1.0, string="x"), "oneof scalar"),
        (pb12.ServerMessage(fit_ins=pb12.ServerMessageFitIns(), reconnect_ins=None), None),
    ],
)
def test_encode_validation(msg: betterproto2.Message, match: str | None) -> None:
    if match is None:
        fc12.encode(msg)
        return
    with pytest.raises(fc12.EncodeError, match=match):
        fc12.encode(msg)


def test_encode_rejects_uncovered_types() -> None:
    with pytest.raises(TypeError, match="not covered"):
        fc12.encode(pb12.PingRequest())
    with pytest.raises(TypeError, match="not covered"):
        fc12.encode(pb15.Array())  # the other line's class
    with pytest.raises(TypeError, match="not covered"):
        fc12.decode(pb12.PingRequest, b"")


# ------------------------------------------------------------------ (b) round trip


@pytest.mark.parametrize(("line", "name"), CASES)
@SETTINGS
@given(data=st.data())
def test_roundtrip(line: str, name: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    msg = data.draw(S_PROTOBUF[line][name])
    encoded = fc.encode(msg)
    assert_same_message(fc.decode(type(msg), bytes(encoded)), msg)
    assert_same_message(fc.decode(type(msg), encoded), msg)  # memoryview input
    assert_same_message(getattr(fc, f"decode_{name}")(bytearray(encoded)), msg)


@pytest.mark.parametrize("line", list(LINES))
@BIG_SETTINGS
@given(data=st.data())
def test_roundtrip_big(line: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    name = data.draw(st.sampled_from(["Message", "ServerMessage", "ClientMessage"]))
    msg = data.draw(S_BIG[line][name])
    assert_same_message(fc.decode(type(msg), bytes(fc.encode(msg))), msg)


# ------------------------------------------------------------------ (c) zero copy


def _arrays(msg: Any) -> list[Any]:
    """Every Array / Parameters tensor value reachable from ``msg``."""
    out: list[Any] = []
    if isinstance(msg, (pb12.Array, pb15.Array)):
        out.append(msg.data)
    if isinstance(msg, (pb12.Parameters, pb15.Parameters)):
        out.extend(msg.tensors)
    if isinstance(msg, betterproto2.Message):
        for name in msg._betterproto.meta_by_field_name:
            out.extend(_arrays(getattr(msg, name)))
    elif isinstance(msg, list):
        for item in msg:
            out.extend(_arrays(item))
    elif isinstance(msg, dict):
        for item in msg.values():
            out.extend(_arrays(item))
    return out


def _assert_views_of(decoded: Any, buffer: bytes) -> int:
    whole = np.frombuffer(buffer, dtype=np.uint8)
    count = 0
    for data in _arrays(decoded):
        if isinstance(data, bytes) and data == b"":
            continue  # absent field: the default
        assert isinstance(data, memoryview)
        assert data.obj is buffer
        assert data.readonly
        if data.nbytes:
            assert np.shares_memory(whole, np.frombuffer(data, dtype=np.uint8))
            count += 1
    return count


@pytest.mark.parametrize("line", list(LINES))
@BIG_SETTINGS
@given(data=st.data())
def test_decoded_tensors_are_views_of_the_buffer(line: str, data: st.DataObject) -> None:
    fc = LINES[line][1]
    name = "TaskIns" if line == "v1_12" else "PushMessagesRequest"
    msg = data.draw(S_BIG[line][name])
    buffer = bytes(fc.encode(msg))
    _assert_views_of(fc.decode(type(msg), buffer), buffer)


def test_zero_copy_of_a_known_payload() -> None:
    arrays = [np.arange(n, dtype=np.float32) for n in (0, 1, 3 * 2**18)]
    record = pb15.ParametersRecord(
        data_keys=["a", "b", "c"],
        data_values=[pb15.Array(dtype="<f4", shape=[a.size], data=a.tobytes()) for a in arrays],
    )
    msg = pb15.Message(content=pb15.RecordSet(parameters={"p": record}))
    buffer = bytes(fc15.encode(msg))
    decoded = fc15.decode(pb15.Message, buffer)
    assert _assert_views_of(decoded, buffer) == 2
    got = decoded.content.parameters["p"].data_values
    for want, array in zip(arrays, got, strict=True):
        view = np.frombuffer(array.data, dtype=np.float32)
        np.testing.assert_array_equal(view, want)
        assert not view.flags.writeable
    legacy = pb12.ServerMessage(
        fit_ins=pb12.ServerMessageFitIns(parameters=pb12.Parameters(tensors=[b"ab", b"", b"c"]))
    )
    buffer = bytes(fc12.encode(legacy))
    tensors = fc12.decode(pb12.ServerMessage, buffer).fit_ins.parameters.tensors
    assert [t.obj is buffer for t in tensors] == [True, True, True]
    assert [bytes(t) for t in tensors] == [b"ab", b"", b"c"]


def test_flwr_sdk_records_accept_decoded_views() -> None:
    from flwr_sdk.common.records import Array

    array = np.linspace(0, 1, 1000, dtype=np.float64).reshape(10, 100)
    wire = pb15.Array(dtype="", shape=[], stype="numpy.ndarray", data=_npy_bytes(array))
    # A writable buffer owned by this one message, as the tuned receive path hands over.
    buffer = memoryview(
        bytearray(
            fc15.encode(
                pb15.Message(
                    content=pb15.RecordSet(
                        parameters={"p": pb15.ParametersRecord(data_keys=["w"], data_values=[wire])}
                    )
                )
            )
        )
    )
    data = fc15.decode(pb15.Message, buffer).content.parameters["p"].data_values[0].data
    rebuilt = Array(dtype=wire.dtype, shape=list(wire.shape), stype=wire.stype, data=data)
    out = rebuilt.numpy()
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(buffer, dtype=np.uint8))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


# ------------------------------------------------------------- malformed input


def _upb_rejects(cls: Any, data: bytes) -> bool:
    try:
        cls.FromString(data)
    except Exception:
        return True
    return False


def _ours_rejects(fc: ModuleType, cls: type, data: bytes) -> bool:
    try:
        fc.decode(cls, data)
    except fc.DecodeError:
        return True
    return False


TRUNCATION_TYPES = {
    "TaskIns",
    "Message",
    "ServerMessage",
    "ClientMessage",
    "PushTaskResRequest",
    "PullMessagesResponse",
    "RecordSet",
}


@pytest.mark.parametrize(
    ("line", "name"), [(line, name) for line, name in CASES if name in TRUNCATION_TYPES]
)
@settings(SETTINGS, max_examples=15)
@given(data=st.data())
def test_truncation_matches_protobuf(line: str, name: str, data: st.DataObject) -> None:
    """Every prefix: we reject it exactly when protobuf does (cuts at field boundaries are
    valid messages in protobuf too)."""
    fc = LINES[line][1]
    msg = data.draw(S_BETTER[line][name])
    encoded = bytes(fc.encode(msg))
    upb = upb_class(line, full_name(msg))
    cuts = (
        range(len(encoded))
        if len(encoded) < 300
        else random.Random(0).sample(range(len(encoded)), 300)
    )
    for cut in cuts:
        prefix = encoded[:cut]
        assert _ours_rejects(fc, type(msg), prefix) == _upb_rejects(upb, prefix), cut


@pytest.mark.parametrize(("line", "name"), CASES)
@settings(SETTINGS, max_examples=60)
@given(data=st.data(), blob=st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(
    line: str, name: str, data: st.DataObject, blob: bytes
) -> None:
    fc = LINES[line][1]
    cls = getattr(LINES[line][0], name)
    if data.draw(st.booleans()):
        valid = bytes(fc.encode(data.draw(S_BETTER[line][name])))
        if valid:  # flip a few bytes of a valid encoding
            raw = bytearray(valid)
            for _ in range(data.draw(st.integers(1, 3))):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            blob = bytes(raw)
    try:
        decoded = fc.decode(cls, blob)
    except fc.DecodeError:
        return
    assert type(decoded) is cls
    bytes(fc.encode(decoded))  # whatever decodes re-encodes


def test_bad_varints() -> None:
    with pytest.raises(fc12.DecodeError, match="varint"):
        fc12.decode(pb12.Node, b"\x08" + b"\xff" * 10 + b"\x01")  # 11 bytes
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.Node, b"\x08\xff\xff")
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.Node, b"\x88")  # truncated tag
    # A 10-byte varint is fine; bits past 64 are dropped, like protobuf.
    assert fc12.decode(pb12.Node, b"\x08" + b"\xff" * 9 + b"\x01").node_id == U64_MAX


def test_truncated_and_overlong_lengths() -> None:
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.Array, b"\x22\x05abc")
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.Array, b"\x22" + b"\xff" * 9 + b"\x01")
    # A sub-message's length may not run past its parent's end.
    inner = bytes(fc12.encode(pb12.Array(data=b"abcd")))
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.ParametersRecord, b"\x12" + bytes([len(inner) + 1]) + inner + b"\x0a")
    with pytest.raises(fc12.DecodeError, match="truncated"):
        fc12.decode(pb12.Task, b"\x19\x00\x00")  # double cut short


@pytest.mark.parametrize(
    "data",
    [
        b"\x20\x01",  # Array.data (bytes) as a varint
        b"\x0d\x00\x00\x00\x00",  # Array.dtype as fixed32
        b"\x11" + bytes(8),  # Array.shape (int32) as fixed64
        b"\x0f",  # invalid wire type 7
        b"\x00",  # field number 0
        b"\x24",  # stray end-group
    ],
)
def test_wrong_wire_types_and_invalid_tags(data: bytes) -> None:
    with pytest.raises(fc12.DecodeError):
        fc12.decode(pb12.Array, data)


def test_packed_fixed_run_must_be_whole() -> None:
    with pytest.raises(fc12.DecodeError, match="packed"):
        fc12.decode(pb12.DoubleList, b"\x0a\x07" + bytes(7))


def test_invalid_utf8() -> None:
    with pytest.raises(fc12.DecodeError, match="UTF-8"):
        fc12.decode(pb12.Array, b"\x0a\x02\xc3\x28")


def test_unknown_fields_are_skipped() -> None:
    msg = pb12.Array(dtype="f", shape=[1, -2], data=b"xyz")
    unknown = (
        b"\x28\x96\x01"  # 5: varint
        + b"\x31"
        + bytes(8)  # 6: fixed64
        + b"\x3a\x03abc"  # 7: length-delimited
        + b"\x45"
        + bytes(4)  # 8: fixed32
        + b"\x4b\x50\x01\x53\x58\x02\x54\x4c"  # 9: group holding a varint and a nested group
    )
    encoded = bytes(fc12.encode(msg))
    for data in (unknown + encoded, encoded + unknown):
        assert_same_message(fc12.decode(pb12.Array, data), msg)
        theirs = upb_class("v1_12", "flwr.proto.Array").FromString(data)
        theirs.DiscardUnknownFields()  # protobuf keeps them; we skip them
        assert theirs == to_upb("v1_12", msg)


def test_unpacked_repeated_scalars_are_accepted() -> None:
    data = b"\x10\x01\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12\x01\x03"
    assert fc12.decode(pb12.Array, data).shape == [1, -1, 3]
    assert fc12.decode(pb12.DoubleList, b"\x09" + struct.pack("<d", 2.5)).vals == [2.5]


def test_last_oneof_member_wins() -> None:
    data = bytes(fc12.encode(pb12.Scalar(double=1.5))) + bytes(fc12.encode(pb12.Scalar(string="x")))
    decoded = fc12.decode(pb12.Scalar, data)
    assert decoded.string == "x"
    assert decoded.double is None


def test_nesting_depth_is_bounded() -> None:
    deep = b"\x2b" * 150 + b"\x2c" * 150  # field 5 groups nested 150 deep (unknown to Node)
    with pytest.raises(fc12.DecodeError, match="nesting"):
        fc12.decode(pb12.Node, deep)
    shallow = b"\x2b" * 50 + b"\x2c" * 50
    assert fc12.decode(pb12.Node, shallow) == pb12.Node()


def test_decode_errors_are_value_errors() -> None:
    assert issubclass(fc12.DecodeError, ValueError)
    assert issubclass(fc15.EncodeError, ValueError)
    assert set(DECODE_ERRORS) == {fc12.DecodeError, fc15.DecodeError}


# ------------------------------------------------------------ FastProtoCodec


def test_codec_helpers() -> None:
    assert fast_codec_for(pb12.TaskIns) is fc12
    assert fast_codec_for(pb15.Message) is fc15
    assert fast_codec_for(pb12.PingRequest) is None
    ins = pb12.TaskIns(task_id="t", task=pb12.Task(recordset=pb12.RecordSet()))
    encoded = encode_message(ins)
    assert isinstance(encoded, memoryview) and bytes(encoded) == bytes(ins)
    assert decode_message(pb12.TaskIns, bytes(encoded)) == ins
    ping = pb12.PingRequest(node=pb12.Node(node_id=5), ping_interval=3.0)
    assert encode_message(ping) == bytes(ping)
    assert decode_message(pb12.PingRequest, bytearray(bytes(ping))) == ping


def test_fast_proto_codec_unit() -> None:
    codec = FastProtoCodec()
    assert codec.__content_subtype__ == "proto"
    res = pb12.TaskRes(
        task=pb12.Task(
            recordset=pb12.RecordSet(
                parameters={
                    "p": pb12.ParametersRecord(
                        data_keys=["a"], data_values=[pb12.Array(data=b"x" * 100)]
                    )
                }
            )
        )
    )
    assert codec.covers(pb12.TaskRes) and not codec.covers(pb12.PingResponse)
    wire = codec.encode(res, pb12.TaskRes)
    assert bytes(wire) == bytes(res)
    framed = b"\x00" + struct.pack(">I", len(wire)) + wire  # what grpclib's send_message does
    assert framed[5:] == bytes(res)
    decoded = codec.decode(framed[5:], pb12.TaskRes)
    assert decoded == res
    assert isinstance(decoded.task.recordset.parameters["p"].data_values[0].data, memoryview)
    with pytest.raises(TypeError, match="must be of type"):
        codec.encode(res, pb12.TaskIns)
    pong = pb12.PingResponse(success=True)
    assert codec.encode(pong, pb12.PingResponse) == bytes(pong)
    assert codec.decode(bytes(pong), pb12.PingResponse) == pong


def test_fast_proto_codec_over_grpclib() -> None:
    """A grpclib server and channel both using FastProtoCodec (Fleet PushTaskRes/PullTaskIns)."""
    from grpclib.client import Channel
    from grpclib.server import Server

    payload = np.random.default_rng(1).standard_normal(2**20, dtype=np.float32)
    seen: list[Any] = []

    class Fleet(pb12.FleetBase):
        async def push_task_res(self, message: pb12.PushTaskResRequest) -> pb12.PushTaskResResponse:
            seen.append(message)
            return pb12.PushTaskResResponse(results={"t": 1})

        async def pull_task_ins(self, message: pb12.PullTaskInsRequest) -> pb12.PullTaskInsResponse:
            array = pb12.Array(dtype="<f4", shape=[payload.size], data=payload.tobytes())
            task = pb12.Task(
                recordset=pb12.RecordSet(
                    parameters={"w": pb12.ParametersRecord(data_keys=["0"], data_values=[array])}
                )
            )
            return pb12.PullTaskInsResponse(task_ins_list=[pb12.TaskIns(task_id="t", task=task)])

    async def main() -> None:
        server = Server([Fleet()], codec=FastProtoCodec())
        await server.start("127.0.0.1", 0)
        assert server._server is not None  # grpclib exposes no public way to get the port
        port = server._server.sockets[0].getsockname()[1]
        channel = Channel("127.0.0.1", port, codec=FastProtoCodec())
        try:
            stub = pb12.FleetStub(channel)
            pulled = await stub.pull_task_ins(pb12.PullTaskInsRequest(node=pb12.Node(node_id=1)))
            data = pulled.task_ins_list[0].task.recordset.parameters["w"].data_values[0].data
            assert isinstance(data, memoryview)
            np.testing.assert_array_equal(np.frombuffer(data, dtype=np.float32), payload)
            res = pb12.TaskRes(task_id="r", task=pulled.task_ins_list[0].task)
            reply = await stub.push_task_res(pb12.PushTaskResRequest(task_res_list=[res]))
            assert reply.results == {"t": 1}
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
        got = seen[0].task_res_list[0].task.recordset.parameters["w"].data_values[0].data
        assert isinstance(got, memoryview) and got == payload.tobytes()

    asyncio.run(main())


# ------------------------------------------------------------ (d) flwr interop


def _small_maps(msg: Any) -> bool:
    """Whether every map in ``msg`` has at most one entry (then upb's order is ours)."""
    if isinstance(msg, dict):
        return len(msg) <= 1 and all(_small_maps(v) for v in msg.values())
    if isinstance(msg, list):
        return all(_small_maps(v) for v in msg)
    if isinstance(msg, betterproto2.Message):
        return all(_small_maps(getattr(msg, n)) for n in msg._betterproto.meta_by_field_name)
    return True


def _assert_flwr_agrees(worker: Any, fc: ModuleType, msg: betterproto2.Message) -> None:
    ours = bytes(fc.encode(msg))
    theirs, their_bytes = worker.parse(full_name(msg), ours)
    assert theirs == msg.to_dict(casing=betterproto2.Casing.SNAKE)
    assert_same_message(fc.decode(type(msg), their_bytes), msg, ordered=False)
    if _small_maps(msg):
        assert their_bytes == ours


@pytest.mark.interop
@pytest.mark.parametrize("name", ["TaskIns", "TaskRes"])
@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_flwr_1_12_parses_our_bytes(flwr_1_12_worker: Any, name: str, data: st.DataObject) -> None:
    _assert_flwr_agrees(flwr_1_12_worker, fc12, data.draw(S_BETTER["v1_12"][name]))


@pytest.mark.interop
@pytest.mark.parametrize("name", ["TaskIns", "TaskRes"])
@BIG_SETTINGS
@given(data=st.data())
def test_flwr_1_12_parses_our_big_bytes(
    flwr_1_12_worker: Any, name: str, data: st.DataObject
) -> None:
    msg = data.draw(S_INTEROP_BIG["v1_12"][name].filter(lambda m: bool(_arrays(m))))
    _assert_flwr_agrees(flwr_1_12_worker, fc12, msg)


@pytest.mark.interop
@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_flwr_1_15_parses_our_messages(flwr_1_15_worker: Any, data: st.DataObject) -> None:
    _assert_flwr_agrees(flwr_1_15_worker, fc15, data.draw(S_BETTER["v1_15"]["Message"]))


@pytest.mark.interop
def test_flwr_1_12_parses_our_multi_mib_task_ins(flwr_1_12_worker: Any) -> None:
    arrays = [np.random.default_rng(i).standard_normal(2**19, dtype=np.float32) for i in range(3)]
    record = pb12.ParametersRecord(
        data_keys=["a", "b", "c"],
        data_values=[pb12.Array(dtype="<f4", shape=[a.size], data=a.tobytes()) for a in arrays],
    )
    msg = pb12.TaskIns(
        task_id="t",
        group_id="1",
        run_id=2**63 + 1,
        task=pb12.Task(
            producer=pb12.Node(node_id=0, anonymous=True),
            consumer=pb12.Node(node_id=2**64 - 1),
            created_at=1.7e9,
            ttl=3600.0,
            task_type="train",
            recordset=pb12.RecordSet(parameters={"model": record}),
        ),
    )
    _assert_flwr_agrees(flwr_1_12_worker, fc12, msg)


class _Segments:
    """A SegmentedBytes value: the concatenation of its segments."""

    def __init__(self, *segments: bytes | memoryview) -> None:
        self.segments = segments

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    def byte_segments(self) -> tuple[bytes | memoryview, ...]:
        return self.segments


@pytest.mark.parametrize("line", list(LINES))
@pytest.mark.parametrize("sizes", [(0,), (3, 5), (100, 1 << 17), (1 << 16, 0, 7)])
def test_segmented_bytes_values_encode_like_their_concatenation(
    line: str, sizes: tuple[int, ...]
) -> None:
    fc = LINES[line][1]
    pb_mod = LINES[line][0]
    rng = np.random.default_rng(len(sizes))
    segments = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    joined = b"".join(segments)
    views = [memoryview(s) for s in segments]
    lazy = pb_mod.ParametersRecord(
        data_keys=["a", "b"],
        data_values=[
            pb_mod.Array(dtype="u1", shape=[len(joined)], stype="raw", data=_Segments(*views)),
            pb_mod.Array(dtype="u1", shape=[2], stype="raw", data=b"xy"),
        ],
    )
    plain = pb_mod.ParametersRecord(
        data_keys=["a", "b"],
        data_values=[
            pb_mod.Array(dtype="u1", shape=[len(joined)], stype="raw", data=joined),
            pb_mod.Array(dtype="u1", shape=[2], stype="raw", data=b"xy"),
        ],
    )
    expected = bytes(plain)
    assert bytes(fc.encode(lazy)) == expected
    assert fc.encoded_size(lazy) == len(expected)
    pieces = fc.encode_chunks(lazy)
    assert b"".join(pieces) == expected
    if len(joined) >= 1 << 16:
        assert all(any(p is v for p in pieces) for v in views if len(v))
