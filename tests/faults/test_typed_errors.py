"""Typed errors for everything a server can send (issue 16): the wire readers, in memory.

Each line's readers (``node_from_register``, ``instruction_from_pull``, …) and the
grpc-bidi reader are fed what a hostile server can make the decoders produce — valid
protobufs of another message, fields of the wrong type or out of range, undefined enum
values, instructions that break the line's rules — and must answer with a value or a
:class:`flwr_sdk.errors.FlwrSdkError`, never a raw exception. Instructions a line does
not hand on are dropped with a WARNING and counted; on 1.15 an error-only instruction is
handed on, so the node answers it with the error reply (checked end to end against the
hostile server, through ``start_client_async``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from flwr_sdk_proto.v1_15.flwr import proto as pb15
from support.hostile_client import FuzzClient
from support.hostile_frames import (
    NODE_ID,
    RUN_ID,
    TASK_ID,
    Frame,
    NormalFleet,
    grpc_ok,
    grpc_status,
    instruction,
    message_classes,
    random_bytes,
    random_message,
)
from support.hostile_server import HostileGrpcServer

from flwr_sdk import start_client_async
from flwr_sdk.errors import (
    AuthenticationError,
    FlwrSdkError,
    MalformedMessageError,
    ProtocolError,
    ReplyRuleError,
)
from flwr_sdk.net.fast_codec import decode_message
from flwr_sdk.transport.fleet_session import FleetSession
from flwr_sdk.wire import bidi, v1_12, v1_15
from flwr_sdk.wire.base import _READERS, FleetLine
from flwr_sdk.wire.fleet_rules import check_reply
from flwr_sdk.wire.guard import check_shape, is_reader
from flwr_sdk.wire.lines import all_lines

LINES: dict[str, FleetLine] = {"1.12": v1_12.LINE, "1.15": v1_15.LINE}
PB = {"1.12": pb12, "1.15": pb15}


def read(line: FleetLine, role: str, response: Any) -> Any:
    """Call ``line``'s reader of ``role``'s response like the session does."""
    if role == "register":
        return line.node_id(line.node_from_register(response))
    if role == "heartbeat":
        return line.heartbeat_accepted(response)
    if role == "pull":
        return line.instruction_from_pull(response, NODE_ID)
    if role == "get_run":
        return line.run_from_response(response, RUN_ID)
    if role == "get_fab":
        return line.fab_from_response(response, "00" * 32)
    raise AssertionError(role)


# ------------------------------------------------------------- the cases of the issue


@pytest.mark.parametrize("name", ["1.12", "1.15"])
def test_another_message_where_create_node_belongs(name: str) -> None:
    """``08 01`` read as a CreateNodeResponse: the int 1 where a Node belongs."""
    line = LINES[name]
    response = decode_message(line.rpcs.register.response_type, b"\x08\x01")
    with pytest.raises(MalformedMessageError) as info:
        line.node_from_register(response)
    assert info.value.field == "node"
    assert "is an int, not a Node message" in str(info.value)
    assert info.value.what == "CreateNode response"


@pytest.mark.parametrize("name", ["1.12", "1.15"])
def test_a_list_where_the_node_id_belongs(name: str) -> None:
    """A varint field sent length-delimited decodes to a list (``unhashable type``)."""
    line = LINES[name]
    response = decode_message(line.rpcs.register.response_type, b"\x0a\x03\x0a\x01\x00")
    with pytest.raises(MalformedMessageError) as info:
        line.node_from_register(response)
    assert info.value.field == "node.node_id"


@pytest.mark.parametrize("name", ["1.12", "1.15"])
def test_unusable_nodes_are_refused(name: str) -> None:
    """No node, node id 0 (1.12: also anonymous): MalformedMessageError."""
    pb = PB[name]
    line = LINES[name]
    responses = [pb.CreateNodeResponse(), pb.CreateNodeResponse(node=pb.Node(node_id=0))]
    if name == "1.12":
        responses.append(pb.CreateNodeResponse(node=pb.Node(node_id=5, anonymous=True)))
    for response in responses:
        with pytest.raises(MalformedMessageError):
            line.node_from_register(response)


def test_shape_check_names_the_field() -> None:
    """Out of range integers, undefined enum values, lists and messages in the wrong place."""
    cases: list[tuple[Any, str, str]] = [
        (pb12.Node(node_id=-1), "node_id", "out of the range of uint64"),
        (pb12.Node(node_id=2**64), "node_id", "out of the range of uint64"),
        (pb12.Error(code=2**63), "code", "out of the range of sint64"),
        (pb12.Array(shape=[2**31]), "shape[0]", "out of the range of int32"),
        (pb12.ClientMessageDisconnectRes(reason=pb12.Reason(99)), "reason", "does not define"),
        (pb12.PingResponse(success=[True]), "success", "is a list, not bool"),  # type: ignore[arg-type]
        (pb12.Task(ttl="1"), "ttl", "not a number"),  # type: ignore[arg-type]
        (pb12.Task(ancestry="x"), "ancestry", "is a str, not a list"),  # type: ignore[arg-type]
        (
            pb12.RecordSet(configs={"c": pb12.ConfigsRecord(data={"k": 5})}),  # type: ignore[dict-item]
            "configs['c'].data['k']",
            "not a ConfigsRecordValue message",
        ),
        (
            pb12.PullTaskInsResponse(task_ins_list=[pb12.TaskIns(task=pb12.Node())]),  # type: ignore[arg-type]
            "task_ins_list[0].task",
            "is a Node, not a Task message",
        ),
    ]
    for message, path, problem in cases:
        with pytest.raises(MalformedMessageError) as info:
            check_shape(message, "answer")
        assert info.value.field == path, (message, str(info.value))
        assert problem in str(info.value)
    with pytest.raises(MalformedMessageError):
        check_shape(7, "answer")
    check_shape(instruction_wire("1.15"), "answer")  # a good message passes


def instruction_wire(name: str) -> Any:
    return NormalFleet(name).wire_instruction()


def test_every_reader_of_every_line_is_guarded() -> None:
    """A line (present or future) cannot define a reader the guard does not wrap."""
    for line in all_lines():
        for reader in _READERS:
            assert is_reader(getattr(line, reader)), (line.name, reader)
    assert is_reader(bidi.server_message_to_instruction)


# ----------------------------------------------------------- seeded fuzz of readers

READER_ROLES = ("register", "heartbeat", "pull", "get_run", "get_fab")


def hostile_payloads(name: str, role: str, rng: random.Random) -> bytes:
    """Random bytes, another message type, or a random message of the right type."""
    normal = NormalFleet(name)
    expected = normal.response_type(role)
    kind = rng.random()
    if kind < 0.3:
        return random_bytes(rng, 64)
    if kind < 0.65:
        other = rng.choice([c for c in message_classes(PB[name]) if c is not expected])
        return bytes(random_message(other, rng))
    return bytes(random_message(expected, rng))


@pytest.mark.parametrize("name", ["1.12", "1.15"])
@pytest.mark.parametrize("role", READER_ROLES)
def test_readers_raise_only_typed_errors(name: str, role: str) -> None:
    """500 seeded hostile answers per reader: a value or a FlwrSdkError, nothing else."""
    line = LINES[name]
    response_type = NormalFleet(name).response_type(role)
    seed = f"readers/{name}/{role}"
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for index in range(500):
        data = hostile_payloads(name, role, rng)
        try:
            response = decode_message(response_type, data)
        except Exception:  # decoding is the transport's part (see the known faults)
            outcomes["undecodable"] = outcomes.get("undecodable", 0) + 1
            continue
        try:
            read(line, role, response)
        except FlwrSdkError as exc:
            key = type(exc).__name__
        except Exception as exc:  # pragma: no cover - this is the failure being tested
            pytest.fail(
                f"seed {seed!r}, payload {index} ({data.hex()}): raw {type(exc).__name__}: {exc}"
            )
        else:
            key = "value"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert outcomes.get("value", 0) + outcomes.get("MalformedMessageError", 0) > 0, outcomes


def test_bidi_reader_raises_only_typed_errors() -> None:
    """500 seeded hostile ServerMessages: an instruction, a Reconnect or a FlwrSdkError."""
    rng = random.Random("readers/bidi")
    others = [c for c in message_classes(pb12) if c is not pb12.ServerMessage]
    for index in range(500):
        kind = rng.random()
        cls = pb12.ServerMessage if kind < 0.6 else rng.choice(others)
        data = bytes(random_message(cls, rng)) if kind < 0.9 else random_bytes(rng, 64)
        try:
            message = decode_message(pb12.ServerMessage, data)
        except ProtocolError:
            continue
        try:
            bidi.server_message_to_instruction(message)
        except FlwrSdkError:
            pass
        except Exception as exc:  # pragma: no cover - the failure being tested
            pytest.fail(f"payload {index} ({data.hex()}): raw {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ bidi in particular


def test_bidi_reconnect_beyond_a_day_is_out_of_range() -> None:
    """``ReconnectIns(seconds=2**63 - 1)`` is refused, not slept for."""
    for seconds in (bidi.MAX_RECONNECT_SECONDS + 1, 2**63 - 1):
        message = pb12.ServerMessage(reconnect_ins=pb12.ServerMessageReconnectIns(seconds=seconds))
        with pytest.raises(MalformedMessageError) as info:
            bidi.server_message_to_instruction(message)
        assert info.value.field == "reconnect_ins.seconds"
    ok = pb12.ServerMessage(reconnect_ins=pb12.ServerMessageReconnectIns(seconds=60))
    assert bidi.server_message_to_instruction(ok).seconds == 60.0  # type: ignore[union-attr]


def test_bidi_empty_server_message_and_empty_scalar() -> None:
    """No instruction at all, or a config value with no member set."""
    with pytest.raises(MalformedMessageError):
        bidi.server_message_to_instruction(pb12.ServerMessage())
    fit = pb12.ServerMessageFitIns(
        parameters=pb12.Parameters(tensors=[], tensor_type=""), config={"lr": pb12.Scalar()}
    )
    with pytest.raises(MalformedMessageError, match="empty Scalar"):
        bidi.server_message_to_instruction(pb12.ServerMessage(fit_ins=fit))


# -------------------------------------------------------------------- dropped work


def dropped(line: FleetLine, reason: str, act: Callable[[], Any]) -> Any:
    before = line.dropped[reason]
    result = act()
    assert line.dropped[reason] == before + 1, dict(line.dropped)
    return result


def task_ins(**task_changes: Any) -> pb12.TaskIns:
    task_ins: pb12.TaskIns = NormalFleet("1.12").wire_instruction()
    assert task_ins.task is not None
    for name, value in task_changes.items():
        setattr(task_ins.task, name, value)
    return task_ins


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (pb12.TaskIns(task_id=TASK_ID), "no task"),
        (task_ins(consumer=pb12.Node(node_id=NODE_ID + 1)), "not for this node"),
        (task_ins(consumer=None), "not for this node"),
        (task_ins(recordset=None, error=pb12.Error(code=0, reason="x")), "no record set"),
        (task_ins(recordset=None), "no record set"),
        (task_ins(created_at=math.nan), "unanswerable times"),
        (task_ins(ttl=math.inf), "unanswerable times"),
    ],
    ids=["no-task", "other-node", "no-consumer", "error-only", "empty", "nan-time", "inf-ttl"],
)
def test_1_12_drops_are_logged_and_counted(
    entry: pb12.TaskIns, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """1.12 has no reply for what it does not hand on: WARNING, counted, "no work"."""
    response = pb12.PullTaskInsResponse(task_ins_list=[entry])
    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        got = dropped(
            v1_12.LINE, reason, lambda: v1_12.LINE.instruction_from_pull(response, NODE_ID)
        )
    assert got is None
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text


def test_entries_after_the_first_are_dropped_and_counted() -> None:
    """The SuperLink never redelivers: every entry but the first is lost, so it is counted."""
    for name, line in LINES.items():
        normal = NormalFleet(name)
        response = normal.pull_response([normal.wire_instruction()] * 3)
        before = line.dropped["more than one per pull"]
        assert line.instruction_from_pull(response, NODE_ID) is not None
        assert line.dropped["more than one per pull"] == before + 2


def message_wire(**changes: Any) -> pb15.Message:
    wire: pb15.Message = NormalFleet("1.15").wire_instruction()
    for name, value in changes.items():
        if name in ("content", "error", "metadata"):
            setattr(wire, name, value)
        else:
            assert wire.metadata is not None
            setattr(wire.metadata, name, value)
    return wire


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (message_wire(metadata=None), "not for this node"),
        (message_wire(dst_node_id=NODE_ID + 1), "not for this node"),
        (message_wire(created_at=-math.inf), "unanswerable times"),
        (message_wire(ttl=math.nan), "unanswerable times"),
    ],
    ids=["no-metadata", "other-node", "inf-time", "nan-ttl"],
)
def test_1_15_drops_are_logged_and_counted(entry: pb15.Message, reason: str) -> None:
    """What 1.15 does not hand on: counted and logged."""
    response = pb15.PullMessagesResponse(messages_list=[entry])
    got = dropped(v1_15.LINE, reason, lambda: v1_15.LINE.instruction_from_pull(response, NODE_ID))
    assert got is None


def test_1_15_error_only_instruction_is_handed_on() -> None:
    """As Flower 1.15 does: the app cannot handle it and the node sends the error reply."""
    error = pb15.Error(code=3, reason="gone")
    entry = message_wire(content=None, error=error)
    message = v1_15.LINE.instruction_from_pull(
        pb15.PullMessagesResponse(messages_list=[entry]), NODE_ID
    )
    assert message is not None and message.has_error()
    assert (message.error.code, message.error.reason) == (3, "gone")
    with pytest.raises(MalformedMessageError, match="exactly one"):
        v1_15.LINE.instruction_from_pull(
            pb15.PullMessagesResponse(messages_list=[message_wire(error=error)]), NODE_ID
        )


def test_reply_rule_error_names_the_rules() -> None:
    """ReplyRuleError is a ProtocolError that lists each broken rule."""
    incoming = instruction()
    reply = incoming.create_reply(incoming.content)
    bad = dataclasses.replace(reply.metadata, run_id=1, group_id="other")
    forged = type(reply)(bad, content=reply.content)
    with pytest.raises(ReplyRuleError) as info:
        check_reply(incoming, forged, NODE_ID)
    assert info.value.rules == ("run_id", "group_id")
    assert isinstance(info.value, ProtocolError)


# --------------------------------------------------- end to end, start_client_async


def pushed_messages(server: HostileGrpcServer) -> list[pb15.Message]:
    return [
        message
        for role, body in server.bodies
        if role == "push"
        for message in pb15.PushMessagesRequest.parse(body).messages_list
    ]


def test_start_client_answers_an_error_only_instruction_with_the_error_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1.15 through the whole node loop: error-only instruction → error reply (code 2)."""
    monkeypatch.setattr(FleetSession, "poll_interval", 0.01)

    async def scenario() -> HostileGrpcServer:
        server = HostileGrpcServer()
        await server.start()
        normal = NormalFleet("1.15")
        entry = normal.wire_instruction()
        entry.content, entry.error = None, pb15.Error(code=0, reason="no content")
        server.use(Frame("e2e", "grpc-rere", "1.15"))
        server.queue("pull", grpc_ok(bytes(normal.pull_response([entry]))))
        server.queue("pull", grpc_status(7, b"stop here"))  # PERMISSION_DENIED ends the node
        try:
            with pytest.raises(AuthenticationError, match="stop here"):
                await asyncio.wait_for(
                    start_client_async(
                        server_address=server.address,
                        client=FuzzClient(),
                        transport="grpc-rere",
                        max_retries=0,
                        max_wait_time=1.0,
                    ),
                    20,
                )
        finally:
            await server.close()
        return server

    server = asyncio.run(scenario())
    replies = pushed_messages(server)
    assert len(replies) == 1
    reply = replies[0]
    assert reply.content is None and reply.error is not None
    assert reply.error.code == 2  # CLIENT_APP_RAISED_EXCEPTION, as Flower 1.15
    assert reply.metadata is not None and reply.metadata.reply_to_message == TASK_ID


def test_start_client_drops_a_1_12_task_ins_without_record_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """1.12 through the whole node loop: no reply, one counted drop, then served on."""
    monkeypatch.setattr(FleetSession, "poll_interval", 0.01)
    before = v1_12.LINE.dropped["no record set"]

    async def scenario() -> HostileGrpcServer:
        server = HostileGrpcServer()
        await server.start()
        normal = NormalFleet("1.12")
        entry = normal.wire_instruction()
        assert entry.task is not None
        entry.task.recordset, entry.task.error = None, pb12.Error(code=0, reason="x")
        server.use(Frame("e2e", "grpc-rere", "1.12"))
        server.queue("pull", grpc_ok(bytes(normal.pull_response([entry]))))
        server.queue("pull", grpc_ok(bytes(normal.answer("pull"))))  # real work next
        server.queue("pull", grpc_status(7, b"stop here"))
        try:
            with pytest.raises(AuthenticationError, match="stop here"):
                await asyncio.wait_for(
                    start_client_async(
                        server_address=server.address,
                        client=FuzzClient(),
                        transport="grpc-rere",
                        max_retries=0,
                        max_wait_time=1.0,
                    ),
                    20,
                )
        finally:
            await server.close()
        return server

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        server = asyncio.run(scenario())
    assert v1_12.LINE.dropped["no record set"] == before + 1
    assert "no record set" in caplog.text
    pushes = [pb12.PushTaskResRequest.parse(b) for role, b in server.bodies if role == "push"]
    assert len(pushes) == 1  # only the real instruction was answered
    task = pushes[0].task_res_list[0].task
    assert task is not None and task.recordset is not None


@pytest.mark.exclusive  # times a wall-clock bound
def test_guard_overhead_is_small() -> None:
    """Checking a pull that carries 100 arrays of 4 MB takes well under 50 ms.

    The shape check never looks into tensor bytes (nor copies them).
    """
    normal = NormalFleet("1.15")
    wire = normal.wire_instruction(instruction("train"))
    assert wire.content is not None
    record = wire.content.parameters["fitins.parameters"]
    record.data_keys = [str(i) for i in range(100)]
    record.data_values = [
        pb15.Array(dtype="", shape=[], stype="numpy.ndarray", data=b"\x00" * 4_000_000)
    ] * 100
    response = normal.pull_response([wire])
    started = time.perf_counter()
    check_shape(response, "PullMessages response")
    assert time.perf_counter() - started < 0.05
