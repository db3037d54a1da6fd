"""The Flower 1.12 wire line: what goes on the wire, and every quirk of it.

grpc-bidi (``FlowerService.Join``; ``transport.proto`` is identical from 1.12 to 1.42):

* the server speaks first; the client answers each ``ServerMessage`` with exactly one
  ``ClientMessage``;
* instructions become :class:`~flwr_sdk.message.Message` objects with Flower's internal
  bidi metadata (run 0, node 0, a fresh message id, TTL 3600 s) and the legacy record
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

from flwr_sdk.client import legacy_records as lr
from flwr_sdk.client.legacy_types import (
    EvaluateIns,
    FitIns,
    GetParametersIns,
    GetPropertiesIns,
    Parameters,
    Status,
)
from flwr_sdk.errors import ProtocolError
from flwr_sdk.message import Message, MessageType, Metadata
from flwr_sdk.transport.base import Reconnect
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
    """Legacy ``Parameters`` for the wire."""
    return pb.Parameters(
        tensors=[bytes(t) if not isinstance(t, bytes) else t for t in parameters.tensors],
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


def disconnect_res() -> pb.ClientMessage:
    """The answer to ``ReconnectIns`` (Flower sends reason RECONNECT)."""
    return pb.ClientMessage(
        disconnect_res=pb.ClientMessageDisconnectRes(reason=pb.Reason.RECONNECT)
    )


__all__ = [
    "BIDI_NODE_ID",
    "BIDI_TTL",
    "disconnect_res",
    "parameters_from_wire",
    "parameters_to_wire",
    "reply_to_client_message",
    "server_message_to_instruction",
]
