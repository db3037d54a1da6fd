"""The grpc-bidi protocol (``FlowerService.Join``), the same in every Flower line.

``transport.proto`` is identical from 1.12 to 1.42, so this module serves every line
(it uses the 1.12 generated classes):

* the server speaks first; the client answers each ``ServerMessage`` with exactly one
  ``ClientMessage``;
* instructions become :class:`~flwr_sdk.common.message.Message` objects with Flower's
  internal bidi metadata (run 0, node 0, a fresh message id, TTL 3600 s) and the legacy record
  keys, so one node loop serves every transport;
* ``ReconnectIns.seconds`` has no presence: 0 (or less) means "do not come back"; more
  than :data:`MAX_RECONNECT_SECONDS` (a day) is refused as out of range rather than
  slept for;
* a ``ServerMessage`` is read by :func:`server_message_to_instruction`, guarded by
  :func:`flwr_sdk.wire.guard.reader`: whatever is wrong with it raises
  :class:`~flwr_sdk.errors.MalformedMessageError` (the protocol has no error reply);
* the answer to ``ReconnectIns`` is ``DisconnectRes(reason=RECONNECT)``;
* ``EvaluateRes.loss`` is a 32-bit float on this wire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import betterproto2
from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.legacy_types import Code, Parameters, Status
from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.errors import MalformedMessageError, ProtocolError
from flwr_sdk.wire.base import Reconnect
from flwr_sdk.wire.guard import reader
from flwr_sdk.wire.scalars import config_from_wire, config_to_wire

JOIN = fleet_api.FLOWERSERVICE_JOIN
"""The ``Join`` RPC: one bidirectional stream per session."""

BIDI_TTL = 3600.0
"""TTL Flower gives the internal messages it builds from grpc-bidi instructions."""

BIDI_NODE_ID = -1
"""grpc-bidi has no node ids; Flower's Context reports -1."""

MAX_RECONNECT_SECONDS = 86_400
"""The longest ``ReconnectIns.seconds`` a node honours (one day); more is out of range."""


def parameters_from_wire(parameters: pb.Parameters | None) -> Parameters:
    """Legacy ``Parameters`` from the wire (tensor bytes are not copied)."""
    if parameters is None:
        return Parameters(tensors=[], tensor_type="")
    return Parameters(tensors=list(parameters.tensors), tensor_type=parameters.tensor_type)


def parameters_to_wire(parameters: Parameters) -> pb.Parameters:
    """Legacy ``Parameters`` for the wire (tensors not copied).

    ``memoryview`` and :class:`~flwr_sdk.common._npy.NpyPayload` tensors are kept as they are:
    the fast codec (every transport) writes them directly; betterproto2's ``bytes()``
    handles memoryviews, not payloads.
    """
    return pb.Parameters(
        tensors=list(parameters.tensors),  # type: ignore[arg-type]  # bytes-like, see above
        tensor_type=parameters.tensor_type,
    )


def _status_to_wire(status: Status) -> pb.Status:
    return pb.Status(code=pb.Code(int(status.code)), message=status.message)


def _status_from_wire(status: pb.Status | None) -> Status:
    if status is None:
        return Status(code=Code.OK, message="")
    return Status(code=Code(int(status.code)), message=status.message)


def _bidi_metadata(message_type: str) -> Metadata:
    return Metadata(
        run_id=0,
        message_id=str(uuid.uuid4()),
        src_node_id=0,
        dst_node_id=0,
        reply_to_message="",
        group_id="",
        ttl=BIDI_TTL,
        message_type=message_type,
        created_at=time.time(),
    )


# --------------------------------------------------------------------------------------
# The tables: how each field of a legacy Ins/Res travels, and each kind's oneof members.
# The wire messages' fields have the legacy dataclasses' field names.


@dataclass(frozen=True)
class _WireField:
    """Converts one Ins/Res field to its wire value and back."""

    to_wire: Callable[[Any], Any]
    from_wire: Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _scalars_to_wire(values: Any) -> Any:
    return config_to_wire(values, pb.Scalar)


_SCALARS = _WireField(_scalars_to_wire, config_from_wire)

_WIRE_FIELDS: Mapping[str, _WireField] = MappingProxyType(
    {
        "parameters": _WireField(parameters_to_wire, parameters_from_wire),
        "config": _SCALARS,
        "metrics": _SCALARS,
        "properties": _SCALARS,
        "status": _WireField(_status_to_wire, _status_from_wire),
        "num_examples": _WireField(_same, _same),
        "loss": _WireField(float, _same),  # a 32-bit float on this wire
    }
)


def _to_wire(wire_type: Callable[..., Any], value: Any) -> Any:
    """The ``wire_type`` message with every field of the legacy dataclass ``value``."""
    return wire_type(
        **{f.name: _WIRE_FIELDS[f.name].to_wire(getattr(value, f.name)) for f in fields(value)}
    )


def _from_wire(legacy_type: type[Any], body: Any) -> Any:
    """The ``legacy_type`` dataclass read from the wire message ``body``."""
    return legacy_type(
        **{
            f.name: _WIRE_FIELDS[f.name].from_wire(getattr(body, f.name))
            for f in fields(legacy_type)
        }
    )


@dataclass(frozen=True)
class BidiKind:
    """One legacy kind on grpc-bidi: its ``ServerMessage``/``ClientMessage`` oneof members.

    Attributes:
        legacy: the kind's row in :data:`~flwr_sdk.common.legacy_records.LEGACY_KINDS`.
        ins_member: the ``ServerMessage.msg`` member carrying the instruction.
        ins_wire_type: that member's message class.
        res_member: the ``ClientMessage.msg`` member carrying the result.
        res_wire_type: that member's message class.

    """

    legacy: lr.LegacyKind[Any, Any]
    ins_member: str
    ins_wire_type: Callable[..., Any]
    res_member: str
    res_wire_type: Callable[..., Any]


BIDI_KINDS: tuple[BidiKind, ...] = (
    BidiKind(lr.FIT_KIND, "fit_ins", pb.ServerMessageFitIns, "fit_res", pb.ClientMessageFitRes),
    BidiKind(
        lr.EVALUATE_KIND,
        "evaluate_ins",
        pb.ServerMessageEvaluateIns,
        "evaluate_res",
        pb.ClientMessageEvaluateRes,
    ),
    BidiKind(
        lr.GET_PARAMETERS_KIND,
        "get_parameters_ins",
        pb.ServerMessageGetParametersIns,
        "get_parameters_res",
        pb.ClientMessageGetParametersRes,
    ),
    BidiKind(
        lr.GET_PROPERTIES_KIND,
        "get_properties_ins",
        pb.ServerMessageGetPropertiesIns,
        "get_properties_res",
        pb.ClientMessageGetPropertiesRes,
    ),
)
"""The four legacy kinds grpc-bidi carries."""

_BY_MESSAGE_TYPE = {kind.legacy.message_type: kind for kind in BIDI_KINDS}
_BY_INS_MEMBER = {kind.ins_member: kind for kind in BIDI_KINDS}


def _kind_of(message: Message, what: str) -> BidiKind:
    message_type = message.metadata.message_type
    if message_type not in _BY_MESSAGE_TYPE:
        raise ProtocolError(f"grpc-bidi cannot carry {what} of message type {message_type!r}")
    return _BY_MESSAGE_TYPE[message_type]


# --------------------------------------------------------------------------------------
# Client side: ServerMessage -> Message, reply -> ClientMessage


@reader("ServerMessage")
def server_message_to_instruction(server_message: pb.ServerMessage) -> Message | Reconnect:
    """Turn a grpc-bidi ``ServerMessage`` into a Message (or a reconnect request).

    Raises:
        MalformedMessageError: the message is malformed, carries no instruction, or asks
            to reconnect after more than :data:`MAX_RECONNECT_SECONDS`.

    """
    member, body = betterproto2.which_one_of(server_message, "msg")
    if isinstance(body, pb.ServerMessageReconnectIns):
        seconds = body.seconds
        if seconds > MAX_RECONNECT_SECONDS:
            raise MalformedMessageError(
                f"ReconnectIns asks to come back in {seconds} s, more than "
                f"{MAX_RECONNECT_SECONDS} s",
                what="ServerMessage",
                field="reconnect_ins.seconds",
            )
        return Reconnect(seconds=float(seconds) if seconds > 0 else None)
    kind = _BY_INS_MEMBER.get(member)
    if kind is None:
        raise MalformedMessageError(
            "the server sent a ServerMessage with no instruction set", what="ServerMessage"
        )
    ins = _from_wire(kind.legacy.ins_type, body)
    content = kind.legacy.ins_to_recordset(ins, keep_input=True)
    return Message(_bidi_metadata(kind.legacy.message_type), content=content)


def reply_to_client_message(reply: Message) -> pb.ClientMessage:
    """Turn the reply to a grpc-bidi instruction into a ``ClientMessage``."""
    kind = _kind_of(reply, "a reply")
    res = kind.legacy.recordset_to_res(reply.content, keep_input=True)
    return pb.ClientMessage(**{kind.res_member: _to_wire(kind.res_wire_type, res)})


# --------------------------------------------------------------------------------------
# Server side: instruction -> ServerMessage, ClientMessage -> reply


def instruction_to_server_message(message: Message) -> pb.ServerMessage:
    """The ``ServerMessage`` that carries an instruction (server side)."""
    kind = _kind_of(message, "an instruction")
    ins = kind.legacy.recordset_to_ins(message.content, keep_input=True)
    return pb.ServerMessage(**{kind.ins_member: _to_wire(kind.ins_wire_type, ins)})


def client_message_to_reply(client_message: pb.ClientMessage, instruction: Message) -> Message:
    """A grpc-bidi answer as the reply to ``instruction`` (server side).

    Raises ProtocolError when the answer does not match the instruction's type.
    """
    member, body = betterproto2.which_one_of(client_message, "msg")
    message_type = instruction.metadata.message_type
    kind = _BY_MESSAGE_TYPE.get(message_type)
    expected = None if kind is None else kind.res_member
    if kind is None or member != expected:
        raise ProtocolError(
            f"expected {expected} for a {message_type!r} instruction, got {member!r}"
        )
    res = _from_wire(kind.legacy.res_type, body)
    return instruction.create_reply(kind.legacy.res_to_recordset(res, keep_input=True))


def reconnect_ins(seconds: int | None) -> pb.ServerMessage:
    """Tell a grpc-bidi client to leave (and come back after ``seconds``, if given)."""
    return pb.ServerMessage(reconnect_ins=pb.ServerMessageReconnectIns(seconds=seconds or 0))


def disconnect_res() -> pb.ClientMessage:
    """The answer to ``ReconnectIns`` (Flower sends reason RECONNECT)."""
    return pb.ClientMessage(
        disconnect_res=pb.ClientMessageDisconnectRes(reason=pb.Reason.RECONNECT)
    )
