"""Fleet API wire rules of Flower 1.15 (flower-1.15.md §0 items 2-5, §2, §4).

Messages convert both ways without loss and without copying tensor bytes (property
tests); the PushMessages built for an instruction is compared field by field with what
the facts prescribe, and once decoded by the real flwr 1.15.2 classes; a received pull
response keeps its tensors as views of the received buffer.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flwr_sdk_proto.v1_15.flwr import proto as pb
from hypothesis import HealthCheck, given, settings
from support.flower_env import FlowerWorker
from support.strategies import C15, sdk_messages, valid_message_15

from flwr_sdk.clientapp.dispatch import error_reply_for
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import Array, ConfigsRecord, ParametersRecord, RecordSet
from flwr_sdk.errors import ProtocolError
from flwr_sdk.net.fast_codec import decode_message
from flwr_sdk.wire import v1_15
from flwr_sdk.wire.v1_15 import LINE, SERVER_NODE_ID

NODE = 2**63 + 12345  # ids are uint64 and routinely >= 2^63
RUN = 2**64 - 7
MESSAGE_ID = "4f1c2a7e-9d0b-4e61-a3c5-77b0e2d1f9a8"
MiB = 1 << 20

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG_SETTINGS = settings(SETTINGS, max_examples=4)


def own() -> pb.Node:
    return pb.Node(node_id=NODE)


def wire_instruction(
    *,
    dst: int = NODE,
    created_at: float | None = None,
    ttl: float = 3600.0,
    content: pb.RecordSet | None = None,
    error: pb.Error | None = None,
    message_type: str = "train",
    message_id: str = MESSAGE_ID,
) -> pb.Message:
    if content is None and error is None:
        content = pb.RecordSet()
    return pb.Message(
        metadata=pb.Metadata(
            run_id=RUN,
            message_id=message_id,
            src_node_id=SERVER_NODE_ID,
            dst_node_id=dst,
            reply_to_message="",
            group_id="2",
            ttl=ttl,
            message_type=message_type,
            created_at=time.time() - 1.5 if created_at is None else created_at,
        ),
        content=content,
        error=error,
    )


def instruction_for(message: pb.Message) -> Message:
    got = LINE.instruction_from_pull(pb.PullMessagesResponse(messages_list=[message]), NODE)
    assert got is not None
    return got


def reply_content() -> RecordSet:
    return RecordSet(configs_records={"fitres.status": ConfigsRecord({"code": 0})})


def wire_arrays(message: pb.Message) -> Iterator[pb.Array]:
    if message.content is not None:
        for record in message.content.parameters.values():
            yield from record.data_values


def sdk_arrays(message: Message) -> Iterator[Array]:
    if message.has_content():
        for record in message.content.parameters_records.values():
            yield from record.values()


# ------------------------------------------------------------ conversion, both ways


def check_wire_round_trip(value: pb.Message) -> None:
    sdk = v1_15.message_from_wire(value)
    back = v1_15.message_to_wire(sdk)
    assert back == value
    assert bytes(back) == bytes(value)
    # Tensor bytes are handed over, never copied.
    originals = list(wire_arrays(value))
    assert [a.data for a in sdk_arrays(sdk)] == [a.data for a in originals]
    assert all(s.data is w.data for s, w in zip(sdk_arrays(sdk), originals, strict=True))
    assert all(b.data is w.data for b, w in zip(wire_arrays(back), originals, strict=True))


@SETTINGS
@given(value=valid_message_15(C15["recordset"]))
def test_wire_message_survives_the_sdk(value: pb.Message) -> None:
    check_wire_round_trip(value)


@BIG_SETTINGS
@given(value=valid_message_15(C15["big_recordset"]))
def test_wire_message_with_multi_mib_arrays_survives_the_sdk(value: pb.Message) -> None:
    check_wire_round_trip(value)


@SETTINGS
@given(message=sdk_messages())
def test_sdk_message_survives_the_wire(message: Message) -> None:
    wire = v1_15.message_to_wire(message)
    assert (wire.content is None) == message.has_error()
    assert (wire.error is None) == message.has_content()
    back = v1_15.message_from_wire(pb.Message.parse(bytes(wire)))
    assert back == message
    assert v1_15.message_from_wire(wire) == message
    originals = list(sdk_arrays(message))
    assert all(w.data is s.data for w, s in zip(wire_arrays(wire), originals, strict=True))
    again = v1_15.message_from_wire(wire)
    assert all(a.data is s.data for a, s in zip(sdk_arrays(again), originals, strict=True))


@pytest.mark.parametrize(
    "value",
    [
        pb.Message(content=pb.RecordSet()),  # no metadata
        pb.Message(metadata=pb.Metadata(run_id=RUN)),  # neither content nor error
        pb.Message(
            metadata=pb.Metadata(run_id=RUN), content=pb.RecordSet(), error=pb.Error(code=2)
        ),
    ],
    ids=["no-metadata", "neither", "both"],
)
def test_invalid_wire_messages_are_refused(value: pb.Message) -> None:
    with pytest.raises(ProtocolError):
        v1_15.message_from_wire(value)


MALFORMED_CONTENT = {
    "empty-record-value": pb.RecordSet(
        configs={"c": pb.ConfigsRecord(data={"k": pb.ConfigsRecordValue()})}
    ),
    "keys-without-values": pb.RecordSet(
        parameters={"p": pb.ParametersRecord(data_keys=["a", "b"], data_values=[pb.Array()])}
    ),
}


@pytest.mark.parametrize("content", MALFORMED_CONTENT.values(), ids=list(MALFORMED_CONTENT))
def test_malformed_record_set_is_a_protocol_error(content: pb.RecordSet) -> None:
    response = pb.PullMessagesResponse(messages_list=[wire_instruction(content=content)])
    with pytest.raises(ProtocolError):
        LINE.instruction_from_pull(response, NODE)


# ------------------------------------------------------------------ the reply rules


def test_push_request_field_by_field() -> None:
    ins = wire_instruction()
    assert ins.metadata is not None
    instruction = instruction_for(ins)
    before = time.time()
    reply = instruction.create_reply(reply_content())
    request = LINE.push_request(own(), instruction, reply)
    after = time.time()
    assert request is not None
    assert request.node == own()
    (pushed,) = request.messages_list
    md = pushed.metadata
    assert md is not None
    assert md.message_id == ""
    assert md.src_node_id == NODE
    assert md.dst_node_id == SERVER_NODE_ID == 1
    assert md.reply_to_message == MESSAGE_ID
    assert (md.run_id, md.group_id, md.message_type) == (RUN, "2", "train")
    assert before <= md.created_at <= after
    assert md.created_at > ins.metadata.created_at
    # ttl = incoming ttl - (reply.created_at - incoming.created_at)
    expected_ttl = ins.metadata.ttl - (md.created_at - ins.metadata.created_at)
    assert md.ttl == pytest.approx(expected_ttl, abs=1e-6)
    assert 3598.0 < md.ttl < 3598.6
    assert pushed.content is not None and pushed.error is None
    assert "fitres.status" in pushed.content.configs


def test_error_reply_carries_code_2_and_flowers_reason() -> None:
    instruction = instruction_for(wire_instruction())
    reply = error_reply_for(instruction, ValueError("some failure"))
    request = LINE.push_request(own(), instruction, reply)
    assert request is not None
    (pushed,) = request.messages_list
    assert pushed.content is None
    assert pushed.error == pb.Error(code=2, reason="<class 'ValueError'>:<'some failure'>")
    assert pushed.metadata is not None and pushed.metadata.reply_to_message == MESSAGE_ID


def test_ttl_is_clipped_to_the_instructions_lifetime() -> None:
    created = time.time() - 10.0
    instruction = instruction_for(wire_instruction(created_at=created, ttl=60.0))
    reply = instruction.create_reply(reply_content(), ttl=1000.0)  # user asks for too much
    request = LINE.push_request(own(), instruction, reply)
    assert request is not None
    (pushed,) = request.messages_list
    assert pushed.metadata is not None
    assert pushed.metadata.ttl == pytest.approx(created + 60.0 - pushed.metadata.created_at)
    assert 49.0 < pushed.metadata.ttl < 50.1
    # A shorter ttl the user asked for is kept.
    short = instruction.create_reply(reply_content(), ttl=5.0)
    request = LINE.push_request(own(), instruction, short)
    assert request is not None and request.messages_list[0].metadata is not None
    assert request.messages_list[0].metadata.ttl == 5.0


def test_expired_reply_is_not_pushed() -> None:
    instruction = instruction_for(wire_instruction(created_at=time.time() - 100, ttl=50.0))
    reply = instruction.create_reply(reply_content())
    assert reply.metadata.ttl < 0
    assert LINE.push_request(own(), instruction, reply) is None
    late = instruction.create_reply(reply_content(), ttl=10.0)  # clipped to < 0
    assert LINE.push_request(own(), instruction, late) is None


@pytest.mark.parametrize(
    ("other", "rule"),
    [
        (wire_instruction(message_type="evaluate"), "message_type"),
        (wire_instruction(message_id="another-id"), "reply_to_message"),
    ],
)
def test_reply_to_another_instruction_is_refused(other: pb.Message, rule: str) -> None:
    instruction = instruction_for(wire_instruction())
    reply = instruction_for(other).create_reply(reply_content())
    with pytest.raises(ProtocolError, match=rule):
        LINE.push_request(own(), instruction, reply)


def test_reply_from_another_node_is_refused() -> None:
    instruction = instruction_for(wire_instruction())
    reply = instruction.create_reply(reply_content())
    with pytest.raises(ProtocolError, match="src_node_id"):
        LINE.push_request(pb.Node(node_id=NODE + 1), instruction, reply)


def test_reply_to_a_different_run_names_every_broken_rule() -> None:
    instruction = instruction_for(wire_instruction())
    other = wire_instruction(message_type="query", message_id="x")
    assert other.metadata is not None
    other.metadata.run_id = RUN - 1
    reply = instruction_for(other).create_reply(reply_content())
    with pytest.raises(ProtocolError) as info:
        LINE.push_request(own(), instruction, reply)
    for rule in ("run_id", "message_type", "reply_to_message"):
        assert rule in str(info.value)
    assert "group_id" not in str(info.value)


# ---------------------------------------------------------------- the acceptance rule


@pytest.mark.parametrize(
    ("entries", "accepted"),
    [
        ([], False),
        ([wire_instruction()], True),
        ([wire_instruction(dst=NODE + 1)], False),  # for another node
        ([wire_instruction(dst=SERVER_NODE_ID)], False),
        # error-only: handed on, as Flower 1.15 does; the app's failure gets an error reply
        ([wire_instruction(error=pb.Error(code=0, reason="x"))], True),
        ([pb.Message(content=pb.RecordSet())], False),  # no metadata
        ([wire_instruction(dst=NODE + 1), wire_instruction()], False),  # only the first
        ([wire_instruction(), wire_instruction(message_id="second")], True),
    ],
    ids=["empty", "ours", "other-node", "server", "error-only", "no-metadata", "2nd", "1st"],
)
def test_acceptance_rule(entries: list[pb.Message], accepted: bool) -> None:
    response = pb.PullMessagesResponse(messages_list=entries)
    got = LINE.instruction_from_pull(response, NODE)
    assert (got is not None) is accepted
    if got is not None:
        assert got.metadata.message_id == MESSAGE_ID
        assert got.metadata.src_node_id == SERVER_NODE_ID
        assert got.metadata.dst_node_id == NODE


def test_pulled_instruction_keeps_every_field() -> None:
    ins = wire_instruction(message_type="evaluate")
    assert ins.metadata is not None
    message = instruction_for(ins)
    md = message.metadata
    assert md.message_id == MESSAGE_ID
    assert (md.run_id, md.src_node_id, md.dst_node_id) == (RUN, 1, NODE)
    assert (md.reply_to_message, md.group_id, md.ttl) == ("", "2", 3600.0)
    assert md.message_type == "evaluate"
    assert md.created_at == ins.metadata.created_at
    assert message.has_content()


# ------------------------------------------------------------- requests and readers


def test_requests() -> None:
    node = own()
    interval = LINE.heartbeat_interval
    assert interval == 30.0
    assert LINE.name == "1.15" and LINE.title == "Flower 1.15 Fleet API"
    assert bytes(LINE.register_request(interval)) == bytes(pb.CreateNodeRequest(ping_interval=30.0))
    assert LINE.heartbeat_request(node, interval) == pb.PingRequest(node=node, ping_interval=30.0)
    assert LINE.pull_request(node) == pb.PullMessagesRequest(node=node)
    assert LINE.pull_request(node).message_ids == []
    assert LINE.get_run_request(node, RUN) == pb.GetRunRequest(node=node, run_id=RUN)
    assert LINE.get_fab_request(node, "ab", RUN) == pb.GetFabRequest(
        node=node, hash_str="ab", run_id=RUN
    )
    assert LINE.get_fab_request(node, "ab", RUN).run_id == RUN
    assert LINE.unregister_request(node) == pb.DeleteNodeRequest(node=node)
    assert [LINE.rpcs.pull.name, LINE.rpcs.push.name] == ["PullMessages", "PushMessages"]


def test_node_from_register() -> None:
    created = pb.CreateNodeResponse(node=pb.Node(node_id=NODE))
    assert LINE.node_id(LINE.node_from_register(created)) == NODE
    with pytest.raises(ProtocolError):
        LINE.node_from_register(pb.CreateNodeResponse())
    with pytest.raises(ProtocolError):
        LINE.node_from_register(pb.CreateNodeResponse(node=pb.Node(node_id=0)))


def test_run_from_response() -> None:
    empty = LINE.run_from_response(pb.GetRunResponse(), RUN)
    assert (empty.run_id, dict(empty.run_config), empty.fab_hash) == (RUN, {}, "")
    run = pb.Run(
        run_id=RUN,
        fab_id="",
        fab_version="",
        fab_hash="ab" * 32,
        override_config={
            "lr": pb.Scalar(double=0.1),
            "rounds": pb.Scalar(sint64=3),
            "big": pb.Scalar(uint64=2**63),
            "name": pb.Scalar(string="x"),
            "flag": pb.Scalar(bool=True),
        },
        status=pb.RunStatus(status="running"),
    )
    info = LINE.run_from_response(pb.GetRunResponse(run=run), RUN)
    assert info.run_id == RUN and info.fab_hash == "ab" * 32
    assert dict(info.run_config) == {
        "lr": 0.1,
        "rounds": 3,
        "big": 2**63,
        "name": "x",
        "flag": True,
    }


def test_fab_from_response() -> None:
    content = b"PK\x05\x06" + b"\0" * 18
    good = hashlib.sha256(content).hexdigest()
    response = pb.GetFabResponse(fab=pb.Fab(hash_str=good, content=content))
    assert LINE.fab_from_response(response, good) == content
    assert LINE.fab_from_response(response, good.upper()) == content
    assert LINE.fab_from_response(response, "0" * 64) is None  # not the FAB asked for
    assert LINE.fab_from_response(pb.GetFabResponse(), good) is None
    empty = pb.GetFabResponse(fab=pb.Fab(hash_str=good, content=b""))
    assert LINE.fab_from_response(empty, good) is None


def test_node_auth_is_fresh_per_session() -> None:
    first, second = LINE.node_auth(None), LINE.node_auth(None)
    assert first is not second
    assert first.call_metadata(LINE.rpcs.register, LINE.register_request(30.0)) != {}


# ------------------------------------------------------------ as flwr 1.15.2 reads it


def test_push_request_as_flwr_1_15_reads_it(flwr_1_15_worker: FlowerWorker) -> None:
    """Build the instruction with flwr's own classes, answer it, decode ours with flwr."""
    created = time.time() - 2.0
    ins_dict: dict[str, Any] = {
        "metadata": {
            "run_id": str(RUN),
            "message_id": MESSAGE_ID,
            "src_node_id": "1",
            "dst_node_id": str(NODE),
            "group_id": "1",
            "ttl": 3600.0,
            "message_type": "evaluate",
            "created_at": created,
        },
        "content": {"configs": {"evaluateins.config": {"data": {}}}},
    }
    data, _ = flwr_1_15_worker.build("flwr.proto.Message", ins_dict)
    pulled, _ = flwr_1_15_worker.build(
        "flwr.proto.PullMessagesResponse", {"messages_list": [ins_dict]}
    )
    assert bytes(pb.PullMessagesResponse(messages_list=[pb.Message.parse(data)])) == pulled
    instruction = LINE.instruction_from_pull(pb.PullMessagesResponse.parse(pulled), NODE)
    assert instruction is not None
    assert instruction.metadata.run_id == RUN and instruction.metadata.dst_node_id == NODE
    request = LINE.push_request(own(), instruction, instruction.create_reply(reply_content()))
    assert request is not None
    parsed, _ = flwr_1_15_worker.parse("flwr.proto.PushMessagesRequest", bytes(request))
    assert set(parsed) == {"node", "messages_list"}
    assert parsed["node"] == {"node_id": str(NODE)}
    (message,) = parsed["messages_list"]
    assert set(message) == {"metadata", "content"}  # no error
    md = message["metadata"]
    assert "message_id" not in md  # "" is not sent
    assert md["src_node_id"] == str(NODE)
    assert md["dst_node_id"] == "1"
    assert md["reply_to_message"] == MESSAGE_ID
    assert md["run_id"] == str(RUN) and md["group_id"] == "1"
    assert md["message_type"] == "evaluate"
    assert md["created_at"] > created
    assert md["ttl"] == pytest.approx(3600.0 - (md["created_at"] - created))
    assert "fitres.status" in message["content"]["configs"]
    # And the SuperLink's own push handler finds nothing wrong with it.
    verdict = flwr_1_15_worker.request(
        "validate_push", data=base64.b64encode(bytes(request)).decode("ascii")
    )
    assert verdict["messages"] == 1
    assert verdict["errors"] == []


def test_error_reply_as_flwr_1_15_reads_it(flwr_1_15_worker: FlowerWorker) -> None:
    instruction = instruction_for(wire_instruction())
    request = LINE.push_request(
        own(), instruction, error_reply_for(instruction, RuntimeError("boom"))
    )
    assert request is not None
    parsed, _ = flwr_1_15_worker.parse("flwr.proto.PushMessagesRequest", bytes(request))
    (message,) = parsed["messages_list"]
    assert set(message) == {"metadata", "error"}
    assert message["error"] == {"code": "2", "reason": "<class 'RuntimeError'>:<'boom'>"}
    verdict = flwr_1_15_worker.request(
        "validate_push", data=base64.b64encode(bytes(request)).decode("ascii")
    )
    assert verdict["errors"] == []


# --------------------------------------------------------------- zero-copy receive


def test_pulled_tensors_are_views_of_the_received_buffer() -> None:
    payload = random.Random(15).randbytes(3 * MiB + 5)
    content = pb.RecordSet(
        parameters={
            "p": pb.ParametersRecord(
                data_keys=["w", "b"],
                data_values=[
                    pb.Array(dtype="<f4", shape=[3 * MiB + 5], stype="raw", data=payload),
                    pb.Array(dtype="", shape=[], stype="", data=b"small"),
                ],
            )
        }
    )
    received = bytes(pb.PullMessagesResponse(messages_list=[wire_instruction(content=content)]))
    response = decode_message(pb.PullMessagesResponse, received)
    instruction = LINE.instruction_from_pull(response, NODE)
    assert instruction is not None
    record: ParametersRecord = instruction.content.parameters_records["p"]
    big = record["w"]
    assert isinstance(big.data, memoryview) and big.data.readonly
    assert big.data.obj is received  # a view into the received buffer, not a copy
    assert big.data == payload
    assert record["b"].data == b"small"
    assert list(record) == ["w", "b"]
