"""The legacy kind tables: every kind round-trips through RecordSet and the bidi wire."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.clientapp.client import Client
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
from flwr_sdk.common.records import RecordSet
from flwr_sdk.errors import ProtocolError
from flwr_sdk.wire import bidi

CONFIG = {"int": 3, "float": 0.25, "str": "s", "bytes": b"\x00\x01", "bool": True}
STATUS = Status(Code.OK, "Success")


def parameters() -> Parameters:
    return Parameters(tensors=[b"tensor-0", b"tensor-1"], tensor_type="numpy.ndarray")


# One sample instruction and result per message type (loss exact in float32).
SAMPLES: dict[str, tuple[Any, Any]] = {
    MessageType.TRAIN: (
        FitIns(parameters(), dict(CONFIG)),
        FitRes(STATUS, parameters(), 7, dict(CONFIG)),
    ),
    MessageType.EVALUATE: (
        EvaluateIns(parameters(), dict(CONFIG)),
        EvaluateRes(STATUS, 0.5, 3, dict(CONFIG)),
    ),
    MessageType.GET_PARAMETERS: (
        GetParametersIns(dict(CONFIG)),
        GetParametersRes(Status(Code.GET_PARAMETERS_NOT_IMPLEMENTED, "no"), parameters()),
    ),
    MessageType.GET_PROPERTIES: (
        GetPropertiesIns(dict(CONFIG)),
        GetPropertiesRes(STATUS, dict(CONFIG)),
    ),
}

KINDS = pytest.mark.parametrize("kind", lr.LEGACY_KINDS, ids=lambda kind: kind.message_type)


def instruction(message_type: str, content: RecordSet) -> Message:
    metadata = Metadata(
        run_id=0,
        message_id=str(uuid.uuid4()),
        src_node_id=0,
        dst_node_id=0,
        reply_to_message="",
        group_id="",
        ttl=bidi.BIDI_TTL,
        message_type=message_type,
        created_at=time.time(),
    )
    return Message(metadata, content=content)


def test_tables_cover_the_four_legacy_kinds_once() -> None:
    legacy = {
        MessageType.TRAIN,
        MessageType.EVALUATE,
        MessageType.GET_PARAMETERS,
        MessageType.GET_PROPERTIES,
    }
    assert [kind.message_type for kind in lr.LEGACY_KINDS] == list(SAMPLES)
    assert set(lr.LEGACY_KINDS_BY_TYPE) == legacy
    assert [kind.legacy for kind in bidi.BIDI_KINDS] == list(lr.LEGACY_KINDS)
    for kind in lr.LEGACY_KINDS:
        assert callable(getattr(Client, kind.method))
        ins, res = SAMPLES[kind.message_type]
        assert (type(ins), type(res)) == (kind.ins_type, kind.res_type)


@KINDS
def test_kind_round_trips_through_recordset(kind: lr.LegacyKind[Any, Any]) -> None:
    ins, res = SAMPLES[kind.message_type]
    ins_rs = kind.ins_to_recordset(ins, keep_input=True)
    res_rs = kind.res_to_recordset(res, keep_input=True)
    assert kind.recordset_to_ins(ins_rs, keep_input=True) == ins
    assert kind.recordset_to_res(res_rs, keep_input=True) == res
    for recordset, cls in ((ins_rs, kind.ins_type), (res_rs, kind.res_type)):
        prefix = cls.__name__.lower()  # "fitins", "getpropertiesres", ...
        keys = [
            *recordset.parameters_records,
            *recordset.metrics_records,
            *recordset.configs_records,
        ]
        assert keys
        assert all(key.startswith(prefix + ".") for key in keys)


@KINDS
def test_kind_round_trips_through_bidi_wire(kind: lr.LegacyKind[Any, Any]) -> None:
    ins, res = SAMPLES[kind.message_type]
    sent = instruction(kind.message_type, kind.ins_to_recordset(ins, keep_input=True))

    # server → client: ServerMessage bytes
    data = bytes(bidi.instruction_to_server_message(sent))
    received = bidi.server_message_to_instruction(pb.ServerMessage.parse(data))
    assert isinstance(received, Message)
    assert received.metadata.message_type == kind.message_type
    assert kind.recordset_to_ins(received.content, keep_input=True) == ins

    # client → server: ClientMessage bytes
    reply = received.create_reply(kind.res_to_recordset(res, keep_input=True))
    data = bytes(bidi.reply_to_client_message(reply))
    answer = bidi.client_message_to_reply(pb.ClientMessage.parse(data), sent)
    assert kind.recordset_to_res(answer.content, keep_input=True) == res


def test_fitres_keeps_flowers_record_keys() -> None:
    recordset = lr.FIT_KIND.res_to_recordset(SAMPLES[MessageType.TRAIN][1], keep_input=True)
    assert list(recordset.parameters_records) == ["fitres.parameters"]
    assert dict(recordset.metrics_records["fitres.num_examples"]) == {"num_examples": 7}
    assert list(recordset.configs_records) == ["fitres.metrics", "fitres.status"]


def test_evaluate_loss_is_float32_on_the_bidi_wire() -> None:
    res = EvaluateRes(STATUS, 0.1, 1, {})
    sent = instruction(MessageType.EVALUATE, RecordSet())
    reply = sent.create_reply(lr.EVALUATE_KIND.res_to_recordset(res, keep_input=True))
    client_message = pb.ClientMessage.parse(bytes(bidi.reply_to_client_message(reply)))
    loss = lr.recordset_to_evaluateres(bidi.client_message_to_reply(client_message, sent).content)
    assert loss.loss != 0.1
    assert loss.loss == pytest.approx(0.1, rel=1e-7)


def test_wrong_answer_member_is_a_protocol_error() -> None:
    sent = instruction(MessageType.TRAIN, RecordSet())
    with pytest.raises(ProtocolError, match="expected fit_res"):
        bidi.client_message_to_reply(bidi.disconnect_res(), sent)
