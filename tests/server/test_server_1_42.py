"""The reference server on the Flower 1.42 wire (``wire="1.42"``).

* units, in process: the lifecycle rules and their error codes (§3.2, §7 of the 1.42
  facts), the signed-call authenticator's refusals (§4), the object flow of an
  instruction and a reply through the object store (§5);
* the HTTP front end's and the gRPC front end's answers to bad input, over loopback;
* runs: two nodes driven by raw Fleet calls (generated classes + the line's object codec,
  no SDK client) complete FedAvg rounds over HTTP and over gRPC.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpclib.client
import grpclib.const
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.v1_42 import fleet_api
from flwr_sdk_proto.v1_42.flwr import proto as pb
from grpclib.const import Status
from server_harness import (
    ServerThread,
    assert_shift_rounds,
    server_thread,
    shift_strategy,
    tls_config,
)

from examples.numpy_client import ShiftClient
from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message, MessageType, Metadata
from flwr_sdk.common.records import ConfigsRecord, RecordSet
from flwr_sdk.server import ServerConfig
from flwr_sdk.server.fleet_grpc import AccessDeniedError
from flwr_sdk.server.fleet_state import FleetError, FleetRefusedError, FleetState
from flwr_sdk.server.fleet_v1_42 import SERVER_NODE_ID, FleetServicerV1_42
from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator, metadata_from_http
from flwr_sdk.server.object_store import ObjectStore
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    public_key_pem,
    sign_timestamp,
)
from flwr_sdk.wire.v1_42_objects import EncodedMessage, encode_message
from flwr_sdk.wire.v1_42_objects_decode import decode_message

ROUNDS = 2
PROTOBUF = "application/protobuf"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def signed(key: ec.EllipticCurvePrivateKey, age: float = 0.0) -> dict[str, str | bytes]:
    """The three auth entries (gRPC form), stamped ``age`` seconds ago."""
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
    stamp = moment.isoformat()
    return {
        PUBLIC_KEY_HEADER: public_key_pem(key.public_key()),
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_timestamp(key, stamp),
    }


def http_headers(key: ec.EllipticCurvePrivateKey, age: float = 0.0) -> dict[str, str]:
    """The three auth headers (HTTP form: base64 for the binary ones)."""
    entries = signed(key, age)
    return {
        "flwr-public-key": base64.b64encode(entries[PUBLIC_KEY_HEADER]).decode(),  # type: ignore[arg-type]
        "flwr-timestamp": str(entries[TIMESTAMP_HEADER]),
        "flwr-signature": base64.b64encode(entries[SIGNATURE_HEADER]).decode(),  # type: ignore[arg-type]
    }


def _instruction(run_id: int, node_id: int, content: RecordSet, ttl: float = 60.0) -> Message:
    metadata = Metadata(
        run_id=run_id,
        message_id=str(uuid.uuid4()),
        src_node_id=SERVER_NODE_ID,
        dst_node_id=node_id,
        reply_to_message="",
        group_id="1",
        ttl=ttl,
        message_type=MessageType.QUERY,
    )
    return Message(metadata, content=content)


# ------------------------------------------------------------------------------ units


def _fleet_with_online_node() -> tuple[FleetState, FleetServicerV1_42, int, int]:
    """A state with a run and one online node, and the 1.42 servicer over it."""
    state = FleetState()
    run_id = state.create_run()
    pem = public_key_pem(_key().public_key())
    node_id = state.register_node(pem)
    assert node_id is not None and state.activate_node(pem, 60) == node_id
    return state, FleetServicerV1_42(state), run_id, node_id


def test_lifecycle_rules() -> None:
    """Register → activate → heartbeat → deactivate → unregister, and each refusal."""

    async def main() -> None:
        state = FleetState()
        fleet = FleetServicerV1_42(state)
        key = public_key_pem(_key().public_key())

        async def refused(call: Awaitable[Any]) -> tuple[int, int]:
            with pytest.raises(FleetRefusedError) as caught:
                await call
            return caught.value.status, caught.value.code

        node_id = (await fleet.register_node(pb.RegisterNodeFleetRequest(public_key=key))).node_id
        assert node_id not in (0, 1) and not state.is_online(node_id)
        assert state.online_nodes() == []
        again = fleet.register_node(pb.RegisterNodeFleetRequest(public_key=key))
        assert await refused(again) == (412, 23)
        for interval in (9.9, 1800.1):
            bad = fleet.activate_node(
                pb.ActivateNodeRequest(public_key=key, heartbeat_interval=interval)
            )
            assert await refused(bad) == (400, 2003)
        activate = pb.ActivateNodeRequest(public_key=key, heartbeat_interval=10)
        assert (await fleet.activate_node(activate)).node_id == node_id
        assert state.online_nodes() == [node_id]
        online_until = state.nodes[node_id].online_until
        assert 19 < online_until - time.time() <= 20  # 2 x interval
        assert await refused(fleet.activate_node(activate)) == (412, 2004)
        stranger = pb.ActivateNodeRequest(
            public_key=public_key_pem(_key().public_key()), heartbeat_interval=10
        )
        assert await refused(fleet.activate_node(stranger)) == (412, 2004)
        beat = pb.SendNodeHeartbeatRequest(node=pb.Node(node_id=node_id), heartbeat_interval=30)
        assert (await fleet.send_node_heartbeat(beat)).success
        assert state.nodes[node_id].online_until > online_until + 30
        unknown = pb.SendNodeHeartbeatRequest(node=pb.Node(node_id=7), heartbeat_interval=30)
        assert not (await fleet.send_node_heartbeat(unknown)).success
        bad_beat = pb.SendNodeHeartbeatRequest(node=pb.Node(node_id=node_id), heartbeat_interval=1)
        assert await refused(fleet.send_node_heartbeat(bad_beat)) == (400, 2003)
        deactivate = pb.DeactivateNodeRequest(node_id=node_id)
        await fleet.deactivate_node(deactivate)
        assert not state.is_online(node_id) and state.online_nodes() == []
        assert await refused(fleet.deactivate_node(deactivate)) == (412, 2005)
        # a heartbeat revives an offline node, so does ActivateNode
        assert (await fleet.send_node_heartbeat(beat)).success and state.is_online(node_id)
        await fleet.deactivate_node(deactivate)
        assert (await fleet.activate_node(activate)).node_id == node_id
        unregister = pb.UnregisterNodeFleetRequest(node_id=node_id)
        await fleet.unregister_node(unregister)
        assert node_id not in state.nodes and state.node_of_key(key) is None
        assert await refused(fleet.unregister_node(unregister)) == (412, 2006)
        assert await refused(fleet.activate_node(activate)) == (412, 2004)
        # the key can never register again
        again = fleet.register_node(pb.RegisterNodeFleetRequest(public_key=key))
        assert await refused(again) == (412, 23)

        # operator-registered keys: no self-registration, no unregistration over Fleet
        other = public_key_pem(_key().public_key())
        auth = SignedCallAuthenticator(registered_keys=(other,))
        managed = FleetServicerV1_42.for_guard(FleetState(), auth)
        fresh = pb.RegisterNodeFleetRequest(public_key=public_key_pem(_key().public_key()))
        assert await refused(managed.register_node(fresh)) == (412, 2001)
        activated = await managed.activate_node(
            pb.ActivateNodeRequest(public_key=other, heartbeat_interval=30)
        )
        assert managed.state.is_online(activated.node_id)
        leave = pb.UnregisterNodeFleetRequest(node_id=activated.node_id)
        assert await refused(managed.unregister_node(leave)) == (412, 2002)

    asyncio.run(main())


def test_signed_call_authenticator() -> None:
    """The SuperLink's refusals in its order, the 1.42 window, key ↔ node binding."""
    key, stranger = _key(), _key()
    pem = public_key_pem(key.public_key())
    state = FleetState()
    auth = SignedCallAuthenticator()

    def refusal(method: str, metadata: dict[str, str | bytes], request: Any) -> str | None:
        try:
            auth.admit(method, metadata, state)(request)
        except AccessDeniedError as exc:
            return exc.message
        return None

    register = pb.RegisterNodeFleetRequest(public_key=pem)
    assert refusal("RegisterNode", signed(key), register) is None
    assert refusal("RegisterNode", signed(key, age=300), register) is None  # 1.15: < 15 s
    for age in (306, -6):
        assert refusal("RegisterNode", signed(key, age=age), register) == "Invalid timestamp"
    for missing in (PUBLIC_KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        partial = {k: v for k, v in signed(key).items() if k != missing}
        assert refusal("RegisterNode", partial, register) == "Missing authentication metadata"
    forged = {**signed(key), SIGNATURE_HEADER: signed(stranger)[SIGNATURE_HEADER]}
    assert refusal("RegisterNode", forged, register) == "Invalid signature"
    assert refusal("RegisterNode", signed(stranger), register) == "Invalid node ID"  # body key
    node_id = state.register_node(pem)
    assert node_id is not None
    pull = pb.PullMessagesRequest(node=pb.Node(node_id=node_id))
    assert refusal("PullMessages", signed(key), pull) is None
    assert refusal("PullMessages", signed(stranger), pull) == "Invalid node ID"
    other = pb.PullMessagesRequest(node=pb.Node(node_id=node_id + 1))
    assert refusal("PullMessages", signed(key), other) == "Invalid node ID"
    assert refusal("PullMessages", signed(key), pb.PullMessagesRequest()) == "Invalid node ID"
    assert refusal("DeactivateNode", signed(key), pb.DeactivateNodeRequest(node_id=node_id)) is None
    state.unregister_node(node_id)
    assert refusal("PullMessages", signed(key), pull) == "Invalid node ID"
    # HTTP headers carry the same values in base64
    assert metadata_from_http(http_headers(key)).keys() == signed(key).keys()
    assert metadata_from_http({"flwr-public-key": "not base64!"}) == {}


def test_object_store_holds_and_verifies() -> None:
    store = ObjectStore()
    content = b"ArrayChunk  3\x00abc"
    import hashlib

    object_id = hashlib.sha256(content).hexdigest()
    assert store.hold(5, "reply-a", [object_id, object_id]) == [object_id]
    assert store.found(5, object_id) and store.get(5, object_id) is None
    assert not store.put(5, object_id, content + b"x")  # does not hash to its id
    assert store.put(5, object_id, content)
    assert not store.put(5, object_id, content)  # no longer pending
    assert store.hold(5, "reply-b", [object_id]) == []  # already there: nothing to push
    store.release(5, "reply-a")
    assert store.get(5, object_id) == content  # still held by reply-b
    store.release(5, "reply-b")
    assert not store.found(5, object_id) and len(store) == 0


def test_object_flow() -> None:
    """An instruction's objects until confirmed; a reply's objects pushed, checked, decoded."""

    async def main() -> None:
        state, fleet, run_id, node_id = _fleet_with_online_node()
        content = RecordSet(configs_records={"c": ConfigsRecord({"x": 1, "s": "y"})})
        instruction = _instruction(run_id, node_id, content)
        future = state.add_instruction(instruction)
        node = pb.Node(node_id=node_id)
        assert (
            await fleet.pull_messages(pb.PullMessagesRequest(node=pb.Node()))
        ).messages_list == []
        pulled = await fleet.pull_messages(pb.PullMessagesRequest(node=node))
        (message,), (tree,) = pulled.messages_list, pulled.message_object_trees
        assert message.metadata is not None and message.metadata.message_id == tree.object_id
        assert message.content == pb.RecordDict() and message.metadata.dst_node_id == node_id
        assert (await fleet.pull_messages(pb.PullMessagesRequest(node=node))).messages_list == []
        expected = encode_message(instruction)
        assert tree.object_id == expected.message_id
        for object_id in expected.object_ids():
            got = await fleet.pull_object(
                pb.PullObjectRequest(node=node, run_id=run_id, object_id=object_id)
            )
            assert got.object_found and got.object_available
            assert got.object_content == expected.object_bytes(object_id)
        missing = await fleet.pull_object(
            pb.PullObjectRequest(node=node, run_id=run_id, object_id="0" * 64)
        )
        assert not missing.object_found and not missing.object_available
        with pytest.raises(FleetError):
            await fleet.pull_object(pb.PullObjectRequest(node=node, run_id=run_id + 1))
        await fleet.confirm_message_received(
            pb.ConfirmMessageReceivedRequest(
                node=node, run_id=run_id, message_object_id=tree.object_id
            )
        )
        assert len(fleet.store) == 0  # confirmed: the objects are gone

        reply = instruction.create_reply(
            RecordSet(configs_records={"r": ConfigsRecord({"answer": 42})})
        )
        encoded = encode_message(reply)
        wire = encoded.wire_message
        assert wire.metadata is not None
        wire.metadata.reply_to_message_id = tree.object_id

        async def push(message: pb.Message, trees: list[pb.ObjectTree]) -> pb.PushMessagesResponse:
            request = pb.PushMessagesRequest(
                node=node, messages_list=[message], message_object_trees=trees
            )
            return await fleet.push_messages(request)

        # replies the SuperLink drops: results, but nothing to push
        for field_name, value in (
            ("reply_to_message_id", "f" * 64),
            ("dst_node_id", node_id),
            ("src_node_id", SERVER_NODE_ID),
            ("ttl", 1000.0),
        ):
            bad = pb.Message().from_dict(wire.to_dict())
            setattr(bad.metadata, field_name, value)
            answer = await push(bad, [encoded.tree])
            assert answer.objects_to_push == [] and answer.session_id == "", field_name
        answer = await push(wire, [pb.ObjectTree(object_id="e" * 64)])
        assert answer.objects_to_push == []  # message_id is not the tree's root
        bad_tree = pb.ObjectTree(object_id=encoded.message_id, children=[pb.ObjectTree("zz")])
        assert (await push(wire, [bad_tree])).objects_to_push == []  # not an object id
        with pytest.raises(FleetError, match="list index"):
            await fleet.push_messages(pb.PushMessagesRequest(node=node))
        with pytest.raises(FleetError, match="content"):
            await push(pb.Message(metadata=wire.metadata), [encoded.tree])
        with pytest.raises(FleetRefusedError):
            bad = pb.Message().from_dict(wire.to_dict())
            bad.metadata.run_id = run_id + 1
            await push(bad, [encoded.tree])

        answer = await push(wire, [encoded.tree])
        assert answer.results == {encoded.message_id: 0}
        assert answer.reconnect is not None and answer.reconnect.reconnect == 5
        assert sorted(answer.objects_to_push) == sorted(encoded.object_ids())
        assert answer.objects_to_push[-1] == encoded.message_id  # children before parents
        assert answer.session_id
        again = await push(wire, [encoded.tree])  # the same reply again: the same session
        assert again.session_id == answer.session_id
        assert again.objects_to_push == answer.objects_to_push

        async def push_object(object_id: str, data: bytes, session_id: str) -> bool:
            request = pb.PushObjectRequest(
                node=node,
                run_id=run_id,
                object_id=object_id,
                object_content=data,
                session_id=session_id,
            )
            return (await fleet.push_object(request)).stored

        first, *rest = answer.objects_to_push
        data = encoded.object_bytes(first)
        assert not await push_object(first, data[:-1] + b"!", answer.session_id)  # tampered
        assert not await push_object("a" * 64, data, answer.session_id)  # not asked for
        assert not await push_object(first, data, "wrong-session")
        assert await push_object(first, data, "")  # empty session: any session of the run
        # already stored (e.g. by another node): acknowledged after the same hash check
        assert await push_object(first, data, answer.session_id)
        assert not await push_object(first, data[:-1] + b"!", answer.session_id)
        for object_id in rest:
            assert not future.done()
            assert await push_object(object_id, encoded.object_bytes(object_id), answer.session_id)
        got = future.result()
        assert got.metadata.reply_to_message == instruction.metadata.message_id
        assert got.content.configs_records["r"]["answer"] == 42
        assert len(fleet.store) == 0  # consumed: the reply's objects are gone
        # a second reply to the same instruction is dropped
        assert (await push(wire, [encoded.tree])).objects_to_push == []
        # objects of an instruction the node never confirms go when it unregisters
        state.add_instruction(_instruction(run_id, node_id, content))
        assert (await fleet.pull_messages(pb.PullMessagesRequest(node=node))).messages_list
        assert len(fleet.store) == len(expected)
        await fleet.unregister_node(pb.UnregisterNodeFleetRequest(node_id=node_id))
        assert len(fleet.store) == 0

        # runs and FABs
        run = (await fleet.get_run(pb.GetRunRequest(node=node, run_id=run_id))).run
        assert run is not None and run.run_id == run_id
        with pytest.raises(FleetRefusedError) as caught:
            await fleet.get_run(pb.GetRunRequest(node=node, run_id=run_id + 1))
        assert (caught.value.status, caught.value.code) == (403, 2008)
        with pytest.raises(FleetRefusedError) as caught:
            await fleet.get_fab(pb.GetFabRequest(node=node, hash_str="ab", run_id=run_id))
        assert (caught.value.status, caught.value.code) == (403, 2009)
        fab_run = state.create_run("p/app", "1.0.0", b"PK fab bytes")
        fab_hash = state.runs[fab_run].fab_hash
        served = await fleet.get_fab(pb.GetFabRequest(node=node, hash_str=fab_hash, run_id=fab_run))
        assert served.fab is not None and served.fab.content == b"PK fab bytes"
        with pytest.raises(FleetRefusedError):  # the FAB of another run
            await fleet.get_fab(pb.GetFabRequest(node=node, hash_str=fab_hash, run_id=run_id))

    asyncio.run(main())


def test_config_checks_auth_against_the_wire() -> None:
    auth = SignedCallAuthenticator()
    with pytest.raises(ValueError, match="TLS"):
        ServerConfig(transport="rest", wire="1.42", auth=auth)
    with pytest.raises(ValueError, match="grpc-rere and rest"):
        ServerConfig(transport="grpc-bidi", wire="1.42", auth=auth)
    # every call is authenticated, on both front ends, without configuring anything
    assert isinstance(ServerConfig(transport="rest", wire="1.42").guard(), SignedCallAuthenticator)


# ------------------------------------------------------------------ the wire's answers


@pytest.fixture(scope="module")
def http_server() -> Any:
    with server_thread(ServerConfig(transport="rest", port=0, wire="1.42")) as server:
        yield server


@pytest.fixture(scope="module")
def grpc_server() -> Any:
    with server_thread(ServerConfig(transport="grpc-rere", port=0, wire="1.42")) as server:
        yield server


def _post(
    server: ServerThread, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> httpx.Response:
    return httpx.request(method, server.address + path, content=body, headers=headers, timeout=10)


def test_http_answers(http_server: ServerThread) -> None:
    """Status codes and JSON bodies of the 1.42 HTTP Fleet API for bad and good input."""
    key = _key()
    pem = public_key_pem(key.public_key())
    body = bytes(pb.RegisterNodeFleetRequest(public_key=pem))
    ok = {"Content-Type": PROTOBUF}

    def post(path: str, data: bytes = body, **extra: str) -> httpx.Response:
        return _post(http_server, path, data, {**ok, **http_headers(key), **extra})

    for path in ("/v1/fleet/create-node", "/api/v0/fleet/pull-messages", "/v1/fleet/"):
        answer = post(path)
        assert answer.status_code == 404 and answer.json() == {"detail": "Not Found"}, path
    answer = _post(http_server, "/v1/fleet/register-node", b"", http_headers(key), "GET")
    assert answer.status_code == 405
    for content_type in ("application/json", "text/plain", ""):
        answer = post("/v1/fleet/register-node", **{"Content-Type": content_type})
        assert answer.status_code == 415, content_type
        assert answer.json() == {"code": 1002, "detail": "Unsupported Content-Type."}
    answer = post("/v1/fleet/register-node", b"\x0a\x05ab")  # truncated field
    assert answer.status_code == 400
    assert answer.json() == {"code": 1003, "detail": "Invalid protobuf payload."}
    unauthenticated = {"detail": "Invalid SuperNode authentication"}
    answer = _post(http_server, "/v1/fleet/register-node", body, ok)
    assert (answer.status_code, answer.json()) == (401, unauthenticated)
    answer = _post(http_server, "/v1/fleet/register-node", body, {**ok, **http_headers(key, 310)})
    assert (answer.status_code, answer.json()) == (401, unauthenticated)
    forged = {**http_headers(key), "flwr-signature": http_headers(_key())["flwr-signature"]}
    answer = _post(http_server, "/v1/fleet/register-node", body, {**ok, **forged})
    assert (answer.status_code, answer.json()) == (401, unauthenticated)
    # registering: 200 with a protobuf body; again: 412 code 23
    answer = post("/v1/fleet/register-node", **{"Content-Type": PROTOBUF + "; charset=x"})
    assert answer.status_code == 200 and answer.headers["content-type"] == PROTOBUF
    node_id = pb.RegisterNodeFleetResponse.parse(answer.content).node_id
    assert node_id not in (0, 1)
    answer = post("/v1/fleet/register-node")
    assert (answer.status_code, answer.json()["code"]) == (412, 23)
    beat = bytes(pb.SendNodeHeartbeatRequest(node=pb.Node(node_id=node_id), heartbeat_interval=5))
    answer = post("/v1/fleet/send-node-heartbeat", beat)
    assert (answer.status_code, answer.json()["code"]) == (400, 2003)
    # another node's id → 401
    other = bytes(pb.PullMessagesRequest(node=pb.Node(node_id=node_id + 1)))
    answer = post("/v1/fleet/pull-messages", other)
    assert (answer.status_code, answer.json()) == (401, unauthenticated)
    answer = post(
        "/v1/fleet/pull-messages", bytes(pb.PullMessagesRequest(node=pb.Node(node_id=node_id)))
    )
    assert (
        answer.status_code == 200
        and pb.PullMessagesResponse.parse(answer.content).messages_list == []
    )


async def _grpc_call(
    server: ServerThread, path: str, request: Any, metadata: dict[str, str | bytes]
) -> tuple[Status, str | None, Any]:
    host, port = server.address.rsplit(":", 1)
    rpc = fleet_api.BY_PATH.get(path)
    request_type = type(request) if rpc is None else rpc.request_type
    response_type = pb.PullMessagesResponse if rpc is None else rpc.response_type
    channel = grpclib.client.Channel(host, int(port))
    try:
        async with channel.request(
            path,
            grpclib.const.Cardinality.UNARY_UNARY,
            request_type,
            response_type,
            metadata=metadata,
            timeout=10,
        ) as stream:
            await stream.send_message(request, end=True)
            try:
                response = await stream.recv_message()
                await stream.recv_trailing_metadata()
                return Status.OK, None, response
            except grpclib.GRPCError as exc:
                return exc.status, exc.message, None
    finally:
        channel.close()


def test_grpc_answers(grpc_server: ServerThread) -> None:
    """Statuses and details of the 1.42 gRPC Fleet service for bad and good input."""
    key = _key()
    pem = public_key_pem(key.public_key())

    def call(
        path: str, request: Any, metadata: dict[str, str | bytes]
    ) -> tuple[Status, str | None, Any]:
        return asyncio.run(_grpc_call(grpc_server, path, request, metadata))

    register = pb.RegisterNodeFleetRequest(public_key=pem)
    path = "/flwr.proto.Fleet/RegisterNode"
    assert call(path, register, {})[:2] == (
        Status.UNAUTHENTICATED,
        "Missing authentication metadata",
    )
    assert call(path, register, signed(key, 310))[:2] == (
        Status.UNAUTHENTICATED,
        "Invalid timestamp",
    )
    status, _, response = call(path, register, signed(key))
    assert status == Status.OK and response.node_id not in (0, 1)
    node_id = response.node_id
    status, details, _ = call(path, register, signed(key))
    assert status == Status.FAILED_PRECONDITION and details is not None
    assert json.loads(details)["code"] == 23
    activate = pb.ActivateNodeRequest(public_key=pem, heartbeat_interval=3)
    status, details, _ = call("/flwr.proto.Fleet/ActivateNode", activate, signed(key))
    assert status == Status.INVALID_ARGUMENT and json.loads(details or "")["code"] == 2003
    get_run = pb.GetRunRequest(node=pb.Node(node_id=node_id), run_id=12345)
    status, details, _ = call("/flwr.proto.Fleet/GetRun", get_run, signed(key))
    assert status == Status.PERMISSION_DENIED and json.loads(details or "")["code"] == 2008
    pull = pb.PullMessagesRequest(node=pb.Node(node_id=node_id + 1))
    status, details, _ = call("/flwr.proto.Fleet/PullMessages", pull, signed(key))
    assert (status, details) == (Status.UNAUTHENTICATED, "Invalid node ID")
    # 1.15's methods are gone: UNKNOWN once authenticated (as the SuperLink's interceptor)
    ping = pb.PullMessagesRequest(node=pb.Node(node_id=node_id))
    assert call("/flwr.proto.Fleet/CreateNode", ping, signed(key))[0] == Status.UNKNOWN


# ----------------------------------------------------------------------------- runs

Call = Callable[[Any, Any], Awaitable[Any]]
"""(fleet_api RPC, request) → response: one signed Fleet call of a raw node."""


def _http_caller(client: httpx.AsyncClient, address: str, key: ec.EllipticCurvePrivateKey) -> Call:
    async def call(rpc: Any, request: Any) -> Any:
        headers = {"Content-Type": PROTOBUF, **http_headers(key)}
        answer = await client.post(address + rpc.rest_path, content=bytes(request), headers=headers)
        assert answer.status_code == 200, (rpc.name, answer.status_code, answer.text)
        return rpc.response_type.parse(answer.content)

    return call


def _grpc_caller(channel: grpclib.client.Channel, key: ec.EllipticCurvePrivateKey) -> Call:
    async def call(rpc: Any, request: Any) -> Any:
        async with channel.request(
            rpc.grpc_path,
            rpc.cardinality,
            rpc.request_type,
            rpc.response_type,
            metadata=signed(key),
            timeout=30,
        ) as stream:
            await stream.send_message(request, end=True)
            response = await stream.recv_message()
            await stream.recv_trailing_metadata()
            return response

    return call


async def raw_node(
    call: Call,
    key: ec.EllipticCurvePrivateKey,
    index: int,
    stop: asyncio.Event,
    *,
    self_registered: bool = True,
) -> int:
    """A node made of raw Fleet calls (the 1.42 flow of §3.1); returns replies sent.

    ``self_registered=False``: the operator registered the key (activate only, and
    deactivate without unregistering at the end).
    """
    pem = public_key_pem(key.public_key())
    if self_registered:
        register = pb.RegisterNodeFleetRequest(public_key=pem)
        await call(fleet_api.FLEET_REGISTER_NODE, register)
    activate = pb.ActivateNodeRequest(public_key=pem, heartbeat_interval=30)
    node_id = (await call(fleet_api.FLEET_ACTIVATE_NODE, activate)).node_id
    node = pb.Node(node_id=node_id)
    app = ClientApp(client_fn=lambda context: ShiftClient(index).to_client())
    context = Context(node_id=node_id, node_config={}, state=RecordSet(), run_config={})
    replies = 0
    while not stop.is_set():
        pulled = await call(fleet_api.FLEET_PULL_MESSAGES, pb.PullMessagesRequest(node=node))
        if not pulled.messages_list:
            await asyncio.sleep(0.1)
            continue
        (wire,), (tree,) = pulled.messages_list, pulled.message_object_trees
        run_id = wire.metadata.run_id
        objects = {}
        for object_id in dict.fromkeys(_ids(tree)):
            got = await call(
                fleet_api.FLEET_PULL_OBJECT,
                pb.PullObjectRequest(node=node, run_id=run_id, object_id=object_id),
            )
            assert got.object_found and got.object_available
            objects[object_id] = got.object_content
        await call(
            fleet_api.FLEET_CONFIRM_MESSAGE_RECEIVED,
            pb.ConfirmMessageReceivedRequest(
                node=node, run_id=run_id, message_object_id=tree.object_id
            ),
        )
        message = decode_message(wire, tree, objects, max_message_length=1 << 30)
        reply = app(message, context)
        encoded = encode_message(reply)
        pushed = await call(
            fleet_api.FLEET_PUSH_MESSAGES,
            pb.PushMessagesRequest(
                node=node,
                messages_list=[encoded.wire_message],
                message_object_trees=[encoded.tree],
                clientapp_runtime_list=[0.01],
            ),
        )
        assert pushed.objects_to_push, "the server dropped the reply"
        for object_id in pushed.objects_to_push:
            stored = await call(
                fleet_api.FLEET_PUSH_OBJECT,
                pb.PushObjectRequest(
                    node=node,
                    run_id=run_id,
                    object_id=object_id,
                    object_content=encoded.object_bytes(object_id),
                    session_id=pushed.session_id,
                ),
            )
            assert stored.stored
        replies += 1
    await call(fleet_api.FLEET_DEACTIVATE_NODE, pb.DeactivateNodeRequest(node_id=node_id))
    if self_registered:
        leave = pb.UnregisterNodeFleetRequest(node_id=node_id)
        await call(fleet_api.FLEET_UNREGISTER_NODE, leave)
    return replies


def _ids(tree: pb.ObjectTree) -> list[str]:
    return [tree.object_id, *(i for child in tree.children for i in _ids(child))]


@pytest.mark.parametrize(
    ("transport", "registered"),
    [("rest", False), ("grpc-rere", False), ("rest", True)],
    ids=["http", "grpc", "https-registered-keys"],
)
def test_raw_nodes_complete_fedavg_rounds(transport: str, registered: bool, tmp_path: Path) -> None:
    """Two raw 1.42 nodes complete FedAvg rounds and leave (deactivated; unregistered
    unless the operator registered their keys, over TLS as the SuperLink requires)."""
    keys = [_key(), _key()]
    tls, ca_path = tls_config(tmp_path) if registered else (None, None)
    auth = SignedCallAuthenticator.create([k.public_key() for k in keys]) if registered else None
    config = ServerConfig(
        transport=transport,
        port=0,
        wire="1.42",
        num_rounds=ROUNDS,
        strategy=shift_strategy(2),
        round_timeout=30,
        record_parameters=True,
        tls=tls,
        auth=auth,
    )
    with server_thread(config) as server:
        server.start_rounds()

        async def main() -> list[int]:
            stop = asyncio.Event()
            if transport == "rest":
                verify = ssl.create_default_context(cafile=ca_path) if ca_path else True
                client = httpx.AsyncClient(timeout=30, verify=verify)
                calls = [_http_caller(client, server.address, k) for k in keys]
                if registered:  # a key the operator did not register
                    stranger = _key()
                    pem = public_key_pem(stranger.public_key())
                    for path, request, code in (
                        ("register-node", pb.RegisterNodeFleetRequest(public_key=pem), 2001),
                        (
                            "activate-node",
                            pb.ActivateNodeRequest(public_key=pem, heartbeat_interval=30),
                            2004,
                        ),
                    ):
                        answer = await client.post(
                            f"{server.address}/v1/fleet/{path}",
                            content=bytes(request),
                            headers={"Content-Type": PROTOBUF, **http_headers(stranger)},
                        )
                        assert (answer.status_code, answer.json()["code"]) == (412, code)
            else:
                host, port = server.address.rsplit(":", 1)
                channels = [grpclib.client.Channel(host, int(port)) for _ in keys]
                calls = [_grpc_caller(c, k) for c, k in zip(channels, keys, strict=True)]
            nodes = [
                asyncio.create_task(raw_node(c, k, i, stop, self_registered=not registered))
                for i, (c, k) in enumerate(zip(calls, keys, strict=True))
            ]
            history = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(None, server.history, 60)
            )
            try:
                # a node that fails ends the wait at once (its error is the test's)
                await asyncio.wait([history, *nodes], return_when=asyncio.FIRST_COMPLETED)
                for task in nodes:
                    if task.done():
                        task.result()
                assert_shift_rounds(await history, ROUNDS)
            finally:
                stop.set()
                replies = await asyncio.gather(*nodes)
                if transport == "rest":
                    await client.aclose()
                else:
                    for channel in channels:
                        channel.close()
            return replies

        replies = asyncio.run(main())
        # get_parameters from one node, then fit + evaluate from both in every round
        assert sum(replies) == 1 + 2 * 2 * ROUNDS, replies
        state = server.server.state
        assert state is not None
        assert server.in_loop(lambda: len(state.key_to_node)) == 2  # keys stay bound
        if registered:  # deactivated, still registered
            assert server.in_loop(lambda: (len(state.nodes), state.online_nodes())) == (2, [])
        else:  # unregistered for good
            assert server.in_loop(lambda: dict(state.nodes)) == {}


def test_offline_nodes_are_not_sampled_and_fail_awaited_replies() -> None:
    """A node that goes offline (DeactivateNode, or missed heartbeats) fails the instruction
    the driver waits on with NodeUnavailableError, and is no longer offered."""
    from flwr_sdk.server.driver import NodeUnavailableError
    from flwr_sdk.server.fleet_state import FleetNodePool

    async def main() -> None:
        state = FleetState()
        fleet = FleetServicerV1_42(state)
        pool = FleetNodePool(state, SERVER_NODE_ID)
        run_id = state.create_run()
        pem = public_key_pem(_key().public_key())
        node_id = state.register_node(pem)
        assert node_id is not None and pool.online_nodes() == []  # registered: offline
        await fleet.activate_node(pb.ActivateNodeRequest(public_key=pem, heartbeat_interval=10))
        assert pool.online_nodes() == [node_id]
        waiting = asyncio.create_task(pool.request(_instruction(run_id, node_id, RecordSet()), 30))
        await asyncio.sleep(0.1)
        await fleet.deactivate_node(pb.DeactivateNodeRequest(node_id=node_id))
        with pytest.raises(NodeUnavailableError):
            await asyncio.wait_for(waiting, 5)
        assert pool.online_nodes() == []
        # a heartbeat window that lapses: offline without a call
        beat = pb.SendNodeHeartbeatRequest(node=pb.Node(node_id=node_id), heartbeat_interval=10)
        await fleet.send_node_heartbeat(beat)
        assert pool.online_nodes() == [node_id]
        state.nodes[node_id].online_until = time.time()  # 2 x interval passed
        assert pool.online_nodes() == []
        with pytest.raises(NodeUnavailableError):
            await pool.request(_instruction(run_id, node_id, RecordSet()), 30)

    asyncio.run(main())


def test_idle_push_session_expires() -> None:
    """A push session idle for PUSH_SESSION_SECONDS is dropped with its objects."""
    from flwr_sdk.server.fleet_v1_42 import PUSH_SESSION_SECONDS

    async def main() -> None:
        state, fleet, run_id, node_id = _fleet_with_online_node()
        instruction = _instruction(run_id, node_id, RecordSet())
        future = state.add_instruction(instruction)
        node = pb.Node(node_id=node_id)
        pulled = await fleet.pull_messages(pb.PullMessagesRequest(node=node))
        reply = instruction.create_reply(RecordSet(configs_records={"r": ConfigsRecord({"a": 1})}))
        encoded = encode_message(reply)
        assert encoded.wire_message.metadata is not None
        encoded.wire_message.metadata.reply_to_message_id = pulled.message_object_trees[0].object_id
        answer = await fleet.push_messages(
            pb.PushMessagesRequest(
                node=node,
                messages_list=[encoded.wire_message],
                message_object_trees=[encoded.tree],
            )
        )
        assert answer.session_id and fleet.store.found(run_id, encoded.message_id)
        (session,) = fleet._sessions.values()
        session.touched -= PUSH_SESSION_SECONDS + 1  # as if idle that long
        first = answer.objects_to_push[0]
        push = pb.PushObjectRequest(
            node=node,
            run_id=run_id,
            object_id=first,
            object_content=encoded.object_bytes(first),
            session_id=answer.session_id,
        )
        assert not (await fleet.push_object(push)).stored
        assert not fleet.store.found(run_id, encoded.message_id) and not future.done()

    asyncio.run(main())


def test_an_object_two_open_sessions_asked_for_is_pushed_once_for_both() -> None:
    """Two nodes reply with the same record: both push sessions ask for it; pushed once
    (by either session), it counts for both, and each reply completes with its own root."""

    async def main() -> None:
        state, fleet, run_id, first_node = _fleet_with_online_node()
        pem = public_key_pem(_key().public_key())
        second_node = state.register_node(pem)
        assert second_node is not None and state.activate_node(pem, 60) == second_node
        content = RecordSet(configs_records={"r": ConfigsRecord({"same": 1})})
        sessions = []
        for node_id in (first_node, second_node):
            instruction = _instruction(run_id, node_id, RecordSet())
            future = state.add_instruction(instruction)
            node = pb.Node(node_id=node_id)
            pulled = await fleet.pull_messages(pb.PullMessagesRequest(node=node))
            reply = instruction.create_reply(content)
            encoded = encode_message(reply)
            assert encoded.wire_message.metadata is not None
            encoded.wire_message.metadata.reply_to_message_id = pulled.message_object_trees[
                0
            ].object_id
            answer = await fleet.push_messages(
                pb.PushMessagesRequest(
                    node=node,
                    messages_list=[encoded.wire_message],
                    message_object_trees=[encoded.tree],
                )
            )
            sessions.append((node, future, encoded, answer))
        (_, first_future, first, first_answer), (_, second_future, second, second_answer) = sessions
        shared = set(first_answer.objects_to_push) & set(second_answer.objects_to_push)
        assert shared and first.message_id not in shared  # the record, not the roots

        async def push(
            node: pb.Node, encoded: EncodedMessage, object_id: str, session: str
        ) -> bool:
            request = pb.PushObjectRequest(
                node=node,
                run_id=run_id,
                object_id=object_id,
                object_content=encoded.object_bytes(object_id),
                session_id=session,
            )
            return (await fleet.push_object(request)).stored

        for object_id in first_answer.objects_to_push:
            if object_id in shared:
                assert await push(sessions[1][0], second, object_id, second_answer.session_id)
        for node, future, encoded, answer in sessions:
            for object_id in answer.objects_to_push:
                if object_id not in shared:
                    assert not future.done()
                    assert await push(node, encoded, object_id, answer.session_id)
        for future in (first_future, second_future):
            assert future.result().content.configs_records["r"]["same"] == 1
        # The first node, late, pushes the shared object the second one completed its
        # session with: acknowledged (its reply is in), and only with the right bytes.
        late = sorted(shared)[0]
        assert await push(sessions[0][0], first, late, first_answer.session_id)
        forged = pb.PushObjectRequest(
            node=sessions[0][0],
            run_id=run_id,
            object_id=late,
            object_content=first.object_bytes(late) + b"x",
            session_id=first_answer.session_id,
        )
        assert not (await fleet.push_object(forged)).stored
        replies = {*first.object_ids(), *second.object_ids()}
        assert fleet._sessions == {}
        assert not any(fleet.store.found(run_id, object_id) for object_id in replies)

    asyncio.run(main())


def test_reply_whose_objects_contradict_its_envelope_is_a_failed_reply() -> None:
    """Objects that decode to other metadata than the PushMessages entry: an error reply."""

    async def main() -> None:
        state, fleet, run_id, node_id = _fleet_with_online_node()
        instruction = _instruction(run_id, node_id, RecordSet())
        future = state.add_instruction(instruction)
        node = pb.Node(node_id=node_id)
        pulled = await fleet.pull_messages(pb.PullMessagesRequest(node=node))
        reply = instruction.create_reply(RecordSet())
        reply.metadata.reply_to_message = pulled.message_object_trees[0].object_id
        reply.metadata.group_id = "objects say 7"
        encoded = encode_message(reply)
        envelope = encoded.wire_message
        assert envelope.metadata is not None
        envelope.metadata.group_id = instruction.metadata.group_id  # the entry says 1
        answer = await fleet.push_messages(
            pb.PushMessagesRequest(
                node=node, messages_list=[envelope], message_object_trees=[encoded.tree]
            )
        )
        for object_id in answer.objects_to_push:
            push = pb.PushObjectRequest(
                node=node,
                run_id=run_id,
                object_id=object_id,
                object_content=encoded.object_bytes(object_id),
                session_id=answer.session_id,
            )
            assert (await fleet.push_object(push)).stored
        got = future.result()
        assert got.has_error() and "other metadata" in got.error.reason

    asyncio.run(main())
