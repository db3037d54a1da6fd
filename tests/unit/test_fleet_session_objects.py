"""The Fleet session's object flow and two-step lifecycle, on the 1.42 adapter (in memory).

An in-memory SuperLink answers the 1.42 calls: the session opens with RegisterNode +
ActivateNode, fetches an instruction's objects at most four at a time (asking again for
one that is not available yet), confirms it, uploads exactly the reply objects the push
response names, and closes with DeactivateNode + UnregisterNode. A run that ends while
objects move drops the instruction; an upload the server does not store is a protocol
error; a key whose node is still online after a crash is taken back through its record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.records import Array, MetricsRecord, ParametersRecord, RecordSet
from flwr_sdk.errors import AuthenticationError, TransportError
from flwr_sdk.transport import fleet_session
from flwr_sdk.transport.fleet_session import FleetCaller, FleetSession
from flwr_sdk.transport.node_records import NodeRecords
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.base import NodeAuth, Probe, ProbeCall, Rpc
from flwr_sdk.wire.v1_42 import LINE
from flwr_sdk.wire.v1_42_objects import encode_message

NODE = 2**63 + 99
RUN = 77
CODE_2004 = '{"code": 2004, "public_message": "Failed to activate SuperNode."}'


class Link:
    """What the in-memory SuperLink holds and what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.objects: dict[str, bytes] = {}
        self.pending: list[tuple[pb.Message, pb.ObjectTree]] = []
        self.unavailable: dict[str, int] = {}  # object id -> times to answer "not yet"
        self.in_flight = 0  # object calls only
        self.most_in_flight = 0
        self.pushed: dict[str, bytes] = {}
        self.to_push: list[str] | None = None
        self.store = True
        self.refuse: dict[str, Exception] = {}  # rpc name -> error (once)
        self.confirmed: list[str] = []


class LinkCaller(FleetCaller):
    def __init__(self, link: Link) -> None:
        self.link = link

    async def call(self, rpc: Rpc, request: Any, timeout: float) -> Any:
        link = self.link
        link.calls.append(rpc.name)
        error = link.refuse.pop(rpc.name, None)
        if error is not None:
            raise error
        moves_object = rpc.name in ("PullObject", "PushObject")
        link.in_flight += moves_object
        link.most_in_flight = max(link.most_in_flight, link.in_flight)
        try:
            await asyncio.sleep(0.001)
            return self._answer(rpc.name, request)
        finally:
            link.in_flight -= moves_object

    def _answer(self, name: str, request: Any) -> Any:
        link = self.link
        if name in ("RegisterNode", "ActivateNode"):
            return pb.ActivateNodeResponse(node_id=NODE)
        if name == "SendNodeHeartbeat":
            return pb.SendNodeHeartbeatResponse(success=True)
        if name == "PullMessages":
            if not link.pending:
                return pb.PullMessagesResponse()
            message, tree = link.pending.pop(0)
            return pb.PullMessagesResponse(messages_list=[message], message_object_trees=[tree])
        if name == "PullObject":
            left = link.unavailable.get(request.object_id, 0)
            if left:
                link.unavailable[request.object_id] = left - 1
                return pb.PullObjectResponse(object_found=True, object_available=False)
            return pb.PullObjectResponse(
                object_found=True,
                object_available=True,
                object_content=link.objects[request.object_id],
            )
        if name == "ConfirmMessageReceived":
            link.confirmed.append(request.message_object_id)
            return pb.ConfirmMessageReceivedResponse()
        if name == "PushMessages":
            tree = request.message_object_trees[0]
            wanted = link.to_push if link.to_push is not None else _ids(tree)
            return pb.PushMessagesResponse(objects_to_push=wanted, session_id="sess")
        if name == "PushObject":
            assert request.session_id == "sess"
            link.pushed[request.object_id] = bytes(request.object_content)
            return pb.PushObjectResponse(stored=link.store)
        if name in ("GetRun", "GetFab"):
            return pb.GetRunResponse() if name == "GetRun" else pb.GetFabResponse()
        return {
            "DeactivateNode": pb.DeactivateNodeResponse(),
            "UnregisterNode": pb.UnregisterNodeFleetResponse(),
        }[name]

    async def probe(self, rpc: Rpc, call: ProbeCall | None = None) -> Probe:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


def _ids(tree: pb.ObjectTree) -> list[str]:
    out = [tree.object_id]
    for child in tree.children:
        out += _ids(child)
    return out


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def add_instruction(link: Link, arrays: int = 10) -> None:
    content = RecordSet(
        parameters_records={
            "p": ParametersRecord(
                {str(i): Array.from_numpy(np.full(3, i, dtype=np.float32)) for i in range(arrays)}
            )
        }
    )
    metadata = Metadata(
        run_id=RUN,
        message_id="",
        src_node_id=1,
        dst_node_id=NODE,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type="train",
        created_at=time.time(),
    )
    encoded = encode_message(Message(metadata, content=content), src_task_id=1)
    link.objects.update({i: encoded.object_bytes(i) for i in encoded.object_ids()})
    link.pending.append((encoded.wire_message, encoded.tree))


def reply_to(message: Message) -> Message:
    md = message.metadata
    metadata = Metadata(
        run_id=md.run_id,
        message_id="",
        src_node_id=NODE,
        dst_node_id=md.src_node_id,
        reply_to_message=md.message_id,
        group_id=md.group_id,
        ttl=md.ttl,
        message_type=md.message_type,
        created_at=time.time(),
    )
    return Message(metadata, content=RecordSet(metrics_records={"m": MetricsRecord({"x": 1})}))


def session(
    link: Link, tmp_path: Path, auth: NodeAuth | None = None, records: NodeRecords | None = None
) -> FleetSession:
    return FleetSession(
        LINE,
        LinkCaller(link),
        auth if auth is not None else LINE.node_auth(None),
        retry=RetryPolicy(0, None),
        records=records if records is not None else NodeRecords(tmp_path / "records"),
    )


@pytest.fixture(autouse=True)
def _short_object_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_session, "OBJECT_FIRST_WAIT", 0.01)


def test_a_round_trip_of_objects(tmp_path: Path) -> None:
    link = Link()
    add_instruction(link)
    message_id = link.pending[0][0].metadata.message_id
    first = next(i for i in link.objects if link.objects[i].startswith(b"ArrayChunk"))
    link.unavailable[first] = 2

    async def scenario() -> None:
        s = session(link, tmp_path)
        await s.open()
        message = await s.receive()
        assert isinstance(message, Message)
        assert message.metadata.message_id == message_id
        assert message.content.parameters_records["p"]["9"].numpy().tolist() == [9.0] * 3
        await s.send(reply_to(message))
        await s.close()

    run(scenario())
    assert link.calls[:2] == ["RegisterNode", "ActivateNode"]
    assert link.calls[-2:] == ["DeactivateNode", "UnregisterNode"]
    assert 1 < link.most_in_flight <= fleet_session.OBJECT_WINDOW
    assert link.calls.count("PullObject") == len(link.objects) + 2  # one asked thrice
    assert link.confirmed == [message_id]
    assert link.calls.index("ConfirmMessageReceived") > max(
        i for i, c in enumerate(link.calls) if c == "PullObject"
    )
    assert link.calls.count("PushObject") == len(link.pushed) > 0


def test_only_the_objects_asked_for_are_uploaded(tmp_path: Path) -> None:
    link = Link()
    add_instruction(link, arrays=1)
    link.to_push = []  # the SuperLink already holds everything

    async def scenario() -> None:
        s = session(link, tmp_path)
        await s.open()
        message = await s.receive()
        assert isinstance(message, Message)
        await s.send(reply_to(message))
        await s.close()

    run(scenario())
    assert "PushObject" not in link.calls


def test_an_upload_not_stored_is_a_warning_and_the_node_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``stored=false`` also means "another node already pushed it": not fatal."""
    link = Link()
    add_instruction(link, arrays=1)
    link.store = False

    async def scenario() -> None:
        s = session(link, tmp_path)
        await s.open()
        message = await s.receive()
        assert isinstance(message, Message)
        await s.send(reply_to(message))
        await s.close()

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        run(scenario())
    assert "PushObject" in link.calls
    assert any("did not store" in r.getMessage() for r in caplog.records)


def test_a_run_that_ends_while_objects_are_pulled_drops_the_instruction(
    tmp_path: Path,
) -> None:
    link = Link()
    add_instruction(link, arrays=1)
    link.refuse["PullObject"] = AuthenticationError(
        "PullObject failed: HTTP 403 from POST /v1/fleet/pull-object: '{\"code\":2007}'"
    )

    async def scenario() -> None:
        s = session(link, tmp_path)
        await s.open()
        assert await s.receive() is None
        await s.close()

    run(scenario())
    assert "ConfirmMessageReceived" not in link.calls


def test_a_crashed_process_s_node_is_deactivated_and_activated_again(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    records = NodeRecords(tmp_path / "records")
    link = Link()

    async def second(expect: type[Exception] | None) -> None:
        s = session(link, tmp_path, LINE.node_auth((key, key.public_key())), records)
        link.refuse["ActivateNode"] = TransportError(f"ActivateNode failed: {CODE_2004}")
        if expect is not None:
            with pytest.raises(expect, match="flwr supernode register"):
                await s.open()
            return
        await s.open()
        assert s.node_id == NODE
        await s.close()

    async def scenario() -> None:
        s = session(link, tmp_path, LINE.node_auth((key, key.public_key())), records)
        await s.open()
        assert link.calls == ["ActivateNode"]  # operator key: no RegisterNode
        link.calls.clear()
        # crash: the session is dropped without close(); its record stays
        assert s._heartbeat is not None
        s._heartbeat.cancel()
        await second(None)
        assert link.calls[:3] == ["ActivateNode", "DeactivateNode", "ActivateNode"]
        assert link.calls[-1] == "DeactivateNode"  # closing: no UnregisterNode
        # A clean close dropped the record: the same refusal is now an AuthenticationError.
        link.calls.clear()
        await second(AuthenticationError)
        assert link.calls == ["ActivateNode"]

    run(scenario())
