"""Tests for flwr_sdk.net.grpc_tuning: tuned grpclib endpoints on 127.0.0.1 / ::1."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from grpclib.client import Channel, StreamStreamMethod, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, PingAckReceived
from hyperframe.frame import DataFrame
from support.raw_grpc import RawBytesCodec

from flwr_sdk.net.grpc_tuning import (
    DEFAULT_TUNING,
    KEEPALIVE_TIME,
    KEEPALIVE_TIMEOUT,
    PEER_MIN_PING_INTERVAL,
    PROGRESS_TIMEOUT,
    TUNED_MAX_FRAME_SIZE,
    TUNED_WINDOW_SIZE,
    ConnectionLiveness,
    GrpcTuning,
    TunedChannel,
    TunedH2Connection,
    TunedServer,
    tuned_configuration,
    tuned_server,
)
from flwr_sdk.net.tls import client_ssl_context
from flwr_sdk.server.tls_material import make_tls_material

UNARY = "/test.Echo/Unary"
BIDI = "/test.Echo/Bidi"


class Echo:
    def __init__(self) -> None:
        self.calls = 0

    async def unary(self, stream: Stream[bytes, bytes]) -> None:
        self.calls += 1
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    async def bidi(self, stream: Stream[bytes, bytes]) -> None:
        self.calls += 1
        async for message in stream:
            await stream.send_message(message[::-1])

    def __mapping__(self) -> dict[str, Handler]:
        return {
            UNARY: Handler(self.unary, Cardinality.UNARY_UNARY, bytes, bytes),
            BIDI: Handler(self.bidi, Cardinality.STREAM_STREAM, bytes, bytes),
        }


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@asynccontextmanager
async def serving(
    server: Server, host: str = "127.0.0.1", server_ssl: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    await server.start(host, 0, ssl=server_ssl)
    assert server._server is not None
    try:
        yield int(cast(asyncio.Server, server._server).sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=30))


def test_tuned_configuration_windows() -> None:
    config = tuned_configuration()
    assert config.http2_connection_window_size == TUNED_WINDOW_SIZE == 64 * 2**20
    assert config.http2_stream_window_size == TUNED_WINDOW_SIZE


def test_64_mib_round_trip_byte_exact() -> None:
    payload = os.urandom(64 * 2**20)

    async def main() -> None:
        echo = Echo()
        async with serving(tuned_server([echo], codec=RawBytesCodec())) as port:
            channel = TunedChannel("127.0.0.1", port, codec=RawBytesCodec())
            try:
                method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
                reply = await method(payload)
                assert len(reply) == len(payload)
                assert reply == payload
                # The settings were exchanged: each side advertised 1 MiB frames.
                assert channel._protocol is not None
                h2 = channel._protocol.connection._connection
                assert isinstance(h2, TunedH2Connection)
                assert h2.local_settings.max_frame_size == TUNED_MAX_FRAME_SIZE
                assert h2.max_inbound_frame_size == TUNED_MAX_FRAME_SIZE
                assert h2.max_outbound_frame_size == TUNED_MAX_FRAME_SIZE
                assert h2.local_settings.initial_window_size == TUNED_WINDOW_SIZE
            finally:
                channel.close()
        assert echo.calls == 1

    run(main)


def test_streaming_round_trip() -> None:
    messages = [b"", b"a", os.urandom(3 * 2**20), b"xyz" * 1000]

    async def main() -> None:
        async with (
            serving(tuned_server([Echo()], codec=RawBytesCodec())) as port,
            TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            method = StreamStreamMethod[bytes, bytes](channel, BIDI, bytes, bytes)
            replies = await method(messages)
        assert replies == [m[::-1] for m in messages]

    run(main)


def test_tuned_endpoints_interoperate_with_stock_grpclib() -> None:
    payload = os.urandom(5 * 2**20)

    async def main() -> None:
        # tuned client -> stock server
        async with (
            serving(Server([Echo()], codec=RawBytesCodec())) as port,
            TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            assert await method(payload) == payload
        # stock client -> tuned server
        async with (
            serving(tuned_server([Echo()], codec=RawBytesCodec())) as port,
            Channel("127.0.0.1", port, codec=RawBytesCodec()) as stock,
        ):
            method = UnaryUnaryMethod[bytes, bytes](stock, UNARY, bytes, bytes)
            assert await method(payload) == payload

    run(main)


def test_ipv6_loopback() -> None:
    if not _has_ipv6():
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        async with (
            serving(tuned_server([Echo()], codec=RawBytesCodec()), host="::1") as port,
            TunedChannel("::1", port, codec=RawBytesCodec()) as channel,
        ):
            assert channel._authority == f"[::1]:{port}"
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            assert await method(b"hello") == b"hello"

    run(main)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_round_trip(host: str) -> None:
    material = make_tls_material()
    payload = os.urandom(2**20)

    async def main() -> None:
        server = tuned_server([Echo()], codec=RawBytesCodec())
        async with serving(server, server_ssl=material.server_ssl_context()) as port:
            ctx = client_ssl_context(material.ca_cert_pem, alpn=["h2"])
            async with TunedChannel(host, port, ssl=ctx, codec=RawBytesCodec()) as channel:
                method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
                assert await method(payload) == payload
                assert channel._protocol is not None
                ssl_object = channel._protocol.connection._transport.get_extra_info("ssl_object")
                assert ssl_object.selected_alpn_protocol() == "h2"

    run(main)


class RecordingLogger:
    """An h2 logger that records what h2 logs at trace level."""

    def __init__(self) -> None:
        self.traces: list[str] = []

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def trace(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        if fmt.startswith("Received frame"):
            self.traces.append(fmt % args)


def _exchange(client: H2Connection, server: H2Connection, body: bytes) -> list[Any]:
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    stream_id = client.get_next_available_stream_id()
    client.send_headers(
        stream_id, [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    )
    client.send_data(stream_id, body, end_stream=True)
    return server.receive_data(client.data_to_send())


def test_received_data_frames_are_not_hex_dumped() -> None:
    body = b"\xab" * 1000
    stock_logger, tuned_logger = RecordingLogger(), RecordingLogger()
    stock = H2Connection(H2Configuration(client_side=False, logger=stock_logger))  # type: ignore[arg-type]
    tuned = TunedH2Connection(H2Configuration(client_side=False, logger=tuned_logger))  # type: ignore[arg-type]
    stock_events = _exchange(H2Connection(H2Configuration(client_side=True)), stock, body)
    tuned_events = _exchange(H2Connection(H2Configuration(client_side=True)), tuned, body)

    def data_of(events: list[Any]) -> bytes:
        return b"".join(e.data for e in events if type(e).__name__ == "DataReceived")

    assert data_of(stock_events) == data_of(tuned_events) == body
    assert [type(e).__name__ for e in stock_events] == [type(e).__name__ for e in tuned_events]
    stock_data = [t for t in stock_logger.traces if t.startswith("Received frame: DataFrame")]
    tuned_data = [t for t in tuned_logger.traces if "DataFrame" in t]
    assert stock_data and "<hex:abababab" in stock_data[0]
    assert tuned_data and "hex" not in tuned_data[0]
    assert "<1000 bytes>" in tuned_data[0]


def test_no_global_side_effects() -> None:
    async def main() -> None:
        async with (
            serving(tuned_server([Echo()], codec=RawBytesCodec())) as port,
            TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            await method(b"x" * 100_000)

    run(main)
    # hyperframe and h2 classes are untouched
    assert "hex:" in repr(DataFrame(1, b"abc"))
    conn = H2Connection()
    assert set(conn._frame_dispatch_table) == set(type(conn)().__dict__["_frame_dispatch_table"])
    assert conn.local_settings.max_frame_size == 2**14

    # a stock grpclib channel still uses h2 defaults
    async def stock() -> None:
        async with (
            serving(Server([Echo()], codec=RawBytesCodec())) as port,
            Channel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            await method(b"y")
            assert channel._protocol is not None
            h2 = channel._protocol.connection._connection
            assert type(h2) is H2Connection
            assert h2.local_settings.max_frame_size == 2**14

    run(stock)


def test_custom_tuning_and_config() -> None:
    async def main() -> None:
        tuning = GrpcTuning(max_frame_size=None, quiet_data_frames=False)
        server = TunedServer([Echo()], codec=RawBytesCodec(), tuning=tuning)
        async with serving(server) as port:
            config = tuned_configuration(window_size=2**20)
            async with TunedChannel(
                "127.0.0.1", port, codec=RawBytesCodec(), config=config, tuning=tuning
            ) as channel:
                method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
                assert await method(b"z" * 300_000) == b"z" * 300_000
                assert channel._protocol is not None
                h2 = channel._protocol.connection._connection
                # Still the tuned connection (lenient header decoding), frames left as h2's.
                assert isinstance(h2, TunedH2Connection) and not h2.quiet_data_frames
                assert h2.local_settings.max_frame_size == 2**14
                assert h2.local_settings.initial_window_size == 2**20

    run(main)


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        GrpcTuning(max_frame_size=1000)
    with pytest.raises(ValueError, match="max_frame_size"):
        GrpcTuning(max_frame_size=2**24)
    with pytest.raises(TypeError, match="max_frame_size"):
        GrpcTuning(max_frame_size=True)

    async def main() -> None:
        with pytest.raises(TypeError, match="ssl"):
            TunedChannel("127.0.0.1", 1, ssl=True)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="grpc_max_message_length"):
            TunedChannel("127.0.0.1", 1, max_message_length=0)
        with pytest.raises(TypeError, match="tuning"):
            tuned_server([], tuning="fast")  # type: ignore[arg-type]

    run(main)


def test_first_reply_with_large_frames_on_fresh_connections() -> None:
    """Regression: SETTINGS ACK and a >16 KiB DATA frame arriving in one read."""
    payload = b"q" * 200_000

    async def main() -> None:
        async with serving(tuned_server([Echo()], codec=RawBytesCodec())) as port:
            for _ in range(10):
                async with TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel:
                    method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
                    assert await method(payload) == payload

    run(main)


def _client_with_open_stream(cls: type[H2Connection]) -> tuple[H2Connection, int]:
    conn = cls(config=H2Configuration(client_side=True))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id, [(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")]
    )
    conn.data_to_send()
    return conn, stream_id


def test_send_data_frame_matches_h2_send_data_without_copying() -> None:
    body = memoryview(os.urandom(16_000))
    stock, sid = _client_with_open_stream(H2Connection)
    tuned, tid = _client_with_open_stream(TunedH2Connection)
    assert sid == tid
    # A pending control frame must come out before the DATA frame header.
    stock.ping(b"12345678")
    tuned.ping(b"12345678")
    stock.send_data(sid, body)
    expected = stock.data_to_send()
    assert isinstance(tuned, TunedH2Connection)
    head = tuned.send_data_frame(tid, body)
    assert head + bytes(body) == expected
    assert len(head) == 17 + 9  # PING frame + DATA frame header
    assert tuned.local_flow_control_window(tid) == stock.local_flow_control_window(sid)
    assert tuned.outbound_flow_control_window == stock.outbound_flow_control_window
    assert tuned.data_to_send() == b""
    # The stream is still open: h2 can end it afterwards.
    tuned.end_stream(tid)
    assert tuned.data_to_send() == b"\x00\x00\x00\x00\x01\x00\x00\x00\x01"


def test_send_data_frame_enforces_window_and_frame_size() -> None:
    from h2.exceptions import FlowControlError, FrameTooLargeError

    tuned, sid = _client_with_open_stream(TunedH2Connection)
    assert isinstance(tuned, TunedH2Connection)
    too_big_frame = memoryview(bytes(tuned.max_outbound_frame_size + 1))
    with pytest.raises(FrameTooLargeError):
        tuned.send_data_frame(sid, too_big_frame)
    window = tuned.local_flow_control_window(sid)
    chunk = memoryview(bytes(tuned.max_outbound_frame_size))
    while window >= chunk.nbytes:
        tuned.send_data_frame(sid, chunk)
        window -= chunk.nbytes
    with pytest.raises(FlowControlError):
        tuned.send_data_frame(sid, chunk)


# --- liveness rules (ConnectionLiveness, with a fake clock) ---------------------------------


class _FakeStream:
    def __init__(self, stream_id: int, *, awaiting: bool) -> None:
        self.id = stream_id
        self.awaiting_peer = awaiting


def _liveness(
    streams: list[_FakeStream], **settings: Any
) -> tuple[ConnectionLiveness, list[bytes], list[str]]:
    pings: list[bytes] = []
    failures: list[str] = []
    tuning = GrpcTuning(**settings)
    liveness = ConnectionLiveness(
        tuning, ping=pings.append, streams=lambda: streams, fail=failures.append
    )
    liveness.last_received = 0.0
    return liveness, pings, failures


def test_default_liveness_numbers() -> None:
    """The documented defaults (module docs, docs/reliability.md)."""
    assert DEFAULT_TUNING.keepalive_time == KEEPALIVE_TIME == 30.0
    assert DEFAULT_TUNING.keepalive_timeout == KEEPALIVE_TIMEOUT == 20.0
    assert DEFAULT_TUNING.peer_min_ping_interval == PEER_MIN_PING_INTERVAL == 330.0
    assert DEFAULT_TUNING.progress_timeout == PROGRESS_TIMEOUT == 60.0
    # grpc-core servers count a PING within 300 s of the previous one as a strike.
    assert PEER_MIN_PING_INTERVAL > 300.0


def test_no_ping_without_an_open_call() -> None:
    """keepalive_permit_without_calls = 0 on Flower's servers: nothing to probe."""
    liveness, pings, failures = _liveness([])
    liveness.check(1000.0)
    assert pings == [] and failures == []


def test_pings_never_strike_a_grpc_core_server() -> None:
    """In one stretch of server silence, PINGs are at least peer_min_ping_interval apart."""
    liveness, pings, failures = _liveness([_FakeStream(1, awaiting=False)])
    liveness.check(29.0)
    assert pings == []
    liveness.check(30.0)
    assert len(pings) == 1  # the first PING of a silence is free
    liveness.received([PingAckReceived(ping_data=b"other-id")])  # not this PING's ACK
    liveness.check(49.0)
    assert failures == []
    liveness.received([PingAckReceived(ping_data=pings[0])])
    liveness.last_received = 50.0  # the ACK came at 50 s (received() reads the real clock)
    liveness.check(80.0)
    assert len(pings) == 1  # the server sent no HEADERS/DATA: a second PING would strike
    liveness.check(30.0 + 330.0)
    assert len(pings) == 2  # 330 s after the first: allowed
    liveness.received([PingAckReceived(ping_data=pings[1])])
    liveness.received([DataReceived(stream_id=1)])  # the server wrote: strike clock reset
    liveness.last_received = 400.0
    liveness.check(430.0)
    assert len(pings) == 3 and failures == []


def test_unanswered_ping_declares_the_connection_dead() -> None:
    liveness, _pings, failures = _liveness([_FakeStream(1, awaiting=False)])
    liveness.check(30.0)
    liveness.check(49.9)
    assert failures == []
    liveness.check(50.0)
    assert len(failures) == 1 and "PING" in failures[0]


def test_progress_deadline_only_while_the_server_owes_bytes() -> None:
    idle = _FakeStream(1, awaiting=False)
    liveness, _pings, failures = _liveness([idle], keepalive_time=None)
    liveness.check(1000.0)
    assert failures == []  # an idle Join may be held for as long as a round takes
    idle.awaiting_peer = True  # e.g. the node starts sending its reply at 1000 s
    liveness.check(1000.0)
    liveness.check(1059.0)
    assert failures == []  # measured from when the stream began to wait, not from 0
    liveness.check(1060.0)
    assert len(failures) == 1 and "no byte received for 60 s" in failures[0]


@pytest.mark.parametrize(
    "settings",
    [
        {"keepalive_time": 0},
        {"keepalive_timeout": float("nan")},
        {"progress_timeout": -1.0},
        {"peer_min_ping_interval": float("inf")},
    ],
)
def test_liveness_settings_are_validated(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GrpcTuning(**settings)
    with pytest.raises(TypeError):
        GrpcTuning(keepalive_time="30")  # type: ignore[arg-type]
