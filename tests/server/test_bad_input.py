"""Bad input never takes the reference server down and gets a clear answer.

Each test runs a real federation (two flwr-sdk client processes, 2 rounds) while a raw
client throws bad requests at the same server; the federation must finish with every
reply counted and no failures, and each bad request must get the expected status.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from server_harness import (
    ServerThread,
    assert_shift_rounds,
    auth_config,
    server_thread,
    shift_strategy,
    stop_fleet_clients,
    tls_config,
)
from support.federation import Process, processes, sdk_env
from support.raw_grpc import RawBytesCodec

from flwr_sdk.net.grpc_tuning import TunedChannel
from flwr_sdk.net.tls import client_ssl_context
from flwr_sdk.server import ServerConfig
from flwr_sdk.server.node_auth import pem_public_bytes
from flwr_sdk.wire.v1_12_auth import auth_token, public_key_to_header, shared_hmac_key

ROUNDS = 2
LIMIT = 1 << 20  # 1 MiB message-size limit for these servers


def _config(transport: str, **kwargs: Any) -> ServerConfig:
    return ServerConfig(
        transport=transport,
        port=0,
        num_rounds=ROUNDS,
        strategy=shift_strategy(2),
        round_timeout=60,
        record_parameters=True,
        max_message_length=LIMIT,
        **kwargs,
    )


def _start_clients(
    tmp: Path, address: str, transport: str, extra: Callable[[int], list[str]] | None = None
) -> list[Process]:
    procs = []
    for i in range(2):
        args = [sys.executable, "-m", "flwr_sdk.cli", "client"]
        args += ["--app", "examples.cli_client:client_fn", "--server-address", address]
        args += ["--transport", transport, *(extra(i) if extra else [])]
        env = {**sdk_env(), "FLWR_SDK_EXAMPLE_INDEX": str(i)}
        procs.append(
            Process(
                args,
                tmp / f"client{i}.log",
                lambda a, env=env, **kw: subprocess.Popen(a, env=env, **kw),
            )
        )
    return procs


@contextmanager
def _federation(tmp: Path, config: ServerConfig, extra: Any = None) -> Iterator[ServerThread]:
    """A running federation; on exit asserts that it completed without failures."""
    with server_thread(config) as server, processes() as procs:
        procs.extend(_start_clients(tmp, server.address, config.transport, extra))
        server.start_rounds()
        yield server
        history = server.history(timeout=120)
        assert_shift_rounds(history, ROUNDS)
        assert stop_fleet_clients(procs) == [0, 0], [p.output() for p in procs]


async def _unary(
    host: str,
    port: int,
    method: str,
    body: bytes,
    metadata: dict[str, str] | None = None,
    ssl: Any = None,
) -> tuple[Status, str | None, bytes | None]:
    # Raw bytes: the test controls the request body exactly.
    channel = TunedChannel(host, port, codec=RawBytesCodec(), ssl=ssl)
    try:
        async with channel.request(
            f"/flwr.proto.Fleet/{method}",
            Cardinality.UNARY_UNARY,
            bytes,
            bytes,
            metadata=metadata,
            timeout=10,
        ) as stream:
            # Send in the background: a server that refuses a message from its length
            # prefix stops reading it, so the sender may never finish.
            await stream.send_request()
            send = asyncio.ensure_future(stream.send_message(body, end=True))
            try:
                reply = await stream.recv_message()
                await stream.recv_trailing_metadata()
            except GRPCError as exc:
                return exc.status, exc.message, None
            finally:
                send.cancel()
                with contextlib.suppress(BaseException):
                    await send
            return Status.OK, None, reply
    except GRPCError as exc:
        return exc.status, exc.message, None
    finally:
        channel.close()


async def _raw_prefix_call(port: int, announced: int) -> dict[str, str]:
    """A hand-made HTTP/2 gRPC call whose message prefix announces ``announced`` bytes."""
    import struct

    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import ResponseReceived, StreamEnded, StreamReset, TrailersReceived

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/flwr.proto.Fleet/PullTaskIns"),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    conn.send_data(stream_id, b"\x00" + struct.pack(">I", announced) + bytes(100))
    writer.write(conn.data_to_send())
    headers: dict[str, str] = {}
    try:
        async with asyncio.timeout(10):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, ResponseReceived | TrailersReceived):
                        headers.update({str(k): str(v) for k, v in event.headers})
                    elif isinstance(event, StreamEnded | StreamReset):
                        return headers
                writer.write(conn.data_to_send())
    finally:
        writer.close()
    return headers


def _hostport(server: ServerThread) -> tuple[str, int]:
    port = server.server.port
    assert port is not None
    return "127.0.0.1", port


def test_grpc_rere_bad_requests(tmp_path: Path) -> None:
    with _federation(tmp_path, _config("grpc-rere")) as server:
        host, port = _hostport(server)
        unknown = pb.Node(node_id=2**63 + 12345)

        def call(method: str, body: bytes) -> tuple[Status, str | None, bytes | None]:
            return asyncio.run(_unary(host, port, method, body))

        # unknown node: answered as the 1.12 SuperLink does
        status, _, reply = call("Ping", bytes(pb.PingRequest(node=unknown, ping_interval=30)))
        assert status == Status.OK and pb.PingResponse.parse(reply or b"").success is False
        status, _, reply = call("PullTaskIns", bytes(pb.PullTaskInsRequest(node=unknown)))
        assert status == Status.OK and not pb.PullTaskInsResponse.parse(reply or b"").task_ins_list
        status, message, _ = call("DeleteNode", bytes(pb.DeleteNodeRequest(node=unknown)))
        assert status == Status.UNKNOWN and f"Node {unknown.node_id} not found" in (message or "")
        orphan = pb.TaskRes(
            run_id=1,
            task=pb.Task(
                producer=unknown,
                consumer=pb.Node(anonymous=True),
                created_at=2e9,
                ttl=60,
                ancestry=["00000000-0000-4000-8000-000000000000"],
                task_type="train",
                recordset=pb.RecordSet(),
            ),
        )
        status, _, reply = call("PushTaskRes", bytes(pb.PushTaskResRequest(task_res_list=[orphan])))
        assert status == Status.OK
        assert pb.PushTaskResResponse.parse(reply or b"").results == {"None": 0}
        orphan.task.ancestry = ["not-a-uuid"]  # type: ignore[union-attr]
        status, message, _ = call(
            "PushTaskRes", bytes(pb.PushTaskResRequest(task_res_list=[orphan]))
        )
        assert status == Status.UNKNOWN and "UUID" in (message or "")
        status, message, _ = call("PushTaskRes", b"")
        assert status == Status.UNKNOWN and "list index out of range" in (message or "")
        # garbage and truncated bodies
        status, message, _ = call("Ping", b"\xff\xff\xff")
        assert status == Status.INTERNAL and "deserializing" in (message or "")
        whole = bytes(pb.PingRequest(node=unknown, ping_interval=30))
        status, message, _ = call("Ping", whole[:-3])
        assert status == Status.INTERNAL and "deserializing" in (message or "")
        # over the message-size limit: refused from the length prefix
        status, message, _ = call("PullTaskIns", b"\x0a" + b"\x80\x80\x80\x01" + bytes(LIMIT + 10))
        assert status == Status.RESOURCE_EXHAUSTED, (status, message)
        # a prefix announcing 600 MB followed by 100 bytes: refused before reading the body
        headers = asyncio.run(_raw_prefix_call(port, 600_000_000))
        assert headers.get("grpc-status") == str(Status.RESOURCE_EXHAUSTED.value), headers
        assert "600000000" in headers.get("grpc-message", "")
        # the server is still fine: CreateNode works (offline at once: never sampled)
        status, _, reply = call("CreateNode", bytes(pb.CreateNodeRequest(ping_interval=0)))
        assert status == Status.OK and pb.CreateNodeResponse.parse(reply or b"").node.node_id >= 1  # type: ignore[union-attr]


def test_grpc_rere_auth_bad_tokens(tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    auth, keys = auth_config(tmp_path, 3)  # the third key is for the raw client here
    config = _config("grpc-rere", tls=tls, auth=auth)

    def extra(i: int) -> list[str]:
        private, public = keys[i]
        return [
            "--root-certificates",
            str(ca),
            "--auth-key-private",
            str(private),
            "--auth-key-public",
            str(public),
        ]

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    own_key = serialization.load_ssh_private_key(keys[2][0].read_bytes(), password=None)
    assert isinstance(own_key, ec.EllipticCurvePrivateKey)
    stranger = ec.generate_private_key(ec.SECP384R1())

    with _federation(tmp_path, config, extra) as server:
        host, port = _hostport(server)
        ssl = client_ssl_context(ca.read_bytes(), alpn=["h2"])

        def call(
            method: str, body: bytes, md: dict[str, str] | None
        ) -> tuple[Status, str | None, bytes | None]:
            return asyncio.run(_unary(host, port, method, body, md, ssl=ssl))

        create = bytes(pb.CreateNodeRequest(ping_interval=0))
        denied = (Status.UNAUTHENTICATED, "Access denied")
        assert call("CreateNode", create, None)[:2] == denied
        assert (
            call("CreateNode", create, {"public-key": public_key_to_header(stranger.public_key())})[
                :2
            ]
            == denied
        )
        assert call("CreateNode", create, {"public-key": "!!not base64!!"})[:2] == denied
        own = {"public-key": public_key_to_header(own_key.public_key())}
        status, _, reply = call("CreateNode", create, own)
        assert status == Status.OK
        node = pb.CreateNodeResponse.parse(reply or b"").node
        assert node is not None
        server_pub = auth.private_key.public_key()
        hmac_key = shared_hmac_key(own_key, server_pub)
        ping = pb.PullTaskInsRequest(node=node)
        good = {**own, "auth-token": auth_token(hmac_key, ping)}
        assert call("PullTaskIns", bytes(ping), good)[0] == Status.OK
        assert call("PullTaskIns", bytes(ping), own)[:2] == denied  # no token
        wrong = {**own, "auth-token": auth_token(b"another key", ping)}
        assert call("PullTaskIns", bytes(ping), wrong)[:2] == denied
        other = pb.PullTaskInsRequest(node=pb.Node(node_id=node.node_id ^ 1))
        assert (
            call("PullTaskIns", bytes(other), {**own, "auth-token": auth_token(hmac_key, other)})[
                :2
            ]
            == denied
        )
        assert (
            call("PushTaskRes", b"", {**own, "auth-token": auth_token(hmac_key, b"")})[:2] == denied
        )
        assert pem_public_bytes(own_key.public_key()) in auth.allowed


def _rest_post(
    base: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    default = {"Content-Type": "application/protobuf", "Accept": "application/protobuf"}
    with httpx.Client(base_url=base, timeout=10) as client:
        return client.post(path, content=body, headers=headers if headers is not None else default)


def test_rest_bad_requests(tmp_path: Path) -> None:
    with _federation(tmp_path, _config("rest")) as server:
        base = server.address
        unknown = pb.Node(node_id=2**63 + 7)
        ping = bytes(pb.PingRequest(node=unknown, ping_interval=30))
        ok = _rest_post(base, "/api/v0/fleet/ping", ping)
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/protobuf"
        assert pb.PingResponse.parse(ok.content).success is False
        r = _rest_post(
            base,
            "/api/v0/fleet/ping",
            ping,
            {"Content-Type": "application/json", "Accept": "application/protobuf"},
        )
        assert (r.status_code, r.text) == (400, "Unsupported `Content-Type`")
        r = _rest_post(base, "/api/v0/fleet/ping", ping, {"Content-Type": "application/protobuf"})
        assert (r.status_code, r.text) == (400, "Unsupported `Accept`")
        r = _rest_post(
            base,
            "/api/v0/fleet/ping",
            ping,
            {"Content-Type": "application/protobuf", "Accept": "*/*"},
        )
        assert r.status_code == 400
        with httpx.Client(base_url=base) as client:
            assert client.get("/api/v0/fleet/ping").status_code == 405
        assert _rest_post(base, "//api/v0/fleet/get-run", b"").status_code == 404
        assert _rest_post(base, "/api/v0/fleet/pull-messages", b"").status_code == 404
        r = _rest_post(base, "/api/v0/fleet/ping", b"\xff\xff\xff")
        assert (r.status_code, r.text) == (400, "Invalid protobuf body")
        r = _rest_post(base, "/api/v0/fleet/ping", ping[:-3])
        assert r.status_code == 400
        r = _rest_post(base, "/api/v0/fleet/delete-node", bytes(pb.DeleteNodeRequest(node=unknown)))
        assert r.status_code == 500
        assert _rest_post(base, "/api/v0/fleet/push-task-res", b"").status_code == 500
        r = _rest_post(base, "/api/v0/fleet/pull-task-ins", bytes(LIMIT + 1))
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(LIMIT // 65536 + 2):
                yield bytes(65536)

        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.post(
                "/api/v0/fleet/pull-task-ins",
                content=chunks(),
                headers={"Content-Type": "application/protobuf", "Accept": "application/protobuf"},
            )
        assert r.status_code == 413


def test_grpc_rere_1_15_bad_auth(tmp_path: Path) -> None:
    """1.15 mode, allow-list: refused calls get the SuperLink's texts; the run finishes."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from flwr_sdk_proto.v1_15.flwr import proto as pb15
    from server_harness import write_ec_key_pair
    from test_server_wire_1_15 import signed

    from flwr_sdk.server import SignedTimestampAuthenticator
    from flwr_sdk.wire.v1_15_auth import SIGNATURE_HEADER

    keys = [write_ec_key_pair(tmp_path / "keys", f"client{i}") for i in range(3)]
    own_key = keys[2][0]  # the third listed key is the raw client's here
    stranger = ec.generate_private_key(ec.SECP384R1())
    auth = SignedTimestampAuthenticator.create([key.public_key() for key, _, _ in keys])
    config = _config("grpc-rere", auth=auth, wire="1.15")

    def extra(i: int) -> list[str]:
        _, private, public = keys[i]
        return ["--auth-key-private", str(private), "--auth-key-public", str(public)]

    with _federation(tmp_path, config, extra) as server:
        host, port = _hostport(server)

        def call(method: str, body: bytes, md: Any) -> tuple[Status, str | None, bytes | None]:
            return asyncio.run(_unary(host, port, method, body, md))

        create = bytes(pb15.CreateNodeRequest(ping_interval=0))
        refused = Status.UNAUTHENTICATED
        assert call("CreateNode", create, None)[:2] == (refused, "Missing authentication metadata")
        assert call("PullMessages", b"", None)[:2] == (refused, "Missing authentication metadata")
        assert call("PullTaskIns", b"", None)[:2] == (refused, "Missing authentication metadata")
        assert call("CreateNode", create, signed(stranger))[:2] == (
            refused,
            "Public key not recognized",
        )
        forged = {**signed(own_key), SIGNATURE_HEADER: signed(stranger)[SIGNATURE_HEADER]}
        assert call("CreateNode", create, forged)[:2] == (refused, "Invalid signature")
        assert call("CreateNode", create, signed(own_key, age=60))[:2] == (
            refused,
            "Invalid timestamp",
        )
        ping_nobody = bytes(pb15.PingRequest(node=pb15.Node(node_id=5), ping_interval=0))
        assert call("Ping", ping_nobody, signed(own_key))[:2] == (refused, "Invalid node ID")
        # register the raw client's node (offline at once: never sampled)
        status, _, reply = call("CreateNode", create, signed(own_key))
        assert status == Status.OK
        node = pb15.CreateNodeResponse.parse(reply or b"").node
        assert node is not None and node.node_id not in (0, 1)
        assert call("CreateNode", create, signed(own_key))[:2] == (
            refused,
            "Public key already in use",
        )
        other = bytes(pb15.PingRequest(node=pb15.Node(node_id=node.node_id ^ 1)))
        assert call("Ping", other, signed(own_key))[:2] == (refused, "Invalid node ID")
        own_pull = bytes(pb15.PullMessagesRequest(node=node))
        status, _, reply = call("PullMessages", own_pull, signed(own_key))
        assert status == Status.OK
        assert pb15.PullMessagesResponse.parse(reply or b"").messages_list == []
        # an authenticated call of a 1.12 method: what grpcio answers behind the interceptor
        assert call("PullTaskIns", b"", signed(own_key))[:2] == (
            Status.UNKNOWN,
            "Error in service handler!",
        )
        empty_push = bytes(pb15.PushMessagesRequest(node=node))
        status, message, _ = call("PushMessages", empty_push, signed(own_key))
        assert status == Status.UNKNOWN and "list index out of range" in (message or ""), message
        status, message, _ = call("Ping", b"\xff\xff\xff", signed(own_key))
        assert status == Status.INTERNAL and "deserializing" in (message or "")
        # DeleteNode releases the key: it registers again
        delete = bytes(pb15.DeleteNodeRequest(node=node))
        assert call("DeleteNode", delete, signed(own_key))[0] == Status.OK
        assert call("CreateNode", create, signed(own_key))[0] == Status.OK
