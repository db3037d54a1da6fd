"""Liveness of client gRPC connections under a black hole (issue 16, point 1).

Real sockets over loopback: a grpclib server behind :class:`BlackHoleProxy`, a TCP proxy
that, once told to, keeps both connections open but forwards nothing more (it reads and
drops what arrives: no FIN, no RST, no back-pressure — like a NAT that forgot the flow or
a host that crashed). The client side runs with short liveness periods; the defaults and
why they are what they are: :mod:`flwr_sdk.net.grpc_tuning` and docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server
from support.hostile_client import client_config

from flwr_sdk.errors import ServerUnavailableError
from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.grpc_tuning import GrpcTuning, TunedChannel
from flwr_sdk.net.grpclib_internals import bound_port
from flwr_sdk.transport import connector_for, grpc_channel
from flwr_sdk.transport.grpc_errors import map_grpc_error
from flwr_sdk.wire import bidi

pytestmark = pytest.mark.exclusive  # times fault detection

JOIN = bidi.JOIN
HOLD = "/test.Hold/Unary"
SLACK = 1.5
"""Seconds allowed on top of the configured bound (timer ticks, a loaded CI machine)."""

KEEPALIVE_ONLY = GrpcTuning(
    keepalive_time=0.4, keepalive_timeout=0.4, peer_min_ping_interval=0.2, progress_timeout=None
)
PROGRESS_ONLY = GrpcTuning(keepalive_time=None, progress_timeout=0.8)


class RawCodec(CodecBase):
    """Bytes in, bytes out."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return bytes(data)


class BlackHoleProxy:
    """A loopback TCP proxy that can stop forwarding without closing anything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.holed = False
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def black_hole(self) -> None:
        """From now on, drop every byte in both directions."""
        self.holed = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if not self.holed:
                    sink.write(data)
                    await sink.drain()
            if not self.holed:
                sink.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Holding:
    """A server that never answers: a unary method and ``Join`` both wait until closed."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def hold(self, stream: Any) -> None:
        await stream.recv_message()
        await self.release.wait()
        await stream.send_message(b"late")

    async def join(self, stream: Any) -> None:
        await self.release.wait()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            HOLD: Handler(self.hold, Cardinality.UNARY_UNARY, bytes, bytes),
            JOIN.grpc_path: Handler(
                self.join, Cardinality.STREAM_STREAM, JOIN.request_type, JOIN.response_type
            ),
        }


@asynccontextmanager
async def behind_proxy(codec: CodecBase) -> AsyncIterator[tuple[BlackHoleProxy, Holding]]:
    holding = Holding()
    server = Server([holding], codec=codec)
    await server.start("127.0.0.1", 0)
    proxy = BlackHoleProxy(bound_port(server))
    await proxy.start()
    try:
        yield proxy, holding
    finally:
        holding.release.set()
        await proxy.close()
        server.close()
        await server.wait_closed()


async def _unary_under_black_hole(tuning: GrpcTuning) -> tuple[BaseException, float]:
    async with behind_proxy(RawCodec()) as (proxy, _holding):
        assert proxy._server is not None
        port = int(proxy._server.sockets[0].getsockname()[1])
        channel = TunedChannel("127.0.0.1", port, codec=RawCodec(), tuning=tuning)
        assert channel.tuned
        try:
            method = UnaryUnaryMethod[bytes, bytes](channel, HOLD, bytes, bytes)
            call = asyncio.create_task(method(b"ping me"))
            other = asyncio.create_task(method(b"me too"))
            await asyncio.sleep(0.2)  # the requests are out, the answers are held
            proxy.black_hole()
            started = time.monotonic()
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(call, 10)
            elapsed = time.monotonic() - started
            # Every call on the dead connection fails, with the same reason.
            with pytest.raises(type(caught.value), match=re.escape(str(caught.value))):
                await asyncio.wait_for(other, 1)
            return caught.value, elapsed
        finally:
            channel.close()


def test_in_flight_unary_call_fails_on_missing_ping_ack() -> None:
    """Keepalive alone: the held call fails once a PING goes unanswered."""
    error, elapsed = asyncio.run(_unary_under_black_hole(KEEPALIVE_ONLY))
    mapped = map_grpc_error(error, host="127.0.0.1", what="Hold")
    assert isinstance(mapped, ServerUnavailableError), repr(error)
    assert "PING" in str(mapped)
    assert elapsed < 0.4 + 0.4 + SLACK, elapsed


def test_in_flight_unary_call_fails_on_the_progress_deadline() -> None:
    """Progress deadline alone: no byte for 0.8 s while the answer is due."""
    error, elapsed = asyncio.run(_unary_under_black_hole(PROGRESS_ONLY))
    mapped = map_grpc_error(error, host="127.0.0.1", what="Hold")
    assert isinstance(mapped, ServerUnavailableError), repr(error)
    assert "no byte received" in str(mapped)
    assert 0.5 <= elapsed < 0.8 + SLACK, elapsed


def test_a_live_server_that_holds_a_call_is_pinged_not_killed() -> None:
    """Without a black hole the PINGs are answered: the held call keeps waiting."""

    async def main() -> None:
        async with behind_proxy(RawCodec()) as (proxy, holding):
            assert proxy._server is not None
            port = int(proxy._server.sockets[0].getsockname()[1])
            channel = TunedChannel("127.0.0.1", port, codec=RawCodec(), tuning=KEEPALIVE_ONLY)
            try:
                method = UnaryUnaryMethod[bytes, bytes](channel, HOLD, bytes, bytes)
                call = asyncio.create_task(method(b"ping me"))
                await asyncio.sleep(2.0)
                assert not call.done()
                protocol: Any = channel._protocol
                assert protocol.liveness.pings_sent >= 3
                holding.release.set()
                assert await asyncio.wait_for(call, 2) == b"late"
            finally:
                channel.close()

    asyncio.run(main())


@pytest.fixture
def short_liveness(monkeypatch: pytest.MonkeyPatch) -> GrpcTuning:
    """Channels the transports create use short liveness periods."""
    tuning = GrpcTuning(
        keepalive_time=0.4, keepalive_timeout=0.4, peer_min_ping_interval=0.2, progress_timeout=0.4
    )
    monkeypatch.setattr(grpc_channel, "CLIENT_TUNING", tuning)
    return tuning


def _join(address: str) -> Any:
    settings = client_config("grpc-bidi", address).settings
    return connector_for("grpc-bidi", settings, None).connect()


def test_idle_join_fails_as_unavailable_under_a_black_hole(short_liveness: GrpcTuning) -> None:
    """An idle Join (the server between rounds) notices the black hole via keepalive."""

    async def main() -> float:
        async with behind_proxy(FastProtoCodec()) as (proxy, _holding):
            assert proxy._server is not None
            port = int(proxy._server.sockets[0].getsockname()[1])
            connection = await asyncio.wait_for(_join(f"127.0.0.1:{port}"), 3)
            try:
                receive = asyncio.create_task(connection.receive())
                await asyncio.sleep(1.0)  # idle, pings answered, nothing owed: no failure
                assert not receive.done()
                proxy.black_hole()
                started = time.monotonic()
                with pytest.raises(ServerUnavailableError, match="PING"):
                    await asyncio.wait_for(receive, 10)
                return time.monotonic() - started
            finally:
                await connection.close()

    elapsed = asyncio.run(main())
    assert elapsed < 0.4 + 0.4 + SLACK, elapsed


def test_idle_join_is_not_killed_by_the_progress_deadline(short_liveness: GrpcTuning) -> None:
    """A server that holds Join for long (10x the progress deadline) is legitimate."""

    async def main() -> None:
        async with behind_proxy(FastProtoCodec()) as (proxy, _holding):
            assert proxy._server is not None
            port = int(proxy._server.sockets[0].getsockname()[1])
            connection = await asyncio.wait_for(_join(f"127.0.0.1:{port}"), 3)
            try:
                receive = asyncio.create_task(connection.receive())
                await asyncio.sleep(4 * short_liveness.keepalive_time)  # type: ignore[operator]
                assert not receive.done()
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receive
            finally:
                await connection.close()

    asyncio.run(main())


def test_join_into_a_silent_tls_listener_fails_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TCP is accepted by the kernel, the TLS handshake is never answered."""
    import socket

    from flwr_sdk.server.tls_material import make_tls_material
    from flwr_sdk.transport import grpc_bidi

    monkeypatch.setattr(grpc_bidi, "CONNECT_TIMEOUT", 0.5)
    material = make_tls_material()

    async def main(port: int) -> float:
        plaintext = client_config("grpc-bidi", f"127.0.0.1:{port}").settings
        settings = dataclasses.replace(
            plaintext, root_certificates=material.ca_cert_pem, insecure=False
        )
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match=r"within 0\.5 s"):
            await asyncio.wait_for(connector_for("grpc-bidi", settings, None).connect(), 10)
        return time.monotonic() - started

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        elapsed = asyncio.run(main(silent.getsockname()[1]))
    assert elapsed < 0.5 + SLACK, elapsed
