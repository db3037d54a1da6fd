"""The grpc-bidi protocol (``FlowerService.Join``), the same in every Flower line.

``transport.proto`` is identical from 1.12 to 1.42, so this module serves every line
(it uses the 1.12 generated classes):

* the server speaks first; the client answers each ``ServerMessage`` with exactly one
  ``ClientMessage``;
* instructions become :class:`~flwr_sdk.common.message.Message` objects with Flower's
  internal bidi metadata (run 0, node 0, a fresh message id, TTL 3600 s) and the legacy record
  keys, so one node loop serves every transport;
* ``ReconnectIns.seconds`` has no presence: 0 means "do not come back";
* the answer to ``ReconnectIns`` is ``DisconnectRes(reason=RECONNECT)``;
* ``EvaluateRes.loss`` is a 32-bit float on this wire.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import betterproto2
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.legacy_types import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Status,
)
from flwr_sdk.common.message import Message, MessageType, Metadata
from flwr_sdk.errors import ProtocolError
from flwr_sdk.wire.base import Reconnect
from flwr_sdk.wire.scalars import config_from_wire, config_to_wire

BIDI_TTL = 3600.0
"""TTL Flower gives the internal messages it builds from grpc-bidi instructions."""

BIDI_NODE_ID = -1
"""grpc-bidi has no node ids; Flower's Context reports -1."""


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


def server_message_to_instruction(server_message: pb.ServerMessage) -> Message | Reconnect:
    """Turn a grpc-bidi ``ServerMessage`` into a Message (or a reconnect request)."""
    member, found = betterproto2.which_one_of(server_message, "msg")
    body: Any = found
    if member == "reconnect_ins":
        seconds = body.seconds
        return Reconnect(seconds=float(seconds) if seconds > 0 else None)
    if member == "fit_ins":
        content = lr.fitins_to_recordset(
            FitIns(parameters_from_wire(body.parameters), config_from_wire(body.config)),
            keep_input=True,
        )
        kind = MessageType.TRAIN
    elif member == "evaluate_ins":
        content = lr.evaluateins_to_recordset(
            EvaluateIns(parameters_from_wire(body.parameters), config_from_wire(body.config)),
            keep_input=True,
        )
        kind = MessageType.EVALUATE
    elif member == "get_parameters_ins":
        content = lr.getparametersins_to_recordset(GetParametersIns(config_from_wire(body.config)))
        kind = MessageType.GET_PARAMETERS
    elif member == "get_properties_ins":
        content = lr.getpropertiesins_to_recordset(GetPropertiesIns(config_from_wire(body.config)))
        kind = MessageType.GET_PROPERTIES
    else:
        raise ProtocolError("the server sent a ServerMessage with no instruction set")
    return Message(_bidi_metadata(kind), content=content)


def reply_to_client_message(reply: Message) -> pb.ClientMessage:
    """Turn the reply to a grpc-bidi instruction into a ``ClientMessage``."""
    kind = reply.metadata.message_type
    content = reply.content
    if kind == MessageType.TRAIN:
        fit = lr.recordset_to_fitres(content, keep_input=True)
        return pb.ClientMessage(
            fit_res=pb.ClientMessageFitRes(
                status=_status_to_wire(fit.status),
                parameters=parameters_to_wire(fit.parameters),
                num_examples=fit.num_examples,
                metrics=config_to_wire(fit.metrics, pb.Scalar),
            )
        )
    if kind == MessageType.EVALUATE:
        ev = lr.recordset_to_evaluateres(content)
        return pb.ClientMessage(
            evaluate_res=pb.ClientMessageEvaluateRes(
                status=_status_to_wire(ev.status),
                loss=float(ev.loss),
                num_examples=ev.num_examples,
                metrics=config_to_wire(ev.metrics, pb.Scalar),
            )
        )
    if kind == MessageType.GET_PARAMETERS:
        gp = lr.recordset_to_getparametersres(content, keep_input=True)
        return pb.ClientMessage(
            get_parameters_res=pb.ClientMessageGetParametersRes(
                status=_status_to_wire(gp.status), parameters=parameters_to_wire(gp.parameters)
            )
        )
    if kind == MessageType.GET_PROPERTIES:
        props = lr.recordset_to_getpropertiesres(content)
        return pb.ClientMessage(
            get_properties_res=pb.ClientMessageGetPropertiesRes(
                status=_status_to_wire(props.status),
                properties=config_to_wire(props.properties, pb.Scalar),
            )
        )
    raise ProtocolError(f"grpc-bidi cannot carry a reply of message type {kind!r}")


def instruction_to_server_message(message: Message) -> pb.ServerMessage:
    """The ``ServerMessage`` that carries an instruction (server side)."""
    kind = message.metadata.message_type
    content = message.content
    if kind == MessageType.TRAIN:
        fit = lr.recordset_to_fitins(content, keep_input=True)
        return pb.ServerMessage(
            fit_ins=pb.ServerMessageFitIns(
                parameters=parameters_to_wire(fit.parameters),
                config=config_to_wire(fit.config, pb.Scalar),
            )
        )
    if kind == MessageType.EVALUATE:
        ev = lr.recordset_to_evaluateins(content, keep_input=True)
        return pb.ServerMessage(
            evaluate_ins=pb.ServerMessageEvaluateIns(
                parameters=parameters_to_wire(ev.parameters),
                config=config_to_wire(ev.config, pb.Scalar),
            )
        )
    if kind == MessageType.GET_PARAMETERS:
        gp = lr.recordset_to_getparametersins(content)
        return pb.ServerMessage(
            get_parameters_ins=pb.ServerMessageGetParametersIns(
                config=config_to_wire(gp.config, pb.Scalar)
            )
        )
    if kind == MessageType.GET_PROPERTIES:
        props = lr.recordset_to_getpropertiesins(content)
        return pb.ServerMessage(
            get_properties_ins=pb.ServerMessageGetPropertiesIns(
                config=config_to_wire(props.config, pb.Scalar)
            )
        )
    raise ProtocolError(f"grpc-bidi cannot carry an instruction of message type {kind!r}")


def reconnect_ins(seconds: int | None) -> pb.ServerMessage:
    """Tell a grpc-bidi client to leave (and come back after ``seconds``, if given)."""
    return pb.ServerMessage(reconnect_ins=pb.ServerMessageReconnectIns(seconds=seconds or 0))


def _status_from_wire(status: pb.Status | None) -> Status:
    if status is None:
        return Status(code=Code.OK, message="")
    return Status(code=Code(int(status.code)), message=status.message)


def client_message_to_reply(client_message: pb.ClientMessage, instruction: Message) -> Message:
    """A grpc-bidi answer as the reply to ``instruction`` (server side).

    Raises ProtocolError when the answer does not match the instruction's type.
    """
    member, found = betterproto2.which_one_of(client_message, "msg")
    body: Any = found
    kind = instruction.metadata.message_type
    expected = {
        MessageType.TRAIN: "fit_res",
        MessageType.EVALUATE: "evaluate_res",
        MessageType.GET_PARAMETERS: "get_parameters_res",
        MessageType.GET_PROPERTIES: "get_properties_res",
    }.get(kind)
    if member != expected:
        raise ProtocolError(f"expected {expected} for a {kind!r} instruction, got {member!r}")
    if member == "fit_res":
        content = lr.fitres_to_recordset(
            FitRes(
                status=_status_from_wire(body.status),
                parameters=parameters_from_wire(body.parameters),
                num_examples=body.num_examples,
                metrics=config_from_wire(body.metrics),
            ),
            keep_input=True,
        )
    elif member == "evaluate_res":
        content = lr.evaluateres_to_recordset(
            EvaluateRes(
                status=_status_from_wire(body.status),
                loss=body.loss,
                num_examples=body.num_examples,
                metrics=config_from_wire(body.metrics),
            )
        )
    elif member == "get_parameters_res":
        content = lr.getparametersres_to_recordset(
            GetParametersRes(
                status=_status_from_wire(body.status),
                parameters=parameters_from_wire(body.parameters),
            ),
            keep_input=True,
        )
    else:
        content = lr.getpropertiesres_to_recordset(
            GetPropertiesRes(
                status=_status_from_wire(body.status),
                properties=config_from_wire(body.properties),
            )
        )
    return instruction.create_reply(content)


def disconnect_res() -> pb.ClientMessage:
    """The answer to ``ReconnectIns`` (Flower sends reason RECONNECT)."""
    return pb.ClientMessage(
        disconnect_res=pb.ClientMessageDisconnectRes(reason=pb.Reason.RECONNECT)
    )
