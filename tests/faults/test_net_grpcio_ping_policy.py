"""Keepalive PINGs against the ping policy of Flower's own gRPC server (grpcio).

The server is built by flwr 1.12.0's ``generic_create_grpc_server`` — the function behind
the legacy grpc-bidi server and the SuperLink's Fleet API, with Flower's keepalive options
— in the release's cached virtualenv, serving a test service: ``Hold`` (a bidi stream the
server never answers, like ``Join`` between rounds) and ``Unary`` (answers at once, like a
Fleet call). The client PINGs after 0.3 s of silence. Checked:

* the fact the design rests on: PINGs every 0.3 s with no HEADERS/DATA from the server in
  between get the connection killed (GOAWAY "too_many_pings" after two strikes);
* with the strike-safe rule (:mod:`flwr_sdk.net.grpc_tuning`) an idle held stream gets
  one PING and lives on;
* while the server answers calls (HEADERS/DATA reset its strike clock), every silence gets
  its PING and the connection lives on.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import StreamStreamMethod, UnaryUnaryMethod
from grpclib.encoding.base import CodecBase
from support.flower_env import FlowerEnv

from flwr_sdk.net.grpc_tuning import GrpcTuning, TunedChannel

pytestmark = pytest.mark.interop

SERVER = """
import sys, time
import grpc
from flwr.server.superlink.fleet.grpc_bidi.grpc_server import generic_create_grpc_server

def hold(request_iterator, context):
    for _ in request_iterator:
        pass

def unary(request, context):
    return b"ok"

handler = grpc.method_handlers_generic_handler("t.S", {
    "Hold": grpc.stream_stream_rpc_method_handler(hold),
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
})
server = generic_create_grpc_server(
    (None, lambda _servicer, server: server.add_generic_rpc_handlers((handler,))),
    sys.argv[1],
)
server.start()
print("serving", flush=True)
server.wait_for_termination()
"""


class RawCodec(CodecBase):
    """Bytes in, bytes out."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return bytes(data)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def flower_grpc_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A port where flwr 1.12.0's generic_create_grpc_server serves the test service."""
    env = FlowerEnv.get("1.12.0")
    script = Path(tmp_path_factory.mktemp("grpcio")) / "server.py"
    script.write_text(SERVER)
    port = _free_port()
    process = subprocess.Popen(
        [str(env.python), str(script), f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "serving"
        yield port
    finally:
        process.kill()
        process.wait(10)


def _run(port: int, tuning: GrpcTuning, seconds: float, *, calls: bool) -> tuple[str, int]:
    """Hold a stream for ``seconds`` (with unary calls every 0.6 s if ``calls``)."""

    async def main() -> tuple[str, int]:
        channel = TunedChannel("127.0.0.1", port, codec=RawCodec(), tuning=tuning)
        hold = StreamStreamMethod[bytes, bytes](channel, "/t.S/Hold", bytes, bytes)
        unary = UnaryUnaryMethod[bytes, bytes](channel, "/t.S/Unary", bytes, bytes)
        outcome = "alive"
        try:
            async with hold.open() as stream:
                await stream.send_message(b"x")
                started = time.monotonic()
                try:
                    while time.monotonic() - started < seconds:
                        if calls:
                            await asyncio.sleep(0.6)
                            assert await unary(b"u") == b"ok"
                        else:
                            await asyncio.wait_for(stream.recv_message(), seconds)
                except asyncio.TimeoutError:
                    pass
                await stream.cancel()
        except Exception as exc:  # what the dead connection raised
            outcome = f"{type(exc).__name__}: {exc}"
        protocol: Any = channel._protocol
        pings = protocol.liveness.pings_sent if protocol is not None else -1
        channel.close()
        return outcome, pings

    return asyncio.run(main())


def test_pings_closer_than_five_minutes_get_the_connection_killed(flower_grpc_port: int) -> None:
    """The grpc-core policy itself: a third strike ends the connection."""
    tuning = GrpcTuning(
        keepalive_time=0.3, keepalive_timeout=5, peer_min_ping_interval=0.2, progress_timeout=None
    )
    outcome, pings = _run(flower_grpc_port, tuning, 6.0, calls=False)
    assert outcome != "alive", pings
    assert 3 <= pings <= 6, (outcome, pings)


def test_strike_safe_pings_on_an_idle_stream(flower_grpc_port: int) -> None:
    tuning = GrpcTuning(keepalive_time=0.3, keepalive_timeout=5, progress_timeout=None)
    outcome, pings = _run(flower_grpc_port, tuning, 5.0, calls=False)
    assert outcome == "alive"
    assert pings == 1  # the next one is 330 s away


def test_every_silence_gets_a_ping_while_the_server_answers_calls(flower_grpc_port: int) -> None:
    tuning = GrpcTuning(keepalive_time=0.3, keepalive_timeout=5, progress_timeout=None)
    outcome, pings = _run(flower_grpc_port, tuning, 5.0, calls=True)
    assert outcome == "alive"
    assert pings >= 5
