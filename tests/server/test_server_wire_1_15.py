"""The reference server on the Flower 1.15 wire, and line detection against both modes.

* units: the 1.15 servicer's answers (§2.2, §2.5 of the 1.15 facts) and the
  signed-timestamp authenticator's refusals, in process;
* detection probes: what our client's line detection sees from each mode, exactly as
  from the real SuperLinks (the table in ``flwr_sdk/wire/detect.py``);
* runs: ``flwr-sdk client`` without ``--wire`` completes runs against both modes on
  grpc-rere and REST and logs the line it detected; ``--wire 1.12`` against a 1.15-mode
  server fails with ``WireLineError`` naming both lines.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.v1_15.flwr import proto as pb
from grpclib.const import Status
from server_harness import (
    ServerThread,
    assert_shift_rounds,
    server_thread,
    shift_strategy,
    stop_fleet_clients,
)
from support.federation import Process, processes, sdk_env

from flwr_sdk.common.message import Message, MessageType, Metadata
from flwr_sdk.common.records import RecordSet
from flwr_sdk.server import ServerConfig, SignedTimestampAuthenticator
from flwr_sdk.server.fleet_grpc import AccessDeniedError
from flwr_sdk.server.fleet_state import FleetError, FleetState
from flwr_sdk.server.fleet_v1_15 import DOUBLE_SLASH_PATHS, FleetServicerV1_15
from flwr_sdk.wire.v1_15 import SERVER_NODE_ID, message_to_wire
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    public_key_pem,
    sign_timestamp,
)

ROUNDS = 2
PROTOBUF = {"Content-Type": "application/protobuf", "Accept": "application/protobuf"}


def signed(key: ec.EllipticCurvePrivateKey, age: float = 0.0) -> dict[str, str | bytes]:
    """The three 1.15 auth entries, stamped ``age`` seconds ago."""
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
    stamp = moment.isoformat()
    return {
        PUBLIC_KEY_HEADER: public_key_pem(key.public_key()),
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_timestamp(key, stamp),
    }


def _instruction(run_id: int, node_id: int, ttl: float = 60.0) -> Message:
    metadata = Metadata(
        run_id=run_id,
        message_id=str(uuid.uuid4()),
        src_node_id=SERVER_NODE_ID,
        dst_node_id=node_id,
        reply_to_message="",
        group_id="1",
        ttl=ttl,
        message_type=MessageType.TRAIN,
    )
    return Message(metadata, content=RecordSet())


# ------------------------------------------------------------------------------ units


def test_fleet_v1_15_rules() -> None:
    """The 1.15 servicer: Messages on the wire, the 1.15.2 SuperLink's answers."""

    async def main() -> None:
        state = FleetState()
        fleet = FleetServicerV1_15(state)
        run_id = state.create_run()
        created = await fleet.create_node(pb.CreateNodeRequest(ping_interval=30.0))
        assert created.node is not None
        node_id = created.node.node_id
        assert node_id not in (0, 1) and state.is_online(node_id)
        instruction = _instruction(run_id, node_id)
        future = state.add_instruction(instruction)

        async def pull(node_id: int) -> list[pb.Message]:
            request = pb.PullMessagesRequest(node=pb.Node(node_id=node_id))
            return (await fleet.pull_messages(request)).messages_list

        async def push(message: pb.Message) -> str:
            answer = await fleet.push_messages(pb.PushMessagesRequest(messages_list=[message]))
            assert answer.reconnect is not None and answer.reconnect.reconnect == 5
            (message_id,) = answer.results
            return message_id

        assert await pull(0) == []
        assert (await fleet.pull_messages(pb.PullMessagesRequest())).messages_list == []
        (pulled,) = await pull(node_id)
        assert pulled.metadata is not None
        assert pulled.metadata.message_id == instruction.metadata.message_id
        assert pulled.metadata.src_node_id == SERVER_NODE_ID
        assert pulled.metadata.dst_node_id == node_id
        assert await pull(node_id) == []  # delivered: never handed out again

        def reply(**changes: Any) -> pb.Message:
            out = instruction.create_reply(RecordSet())
            out.metadata.src_node_id = node_id
            wire = message_to_wire(out)
            assert wire.metadata is not None
            wire.metadata.message_id = ""
            for name, value in changes.items():
                setattr(wire.metadata, name, value)
            return wire

        # dropped silently ("None"), as the SuperLink's storage checks do
        assert await push(reply(src_node_id=SERVER_NODE_ID)) == "None"
        assert await push(reply(src_node_id=node_id + 1)) == "None"
        assert await push(reply(reply_to_message="")) == "None"
        assert await push(reply(ttl=1000.0)) == "None"
        assert await push(reply(ttl=0.0)) == "None"
        assert await push(reply(created_at=1.0)) == "None"
        assert await push(reply(message_type="")) == "None"
        assert await push(reply(reply_to_message=str(uuid.uuid4()))) == "None"
        # errors (gRPC UNKNOWN / HTTP 500)
        with pytest.raises(FleetError, match="UUID"):
            await push(reply(reply_to_message="nope"))
        with pytest.raises(FleetError, match="list index out of range"):
            await fleet.push_messages(pb.PushMessagesRequest())
        with pytest.raises(FleetError, match="content"):
            await push(pb.Message(metadata=reply().metadata))
        with pytest.raises(FleetError, match=str(run_id + 1)):
            await push(reply(run_id=run_id + 1))
        assert not future.done()
        # dst_node_id is not checked: the SuperLink makes itself every reply's consumer
        message_id = await push(reply(dst_node_id=12345))
        answer = future.result()
        assert answer.metadata.message_id == message_id != "None"
        assert answer.metadata.src_node_id == node_id and answer.has_content()
        # runs, FABs
        run = (await fleet.get_run(pb.GetRunRequest(run_id=run_id))).run
        assert run is not None and run.run_id == run_id
        assert (await fleet.get_run(pb.GetRunRequest(run_id=run_id + 1))).run is None
        with pytest.raises(FleetError, match="Found no FAB"):
            await fleet.get_fab(pb.GetFabRequest(hash_str="abc", run_id=run_id))
        with pytest.raises(FleetError, match=str(run_id + 1)):
            await fleet.get_fab(pb.GetFabRequest(hash_str="abc", run_id=run_id + 1))
        # nodes
        unknown = pb.Node(node_id=2**63 + 1)
        assert (await fleet.ping(pb.PingRequest(node=unknown, ping_interval=30))).success is False
        assert (await fleet.ping(pb.PingRequest(node=pb.Node(node_id=node_id)))).success
        with pytest.raises(FleetError, match="not found"):
            await fleet.delete_node(pb.DeleteNodeRequest(node=unknown))
        await fleet.delete_node(pb.DeleteNodeRequest(node=pb.Node(node_id=0)))
        await fleet.delete_node(pb.DeleteNodeRequest(node=pb.Node(node_id=node_id)))
        assert node_id not in state.nodes
        # REST: the 1.15 paths, plus Flower 1.15.2's client's double-slash ones
        routes = fleet.rest_routes()
        assert routes["/api/v0/fleet/pull-messages"].call == fleet.pull_messages
        assert set(DOUBLE_SLASH_PATHS) == {
            "//api/v0/fleet/pull-messages",
            "//api/v0/fleet/push-messages",
            "//api/v0/fleet/get-run",
            "//api/v0/fleet/get-fab",
        }
        assert routes["//api/v0/fleet/get-fab"].call == fleet.get_fab
        assert len(routes) == 7 + 4

    asyncio.run(main())


def test_signed_timestamp_authenticator() -> None:
    """The SuperLink's refusals, in its order, and the key ↔ node binding."""
    key = ec.generate_private_key(ec.SECP384R1())
    stranger = ec.generate_private_key(ec.SECP384R1())
    state = FleetState()

    def refusal(
        auth: SignedTimestampAuthenticator,
        method: str,
        metadata: dict[str, str | bytes],
        request: Any = None,
    ) -> str | None:
        try:
            check = auth.admit(method, metadata, state)
            if request is not None:
                check(request)
        except AccessDeniedError as exc:
            return exc.message
        return None

    anyone = SignedTimestampAuthenticator.create()
    listed = SignedTimestampAuthenticator.create([key.public_key()])
    create = pb.CreateNodeRequest(ping_interval=30)
    good = signed(key)
    for missing in (PUBLIC_KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        partial = {k: v for k, v in good.items() if k != missing}
        assert refusal(anyone, "CreateNode", partial) == "Missing authentication metadata"
    assert refusal(listed, "CreateNode", signed(stranger)) == "Public key not recognized"
    # the allow-list is checked before the signature, as the SuperLink does
    forged = {**signed(stranger), SIGNATURE_HEADER: b"\x30\x00"}
    assert refusal(listed, "CreateNode", forged) == "Public key not recognized"
    assert refusal(anyone, "CreateNode", forged) == "Invalid signature"
    swapped = {**good, SIGNATURE_HEADER: signed(stranger)[SIGNATURE_HEADER]}
    assert refusal(anyone, "CreateNode", swapped) == "Invalid signature"
    assert refusal(anyone, "CreateNode", signed(key, age=20)) == "Invalid timestamp"
    assert refusal(anyone, "CreateNode", signed(key, age=-10)) == "Invalid timestamp"
    # no node for the key yet
    assert refusal(listed, "Ping", signed(key)) == "Invalid node ID"
    assert refusal(listed, "PullTaskIns", signed(key)) == "Invalid node ID"
    assert refusal(listed, "CreateNode", signed(key), create) is None
    pem = public_key_pem(key.public_key())
    node_id = state.create_node(30.0, pem)
    assert refusal(listed, "CreateNode", signed(key), create) == "Public key already in use"
    ping = pb.PingRequest(node=pb.Node(node_id=node_id), ping_interval=30)
    assert refusal(listed, "Ping", signed(key), ping) is None
    other = pb.PingRequest(node=pb.Node(node_id=node_id + 1), ping_interval=30)
    assert refusal(listed, "Ping", signed(key), other) == "Invalid node ID"
    assert refusal(listed, "PullMessages", signed(key), pb.PullMessagesRequest()) == (
        "Invalid node ID"
    )
    # DeleteNode (1.15) releases the key: it may register again
    state.delete_node(node_id, release_key=True)
    assert refusal(listed, "CreateNode", signed(key), create) is None
    assert refusal(listed, "Ping", signed(key)) == "Invalid node ID"


# ------------------------------------------------------------- detection probes


def _rest(port: int, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """A raw POST (http.client sends ``//`` paths as they are; httpx rewrites them)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=PROTOBUF)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _grpc(port: int, method: str) -> tuple[Status, str | None]:
    from test_bad_input import _unary

    status, message, _ = asyncio.run(_unary("127.0.0.1", port, method, b""))
    return status, message


def _port(server: ServerThread) -> int:
    port = server.server.port
    assert port is not None
    return port


def test_detection_probes_grpc_rere() -> None:
    with server_thread(ServerConfig(transport="grpc-rere", port=0, wire="1.15")) as server:
        port = _port(server)
        missing = (Status.UNAUTHENTICATED, "Missing authentication metadata")
        assert _grpc(port, "PullMessages") == missing
        # the 1.15 interceptor answers before the method is looked up
        assert _grpc(port, "PullTaskIns") == missing
        assert _grpc(port, "PushTaskRes") == missing
        assert _grpc(port, "CreateNode") == missing
    with server_thread(ServerConfig(transport="grpc-rere", port=0, wire="1.12")) as server:
        port = _port(server)
        assert _grpc(port, "PullMessages") == (Status.UNIMPLEMENTED, "Method not found!")
        assert _grpc(port, "PullTaskIns")[0] == Status.OK


def test_detection_probes_rest() -> None:
    with server_thread(ServerConfig(transport="rest", port=0, wire="1.15")) as server:
        port = _port(server)
        assert _rest(port, "/api/v0/fleet/pull-messages") == (200, b"")  # node 0: nothing
        assert _rest(port, "/api/v0/fleet/pull-task-ins")[0] == 404
        # the tolerance for Flower 1.15.2's REST client
        for path in DOUBLE_SLASH_PATHS:
            assert _rest(port, path, b"")[0] in (200, 500), path  # 500: push of nothing
        assert _rest(port, "//api/v0/fleet/pull-messages") == (200, b"")
        assert _rest(port, "//api/v0/fleet/create-node")[0] == 404
    with server_thread(ServerConfig(transport="rest", port=0, wire="1.12")) as server:
        port = _port(server)
        assert _rest(port, "/api/v0/fleet/pull-messages")[0] == 404
        assert _rest(port, "/api/v0/fleet/pull-task-ins") == (200, b"")
        assert _rest(port, "//api/v0/fleet/pull-task-ins")[0] == 404
        assert _rest(port, "//api/v0/fleet/get-run")[0] == 404


def test_config_checks_auth_against_the_wire() -> None:
    with pytest.raises(ValueError, match="wire must be one of"):
        ServerConfig(transport="grpc-rere", wire="1.13")
    with pytest.raises(ValueError, match="NodeAuthenticator"):
        ServerConfig(transport="grpc-rere", auth=SignedTimestampAuthenticator.create())
    with pytest.raises(ValueError, match="grpc-rere"):
        ServerConfig(transport="rest", wire="1.15", auth=SignedTimestampAuthenticator.create())
    # 1.15 auth needs no TLS (the SuperLink's auto-auth runs on plaintext too)
    config = ServerConfig(transport="grpc-rere", wire="1.15")
    assert isinstance(config.guard(), SignedTimestampAuthenticator)
    assert ServerConfig(transport="grpc-rere").guard() is None


# ----------------------------------------------------------------------------- runs


def _client(tmp: Path, address: str, index: int, *extra: str) -> Process:
    args = [sys.executable, "-m", "flwr_sdk.cli", "client"]
    args += ["--app", "examples.cli_client:client_fn", "--server-address", address, *extra]
    env = {**sdk_env(), "FLWR_SDK_EXAMPLE_INDEX": str(index)}
    return Process(
        args,
        tmp / f"client{index}-{time.monotonic_ns()}.log",
        lambda a, **kw: subprocess.Popen(a, env=env, **kw),
    )


@pytest.mark.parametrize("wire", ["1.15", "1.12"])
@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_detecting_client_completes_runs(tmp_path: Path, wire: str, transport: str) -> None:
    config = ServerConfig(
        transport=transport,
        port=0,
        num_rounds=ROUNDS,
        strategy=shift_strategy(2),
        round_timeout=60,
        record_parameters=True,
        wire=wire,
    )
    with server_thread(config) as server, processes() as procs:
        procs.extend(
            _client(tmp_path, server.address, i, "--transport", transport) for i in range(2)
        )
        server.start_rounds()
        assert_shift_rounds(server.history(timeout=120), ROUNDS)
        assert stop_fleet_clients(procs) == [0, 0], [p.output() for p in procs]
        for proc in procs:
            assert f"SuperLink speaks the Flower {wire} Fleet API" in proc.output()


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_client_asking_for_1_12_fails_against_1_15(tmp_path: Path, transport: str) -> None:
    config = ServerConfig(transport=transport, port=0, wire="1.15")
    with server_thread(config) as server, processes() as procs:
        proc = _client(tmp_path, server.address, 0, "--transport", transport, "--wire", "1.12")
        procs.append(proc)
        code = proc.wait(60)
        output = proc.output()
        assert code != 0, output
        assert "WireLineError" in output, output
        assert "Flower 1.12 Fleet API" in output and "Flower 1.15 Fleet API" in output, output
        state = server.server.state
        assert state is not None and server.in_loop(lambda: dict(state.nodes)) == {}
