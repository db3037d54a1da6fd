"""What a hostile Flower server answers: seeded, reproducible fuzz for every transport.

A *frame* is one scenario for one client session: the server answers every call as a
well-behaved server of its wire line would (:class:`NormalFleet`), except the calls of
one or two *roles* (``register``, ``pull``, ``join_first``, …), which get a fuzzed
answer once. :func:`fuzz_frame` draws a frame from a seed, so a failing frame is rerun
exactly from the seed printed with it.

The answers are raw bytes on the wire, so they can be anything a server could send:

* gRPC (:class:`GrpcAnswer`): a list of HTTP/2 actions — headers, DATA with any
  gRPC length prefix and compressed flag, trailers with any ``grpc-status`` (or none),
  ``RST_STREAM``, ``GOAWAY``, closing the connection;
* REST (:class:`HttpAnswer`): the exact bytes of an HTTP/1.1 response (any status, any
  headers, a ``Content-Length`` that lies), and whether to close the connection after.

Payloads: random bytes, valid protobufs of another message type, random instances of
the expected type (ids 0 and 2^64 - 1, NaN times, empty oneofs, undefined enum
values, hostile ``.npy`` headers in tensors), a well-formed answer mutated or truncated,
and answers that are valid protobuf but break the line's rules (an instruction for
another node, created in the future, with NaN ttl, error-only, without task, with
both content and error, …).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import random
import struct
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import betterproto2
import numpy as np
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from flwr_sdk_proto.v1_15.flwr import proto as pb15

from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common import legacy_types as lt
from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.ndarrays import ndarray_to_bytes
from flwr_sdk.wire import bidi, v1_12, v1_15
from flwr_sdk.wire.base import FleetLine

__all__ = [
    "BIDI_ROLES",
    "FLEET_ROLES",
    "NODE_ID",
    "RUN_ID",
    "TASK_ID",
    "Close",
    "Data",
    "Frame",
    "GoAway",
    "GrpcAction",
    "GrpcAnswer",
    "Headers",
    "HttpAnswer",
    "NormalFleet",
    "Reset",
    "fuzz_frame",
    "grpc_frame",
    "grpc_ok",
    "grpc_status",
    "http_response",
    "instruction",
    "message_classes",
    "random_bytes",
    "random_message",
]

NODE_ID = 2**63 + 7
"""The node id the normal server hands out (>= 2^63, as real SuperLinks do)."""
RUN_ID = 2**64 - 3
"""The run of every normal instruction."""
TASK_ID = "0b7a5f0e-3c1d-4f6e-9a2b-5d8c7e6f1a30"

FLEET_ROLES = (
    "probe",
    "register",
    "heartbeat",
    "pull",
    "get_run",
    "get_fab",
    "push",
    "unregister",
)
"""The roles of Fleet calls (grpc-rere and REST); ``probe`` is line detection."""
BIDI_ROLES = ("join_first", "join_second")
"""grpc-bidi: the first and the second ServerMessage of a Join stream."""

LINES: dict[str, FleetLine] = {"1.12": v1_12.LINE, "1.15": v1_15.LINE}
PROTO: dict[str, ModuleType] = {"1.12": pb12, "1.15": pb15}

PROTOBUF = b"application/protobuf"

# ------------------------------------------------------------------------ gRPC actions


@dataclass(frozen=True)
class Headers:
    """A HEADERS frame (response headers or trailers); names and values as bytes."""

    pairs: tuple[tuple[bytes, bytes], ...]
    end_stream: bool = False


@dataclass(frozen=True)
class Data:
    """A DATA payload (split into frames as flow control allows)."""

    data: bytes
    end_stream: bool = False


@dataclass(frozen=True)
class Reset:
    """``RST_STREAM`` with an HTTP/2 error code."""

    code: int


@dataclass(frozen=True)
class GoAway:
    """``GOAWAY`` with an error code, then the connection is closed."""

    code: int


@dataclass(frozen=True)
class Close:
    """Close the TCP connection at once."""


GrpcAction = Headers | Data | Reset | GoAway | Close


@dataclass(frozen=True)
class GrpcAnswer:
    """What the server does on one gRPC stream, in order."""

    description: str
    actions: tuple[GrpcAction, ...]


@dataclass(frozen=True)
class HttpAnswer:
    """The exact bytes of one HTTP/1.1 response; ``close`` drops the connection after."""

    description: str
    raw: bytes
    close: bool = False


Answer = GrpcAnswer | HttpAnswer


def grpc_frame(body: bytes, *, declared: int | None = None, compressed: int = 0) -> bytes:
    """One gRPC length-prefixed message (``declared``: a length that may lie)."""
    length = len(body) if declared is None else declared
    return bytes([compressed]) + struct.pack(">I", length) + body


RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))


def grpc_ok(body: bytes, description: str = "OK") -> GrpcAnswer:
    """A normal unary answer: headers, one message, ``grpc-status: 0``."""
    return GrpcAnswer(
        description,
        (
            Headers(RESPONSE_HEADERS),
            Data(grpc_frame(body)),
            Headers(((b"grpc-status", b"0"),), end_stream=True),
        ),
    )


def grpc_status(code: int | bytes, message: bytes = b"", description: str = "") -> GrpcAnswer:
    """A trailers-only answer with ``grpc-status: code``."""
    value = str(code).encode() if isinstance(code, int) else code
    pairs: tuple[tuple[bytes, bytes], ...] = (*RESPONSE_HEADERS, (b"grpc-status", value))
    if message:
        pairs = (*pairs, (b"grpc-message", message))
    return GrpcAnswer(description or f"grpc-status {value!r}", (Headers(pairs, end_stream=True),))


def http_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes | None = PROTOBUF,
    content_length: int | None = None,
    reason: bytes = b"X",
    extra: Sequence[tuple[bytes, bytes]] = (),
    close: bool = False,
    description: str = "",
) -> HttpAnswer:
    """An HTTP/1.1 response (``content_length``: a length that may lie)."""
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    if content_type is not None:
        lines.append(b"content-type: " + content_type)
    length = len(body) if content_length is None else content_length
    lines.append(b"content-length: %d" % length)
    lines.extend(name + b": " + value for name, value in extra)
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    return HttpAnswer(description or f"HTTP {status}", raw, close=close)


# ----------------------------------------------------------- random protobuf messages

_NOW = time.time()
_UINT_EDGES = {
    "uint64": (0, 1, 2, 2**63, 2**64 - 1),
    "fixed64": (0, 1, 2**64 - 1),
    "uint32": (0, 1, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
}
_SINT_EDGES = {
    "int64": (0, -1, 1, -(2**63), 2**63 - 1),
    "sint64": (0, -1, 1, -(2**63), 2**63 - 1),
    "sfixed64": (0, -(2**63), 2**63 - 1),
    "int32": (0, -1, 2**31 - 1, -(2**31)),
    "sint32": (0, -1, 2**31 - 1, -(2**31)),
    "sfixed32": (0, -(2**31), 2**31 - 1),
}
_RANGES = {
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
}
_FLOATS = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    3600.0,
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    5e-324,
    _NOW,
    _NOW + 1e6,
    _NOW - 1e6,
)
_STRINGS = (
    "",
    "train",
    "evaluate",
    "get_parameters",
    "get_properties",
    "reconnect",
    "query",
    "1",
    TASK_ID,
    "fitins.parameters",
    "fitins.config",
    "x" * 300,
    "\u202e\x00\u2603",
    "numpy.ndarray",
)


def _npy(header: str, data: bytes = b"") -> bytes:
    """A ``.npy`` file with an arbitrary header (to attack the array loader)."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


_HOSTILE_TENSORS = (
    _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"),
    _npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\x80\x04N."),
    _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", b"\x00" * 8),
    _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }"),
    _npy("{'descr': '<V2147483647', 'fortran_order': False, 'shape': (1,), }"),
    b"\x93NUMPY\x01\x00\xff\xff",
    b"\x93NUMPY",
)


def random_bytes(rng: random.Random, most: int = 48) -> bytes:
    return rng.randbytes(rng.randint(0, most))


def _random_scalar(rng: random.Random, proto_type: str, cls: Any) -> Any:
    if proto_type in _RANGES:
        if rng.random() < 0.6:
            edges = _UINT_EDGES.get(proto_type) or _SINT_EDGES[proto_type]
            return rng.choice(edges)
        return rng.randint(*_RANGES[proto_type])
    if proto_type in ("double", "float"):
        value = rng.choice(_FLOATS) if rng.random() < 0.7 else rng.uniform(-1e9, 1e9)
        if proto_type == "float" and math.isfinite(value) and abs(value) > 3e38:
            value = math.copysign(3e38, value)  # a 32-bit float cannot hold more
        return value
    if proto_type == "bool":
        return rng.random() < 0.5
    if proto_type == "string":
        if rng.random() < 0.8:
            return rng.choice(_STRINGS)
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 12)))
    if proto_type == "bytes":
        if rng.random() < 0.25:
            return rng.choice(_HOSTILE_TENSORS)
        if rng.random() < 0.2:
            return ndarray_to_bytes(np.zeros(rng.randint(0, 4)))
        return random_bytes(rng)
    if proto_type == "enum":
        members = [int(m) for m in cls]
        if rng.random() < 0.2:
            return cls(rng.choice((max(members) + 1, 99, 2**31 - 1, -1)))
        return cls(rng.choice(members))
    raise AssertionError(f"no generator for {proto_type}")


def random_message(cls: type[Any], rng: random.Random, depth: int = 0) -> Any:
    """An instance of the betterproto2 class ``cls`` with hostile random field values.

    Optional sub-messages are left out at random; each oneof gets at most one member;
    integers take edge values (0, 2^64 - 1, …) or any value of their type's range.
    """
    meta: Any = cls._betterproto
    classes = meta.cls_by_field
    values: dict[str, Any] = {}
    groups: dict[str, list[dataclasses.Field[Any]]] = {}
    for fld in dataclasses.fields(cls):
        fmeta: betterproto2.FieldMetadata = fld.metadata["betterproto"]
        if fmeta.group is not None:
            groups.setdefault(fmeta.group, []).append(fld)
            continue
        if rng.random() < 0.35:
            continue  # default value
        values[fld.name] = _random_field(fld, fmeta, classes, rng, depth)
    for members in groups.values():
        if rng.random() < 0.85:
            chosen = rng.choice(members)
            fmeta = chosen.metadata["betterproto"]
            values[chosen.name] = _random_field(chosen, fmeta, classes, rng, depth)
    return cls(**values)


def _random_field(
    fld: dataclasses.Field[Any],
    fmeta: betterproto2.FieldMetadata,
    classes: dict[str, Any],
    rng: random.Random,
    depth: int,
) -> Any:
    def one(proto_type: str, sub: Any) -> Any:
        if proto_type == "message":
            if depth >= 4:
                return sub()
            return random_message(sub, rng, depth + 1)
        return _random_scalar(rng, proto_type, sub)

    if fmeta.proto_type == "map":
        assert fmeta.map_meta is not None
        key_meta, value_meta = fmeta.map_meta
        sub = classes.get(f"{fld.name}.value")
        return {
            one(key_meta.proto_type, None): one(value_meta.proto_type, sub)
            for _ in range(rng.randint(0, 3))
        }
    sub = classes.get(fld.name)
    if fmeta.repeated:
        return [one(fmeta.proto_type, sub) for _ in range(rng.randint(0, 3))]
    return one(fmeta.proto_type, sub)


def message_classes(pb: ModuleType) -> list[type[Any]]:
    """Every message class of a line's generated module, in a stable order."""
    return sorted(
        (
            value
            for value in vars(pb).values()
            if isinstance(value, type)
            and issubclass(value, betterproto2.Message)
            and value is not betterproto2.Message
        ),
        key=lambda c: c.__name__,
    )


# ------------------------------------------------------------------ normal answers


def _fab_zip(pyproject: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pyproject.toml", pyproject)
    return buffer.getvalue()


NORMAL_FAB = _fab_zip(
    b'[project]\nname = "hostile"\nversion = "1.0.0"\n\n'
    b'[tool.flwr.app]\npublisher = "x"\n\n[tool.flwr.app.config]\nlr = 0.1\n'
)


def instruction(message_type: str = "get_properties") -> Message:
    """A well-formed instruction for :data:`NODE_ID` (line-neutral)."""
    metadata = Metadata(
        run_id=RUN_ID,
        message_id=TASK_ID,
        src_node_id=0,
        dst_node_id=NODE_ID,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type=message_type,
        created_at=time.time() - 1.0,
    )
    kind = lr.LEGACY_KINDS_BY_TYPE[message_type]
    ins: Any
    if kind is lr.FIT_KIND:
        tensors: list[Any] = [ndarray_to_bytes(np.ones(3))]
        params = lt.Parameters(tensors=tensors, tensor_type="numpy.ndarray")
        ins = lt.FitIns(parameters=params, config={"epochs": 1})
    elif kind is lr.EVALUATE_KIND:
        params = lt.Parameters(tensors=[], tensor_type="numpy.ndarray")
        ins = lt.EvaluateIns(parameters=params, config={})
    elif kind is lr.GET_PARAMETERS_KIND:
        ins = lt.GetParametersIns(config={})
    else:
        ins = lt.GetPropertiesIns(config={"k": "v"})
    return Message(metadata, content=kind.ins_to_recordset(ins, keep_input=True))


@dataclass
class NormalFleet:
    """What a well-behaved server of ``line`` answers to each role (protobuf objects)."""

    line: str
    fab: bytes | None = None

    @property
    def pb(self) -> ModuleType:
        """The line's generated module."""
        return PROTO[self.line]

    def response_type(self, role: str) -> type[Any]:
        """The response class of ``role`` on this line."""
        rpc = getattr(LINES[self.line].rpcs, "pull" if role == "probe" else role)
        response_type: type[Any] = rpc.response_type
        return response_type

    def wire_instruction(self, message: Message | None = None) -> Any:
        """The pulled form of ``message`` (default: :func:`instruction`)."""
        message = message or instruction()
        if self.line == "1.12":
            task_ins = v1_12.message_to_task_ins(message)
            assert task_ins.task is not None
            task_ins.task.producer = pb12.Node(node_id=0, anonymous=True)
            return task_ins
        wire = v1_15.message_to_wire(message)
        assert wire.metadata is not None
        wire.metadata.src_node_id = v1_15.SERVER_NODE_ID
        return wire

    def pull_response(self, entries: list[Any]) -> Any:
        """A pull response carrying ``entries``."""
        if self.line == "1.12":
            return pb12.PullTaskInsResponse(task_ins_list=entries)
        return pb15.PullMessagesResponse(messages_list=entries)

    def answer(self, role: str) -> Any:
        """The normal response object of ``role``."""
        pb = self.pb
        if role == "probe":
            return self.pull_response([])
        if role == "register":
            node = (
                pb.Node(node_id=NODE_ID, anonymous=False)
                if self.line == "1.12"
                else (pb.Node(node_id=NODE_ID))
            )
            return pb.CreateNodeResponse(node=node)
        if role == "heartbeat":
            return pb.PingResponse(success=True)
        if role == "pull":
            return self.pull_response([self.wire_instruction()])
        if role == "get_run":
            fab_hash = hashlib.sha256(self.fab).hexdigest() if self.fab is not None else ""
            run = pb.Run(run_id=RUN_ID, fab_id="x/hostile", fab_version="1.0.0", fab_hash=fab_hash)
            return pb.GetRunResponse(run=run)
        if role == "get_fab":
            content = self.fab or b""
            return pb.GetFabResponse(
                fab=pb.Fab(hash_str=hashlib.sha256(content).hexdigest(), content=content)
            )
        if role == "push":
            if self.line == "1.12":
                return pb12.PushTaskResResponse(reconnect=pb12.Reconnect(reconnect=5))
            return pb15.PushMessagesResponse(reconnect=pb15.Reconnect(reconnect=5))
        if role == "unregister":
            return pb.DeleteNodeResponse()
        raise AssertionError(f"unknown role {role}")


def normal_server_message(step: str) -> bytes:
    """The normal grpc-bidi ServerMessage of ``step``.

    ``join_first``: a ``train`` instruction; any later step: ``ReconnectIns(seconds=0)``.
    """
    if step == "join_first":
        return bytes(bidi.instruction_to_server_message(instruction("train")))
    return bytes(bidi.reconnect_ins(None))


# ------------------------------------------------------------------- fuzzed payloads


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if out and choice < 0.4:
            index = rng.randrange(len(out))
            out[index] ^= 1 << rng.randrange(8)
        elif out and choice < 0.6:
            out[rng.randrange(len(out))] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        elif choice < 0.8:
            at = rng.randint(0, len(out))
            out[at:at] = rng.randbytes(rng.randint(1, 6))
        elif out:
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 6)]
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 70) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _raw_field_soup(rng: random.Random) -> bytes:
    """Valid-looking protobuf fields of random numbers and wire types."""
    out = bytearray()
    for _ in range(rng.randint(1, 5)):
        number = rng.choice((1, 2, 3, 4, 5, 9, 10, 15, 536870911))
        wire_type = rng.choice((0, 1, 2, 5))
        out += _varint(number << 3 | wire_type)
        if wire_type == 0:
            out += _varint(rng.choice((0, 1, 2**63, 2**64 - 1, 2**70 - 1)))
        elif wire_type == 1:
            out += rng.randbytes(8)
        elif wire_type == 5:
            out += rng.randbytes(4)
        else:
            inner = rng.randbytes(rng.randint(0, 12))
            out += _varint(len(inner)) + inner
    return bytes(out)


def _break_instruction(rng: random.Random, normal: NormalFleet) -> tuple[str, Any]:
    """A pull response whose instruction breaks one or more of the line's rules."""
    message = instruction(rng.choice(("get_properties", "get_parameters", "train", "evaluate")))
    wire = normal.wire_instruction(message)
    breaks: list[str] = []
    entries = [wire]
    for _ in range(rng.randint(1, 3)):
        rule = rng.choice(
            (
                "created_at",
                "ttl",
                "dst",
                "no_content",
                "error_only",
                "both",
                "no_envelope",
                "message_type",
                "run_id",
                "ids",
                "reply_to",
                "extra_entries",
                "records",
            )
        )
        breaks.append(rule)
        _apply_break(rng, normal, wire, entries, rule)
    return "instruction breaking " + "+".join(breaks), normal.pull_response(entries)


def _apply_break(
    rng: random.Random, normal: NormalFleet, wire: Any, entries: list[Any], rule: str
) -> None:
    pb = normal.pb
    meta: Any = None if normal.line == "1.12" else wire.metadata
    times: Any = wire.task if normal.line == "1.12" else meta
    if times is None:
        return
    if rule == "created_at":
        times.created_at = rng.choice((_NOW + 1e6, math.nan, math.inf, -math.inf, 0.0))
    elif rule == "ttl":
        times.ttl = rng.choice((0.0, -1.0, math.nan, math.inf, 1e-9))
    elif rule == "dst":
        other = rng.choice((0, 1, NODE_ID + 1, 2**64 - 1))
        if normal.line == "1.12":
            wire.task.consumer = rng.choice((None, pb.Node(node_id=other, anonymous=True)))
        else:
            meta.dst_node_id = other
    elif rule == "no_content":
        if normal.line == "1.12":
            wire.task.recordset = None
        else:
            wire.content = None
    elif rule == "error_only":
        error = pb.Error(code=rng.choice((0, 2, 3, -1, 2**63 - 1)), reason=rng.choice(_STRINGS))
        if normal.line == "1.12":
            wire.task.recordset, wire.task.error = None, error
        else:
            wire.content, wire.error = None, error
    elif rule == "both":
        error = pb.Error(code=2, reason="both")
        if normal.line == "1.12":
            wire.task.error = error
        else:
            wire.error = error
    elif rule == "no_envelope":
        if normal.line == "1.12":
            wire.task = None
        else:
            wire.metadata = None
    elif rule == "message_type":
        message_type = rng.choice(("", "reconnect", "query", "unknown", "train\x00"))
        if normal.line == "1.12":
            wire.task.task_type = message_type
        else:
            meta.message_type = message_type
    elif rule == "run_id":
        run_id = rng.choice((0, 2**64 - 1))
        if normal.line == "1.12":
            wire.run_id = run_id
        else:
            meta.run_id = run_id
    elif rule == "ids":
        task_id = rng.choice(("", "not-a-uuid", "x" * 1000))
        if normal.line == "1.12":
            wire.task_id = task_id
        else:
            meta.message_id = task_id
    elif rule == "reply_to":
        if normal.line == "1.12":
            wire.task.ancestry = [TASK_ID, "second"]
        else:
            meta.reply_to_message = TASK_ID
    elif rule == "extra_entries":
        entries.extend(normal.wire_instruction() for _ in range(rng.randint(1, 3)))
    elif rule == "records":
        recordset = random_message(pb.RecordSet, rng)
        if normal.line == "1.12":
            if wire.task.recordset is not None:
                wire.task.recordset = recordset
        elif wire.content is not None:
            wire.content = recordset


def _wrong_ids(rng: random.Random, normal: NormalFleet, role: str) -> tuple[str, Any]:
    pb = normal.pb
    if role == "register":
        node_id = rng.choice((0, 1, 2**64 - 1))
        kwargs: dict[str, Any] = {"node_id": node_id}
        if normal.line == "1.12":
            kwargs["anonymous"] = rng.random() < 0.5
        node = rng.choice((None, pb.Node(**kwargs)))
        return f"CreateNode with node {node!r}", pb.CreateNodeResponse(node=node)
    if role == "get_run":
        run = random_message(pb.Run, rng)
        return "GetRun with a random Run", pb.GetRunResponse(run=run)
    if role == "get_fab":
        content = rng.choice((b"", b"PK\x03\x04", _fab_zip(rng.randbytes(64)), NORMAL_FAB))
        fab = pb.Fab(hash_str=rng.choice(("", "00" * 32)), content=content)
        return "GetFab with a wrong FAB", pb.GetFabResponse(fab=fab)
    if role == "heartbeat":
        return "Ping success=false", pb.PingResponse(success=False)
    return f"random {normal.response_type(role).__name__}", random_message(
        normal.response_type(role), rng
    )


def _payload(rng: random.Random, normal: NormalFleet, role: str) -> tuple[str, bytes]:
    """A fuzzed message body for ``role`` (one of :data:`FLEET_ROLES`)."""
    expected = normal.response_type(role)
    well_formed = bytes(normal.answer(role))
    kind = rng.random()
    if kind < 0.12:
        return "random bytes", random_bytes(rng, rng.choice((8, 64, 512)))
    if kind < 0.22:
        return "raw field soup", _raw_field_soup(rng)
    if kind < 0.40:
        other = rng.choice([c for c in message_classes(normal.pb) if c is not expected])
        return f"a {other.__name__} where a {expected.__name__} belongs", bytes(
            random_message(other, rng)
        )
    if kind < 0.55:
        return f"random {expected.__name__}", bytes(random_message(expected, rng))
    if kind < 0.68:
        return "mutated answer", _mutate(rng, well_formed)
    if kind < 0.76:
        cut = rng.randint(0, max(len(well_formed) - 1, 0))
        return f"answer truncated to {cut} of {len(well_formed)} bytes", well_formed[:cut]
    if role == "pull" and kind < 0.94:
        description, response = _break_instruction(rng, normal)
        return description, bytes(response)
    description, response = _wrong_ids(rng, normal, role)
    return description, bytes(response)


def _bidi_payload(rng: random.Random) -> tuple[str, bytes]:
    """A fuzzed ServerMessage body."""
    kind = rng.random()
    well_formed = normal_server_message("join_first")
    if kind < 0.15:
        return "random bytes", random_bytes(rng, rng.choice((8, 64, 512)))
    if kind < 0.25:
        return "raw field soup", _raw_field_soup(rng)
    if kind < 0.45:
        other = rng.choice([c for c in message_classes(pb12) if c is not pb12.ServerMessage])
        return f"a {other.__name__} where a ServerMessage belongs", bytes(
            random_message(other, rng)
        )
    if kind < 0.70:
        return "random ServerMessage", bytes(random_message(pb12.ServerMessage, rng))
    if kind < 0.85:
        return "mutated ServerMessage", _mutate(rng, well_formed)
    if kind < 0.92:
        seconds = rng.choice((-1, 0, 1, 86_401, 2**63 - 1, -(2**63)))
        message = pb12.ServerMessage(reconnect_ins=pb12.ServerMessageReconnectIns(seconds=seconds))
        return f"ReconnectIns seconds={seconds}", bytes(message)
    cut = rng.randint(0, len(well_formed) - 1)
    return f"ServerMessage truncated to {cut} bytes", well_formed[:cut]


# ---------------------------------------------------------------- answers per transport

_GRPC_STATUSES = tuple(range(1, 17))
_H2_ERRORS = (0, 1, 2, 3, 5, 7, 8, 11, 13)


def _grpc_messages(rng: random.Random) -> bytes:
    return rng.choice(
        (
            b"",
            b"database is locked",
            b"Invalid node ID",
            b"Run is finished.",
            b"%E2%98%83 percent-encoded",
            b"%ZZ broken percent",
            bytes(range(0x80, 0x90)),
            b"x" * 5000,
        )
    )


def fuzz_grpc_answer(rng: random.Random, description: str, body: bytes) -> GrpcAnswer:
    """Wrap a fuzzed body in a gRPC answer, or replace it by a hostile gRPC event."""
    kind = rng.random()
    if kind < 0.55:
        return grpc_ok(body, description)
    if kind < 0.63:
        code = rng.choice(_GRPC_STATUSES)
        return grpc_status(code, _grpc_messages(rng), f"grpc-status {code}")
    if kind < 0.66:
        value = rng.choice((b"17", b"99", b"-1", b"abc", b"", b"0 "))
        return grpc_status(value, b"", f"invalid grpc-status {value!r}")
    if kind < 0.69:
        declared = rng.choice((len(body) + 1, len(body) + 1000, 2**31, 2**32 - 1))
        return GrpcAnswer(
            f"{description}; gRPC prefix declares {declared} bytes, sends {len(body)}",
            (
                Headers(RESPONSE_HEADERS),
                Data(grpc_frame(body, declared=declared)),
                Headers(((b"grpc-status", b"0"),), end_stream=True),
            ),
        )
    if kind < 0.71:
        return GrpcAnswer(
            f"{description}; a message in two frames plus a second message",
            (
                Headers(RESPONSE_HEADERS),
                Data(grpc_frame(body) + grpc_frame(body)),
                Headers(((b"grpc-status", b"0"),), end_stream=True),
            ),
        )
    if kind < 0.73:
        return GrpcAnswer(
            f"{description}; compressed flag set, no grpc-encoding",
            (
                Headers(RESPONSE_HEADERS),
                Data(grpc_frame(body, compressed=rng.choice((1, 2, 255)))),
                Headers(((b"grpc-status", b"0"),), end_stream=True),
            ),
        )
    if kind < 0.76:
        return GrpcAnswer(
            "OK with no message",
            (Headers(RESPONSE_HEADERS), Headers(((b"grpc-status", b"0"),), end_stream=True)),
        )
    if kind < 0.79:
        return GrpcAnswer(
            f"{description}; stream ends without grpc-status",
            (Headers(RESPONSE_HEADERS), Data(grpc_frame(body), end_stream=True)),
        )
    if kind < 0.82:
        status = rng.choice((b"400", b"404", b"500", b"502", b"503", b"204", b"999"))
        with_grpc = rng.random() < 0.5
        pairs: tuple[tuple[bytes, bytes], ...] = ((b":status", status),)
        if with_grpc:
            pairs = (*pairs, (b"content-type", b"application/grpc"), (b"grpc-status", b"14"))
        return GrpcAnswer(f"HTTP :status {status!r}", (Headers(pairs, end_stream=True),))
    if kind < 0.85:
        content_type = rng.choice((b"text/html", b"application/json", b"application/grpc-web"))
        return GrpcAnswer(
            f"{description}; content-type {content_type!r}",
            (
                Headers(((b":status", b"200"), (b"content-type", content_type))),
                Data(grpc_frame(body)),
                Headers(((b"grpc-status", b"0"),), end_stream=True),
            ),
        )
    if kind < 0.89:
        code = rng.choice(_H2_ERRORS)
        before = rng.random() < 0.5
        actions: tuple[GrpcAction, ...] = (Reset(code),)
        if not before:
            actions = (Headers(RESPONSE_HEADERS), Data(grpc_frame(body)), Reset(code))
        return GrpcAnswer(f"RST_STREAM {code}" + ("" if before else " after the message"), actions)
    if kind < 0.92:
        code = rng.choice(_H2_ERRORS)
        return GrpcAnswer(f"GOAWAY {code}", (GoAway(code),))
    if kind < 0.95:
        cut = rng.randint(0, len(body) + 4)
        return GrpcAnswer(
            f"{description}; connection closed after {cut} bytes of the frame",
            (Headers(RESPONSE_HEADERS), Data(grpc_frame(body)[:cut]), Close()),
        )
    if kind < 0.97:
        return GrpcAnswer("connection closed at once", (Close(),))
    trailer = rng.choice((b"GRPC-STATUS", b"grpc-status\x00", b":status"))
    return GrpcAnswer(
        f"{description}; malformed trailer name {trailer!r}",
        (
            Headers(RESPONSE_HEADERS),
            Data(grpc_frame(body)),
            Headers(((trailer, b"0"),), end_stream=True),
        ),
    )


def fuzz_http_answer(rng: random.Random, description: str, body: bytes) -> HttpAnswer:
    """Wrap a fuzzed body in an HTTP/1.1 answer, or replace it by a hostile HTTP event."""
    kind = rng.random()
    if kind < 0.55:
        return http_response(200, body, description=description)
    if kind < 0.65:
        status = rng.choice((400, 401, 403, 404, 405, 409, 429, 500, 502, 503, 504, 599))
        text = rng.choice((b"", b"database is locked", bytes(range(256)), b"x" * 4000))
        return http_response(status, text, content_type=b"text/plain", description=f"HTTP {status}")
    if kind < 0.70:
        declared = rng.choice((len(body) + 1, len(body) + 5000, 2**40, 2**63))
        return http_response(
            200,
            body,
            content_length=declared,
            close=True,
            description=f"{description}; Content-Length {declared}, {len(body)} sent",
        )
    if kind < 0.73:
        declared = max(len(body) - rng.randint(1, 8), 0)
        return http_response(
            200,
            body,
            content_length=declared,
            close=True,
            description=f"{description}; Content-Length {declared} < {len(body)} sent",
        )
    if kind < 0.78:
        content_type = rng.choice(
            (None, b"text/html", b"application/json", b"application/protobufx")
        )
        return http_response(
            200, body, content_type=content_type, description=f"{description}; {content_type!r}"
        )
    if kind < 0.82:
        chunk_size = rng.choice((b"zz", b"ffffffffffffffff", b"-1", b"%x" % (len(body) + 9)))
        raw = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunk_size + b"\r\n" + body + b"\r\n0\r\n\r\n"
        )
        return HttpAnswer(f"{description}; chunk size {chunk_size!r}", raw, close=True)
    if kind < 0.85:
        raw = rng.choice(
            (
                b"HTTP/1.1 abc\r\n\r\n",
                b"garbage\r\n\r\n",
                b"HTTP/9.9 200 OK\r\ncontent-length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 70000 + b"\r\n\r\n",
                b"\x00\x01\x02",
            )
        )
        return HttpAnswer("malformed HTTP response", raw, close=True)
    if kind < 0.88:
        return HttpAnswer("connection closed at once", b"", close=True)
    if kind < 0.91:
        cut = rng.randint(0, 40)
        full = http_response(200, body).raw
        return HttpAnswer(f"{description}; closed after {cut} bytes", full[:cut], close=True)
    if kind < 0.94:
        return http_response(
            200,
            body,
            extra=((b"content-length", b"%d" % (len(body) + 3)),),
            close=True,
            description=f"{description}; two different Content-Length headers",
        )
    status = rng.choice((301, 302, 307, 308))
    return http_response(
        status,
        b"",
        extra=((b"location", b"http://127.0.0.1:1/elsewhere"),),
        description=f"redirect {status}",
    )


# -------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One fuzz scenario: the server's line and its one-shot answers by role."""

    seed: str
    transport: str
    line: str | None
    answers: dict[str, Answer] = field(default_factory=dict)
    fab: bytes | None = None

    @property
    def description(self) -> str:
        """What the frame does, for failure messages."""
        parts = [f"{role}: {answer.description}" for role, answer in self.answers.items()]
        line = f"line {self.line}, " if self.line else ""
        return f"{self.transport}, {line}" + "; ".join(parts)


_FLEET_WEIGHTS = {
    "probe": 8,
    "register": 22,
    "heartbeat": 10,
    "pull": 30,
    "get_run": 10,
    "get_fab": 6,
    "push": 9,
    "unregister": 5,
}


def fuzz_frame(seed: str, transport: str) -> Frame:
    """The frame of ``seed`` for ``transport`` (``grpc-rere``, ``rest``, ``grpc-bidi``)."""
    rng = random.Random(f"{seed}/{transport}")
    if transport == "grpc-bidi":
        step = rng.choice(("join_first", "join_first", "join_second"))
        description, body = _bidi_payload(rng)
        if rng.random() < 0.6:  # the message alone: the conversation goes on
            answer = GrpcAnswer(description, (Data(grpc_frame(body)),))
        else:
            answer = fuzz_grpc_answer(rng, description, body)
        return Frame(seed, transport, None, {step: answer})
    line = rng.choice(("1.12", "1.15"))
    role = rng.choices(list(_FLEET_WEIGHTS), weights=list(_FLEET_WEIGHTS.values()))[0]
    fab = NORMAL_FAB if role == "get_fab" else None
    normal = NormalFleet(line, fab)
    description, body = _payload(rng, normal, role)
    wrap: Callable[[random.Random, str, bytes], Answer] = (
        fuzz_grpc_answer if transport == "grpc-rere" else fuzz_http_answer
    )
    return Frame(seed, transport, line, {role: wrap(rng, description, body)}, fab)
