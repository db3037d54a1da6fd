"""Tests for flwr_sdk.net.limits: gRPC message-size limits on grpclib endpoints."""

from __future__ import annotations

import asyncio
import struct
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import cast

import pytest
from grpclib.client import StreamStreamMethod, UnaryStreamMethod, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived, ResponseReceived, StreamEnded, TrailersReceived
from support.raw_grpc import RawBytesCodec

from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.net.grpc_tuning import TunedChannel, tuned_server
from flwr_sdk.net.limits import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    SizeLimitedCodec,
    check_received_length,
    check_send_length,
    validate_max_message_length,
)

UNARY = "/test.Sized/Unary"
SERVER_STREAM = "/test.Sized/ServerStream"
BIDI = "/test.Sized/Bidi"
HUGE = 600_000_000


class Sized:
    """Request: 4-byte big-endian reply size (+ padding); reply: that many bytes."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.errors: list[BaseException] = []

    async def unary(self, stream: Stream[bytes, bytes]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.received.append(len(request))
        (size,) = struct.unpack(">I", request[:4])
        await stream.send_message(b"r" * size)

    async def server_stream(self, stream: Stream[bytes, bytes]) -> None:
        request = await stream.recv_message()
        assert request is not None
        for size in struct.unpack(f">{len(request) // 4}I", request):
            await stream.send_message(b"s" * size)

    async def bidi(self, stream: Stream[bytes, bytes]) -> None:
        try:
            async for message in stream:
                self.received.append(len(message))
                await stream.send_message(b"ok")
        except MessageTooLargeError as exc:
            self.errors.append(exc)
            raise

    def __mapping__(self) -> dict[str, Handler]:
        return {
            UNARY: Handler(self.unary, Cardinality.UNARY_UNARY, bytes, bytes),
            SERVER_STREAM: Handler(self.server_stream, Cardinality.UNARY_STREAM, bytes, bytes),
            BIDI: Handler(self.bidi, Cardinality.STREAM_STREAM, bytes, bytes),
        }


def _request(size: int, padding: int = 0) -> bytes:
    return struct.pack(">I", size) + b"p" * padding


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[int]:
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    try:
        yield int(cast(asyncio.Server, server._server).sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=20))


# --- plain functions ----------------------------------------------------------------------------


def test_messages_name_both_sizes() -> None:
    with pytest.raises(MessageTooLargeError) as info:
        check_received_length(HUGE, DEFAULT_MAX_MESSAGE_LENGTH)
    assert str(info.value) == (
        "received message of 600000000 bytes exceeds grpc_max_message_length=536870912"
    )
    assert (info.value.size, info.value.limit) == (HUGE, DEFAULT_MAX_MESSAGE_LENGTH)
    with pytest.raises(MessageTooLargeError) as info:
        check_send_length(101, 100)
    assert (
        str(info.value) == "cannot send message of 101 bytes: exceeds grpc_max_message_length=100"
    )
    check_received_length(100, 100)
    check_send_length(100, 100)


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-5, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_validate_max_message_length(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="grpc_max_message_length"):
        validate_max_message_length(value)


def test_size_limited_codec() -> None:
    codec = SizeLimitedCodec(RawBytesCodec(), 10)
    assert codec.__content_subtype__ == "proto"
    assert codec.encode(b"x" * 10, bytes) == b"x" * 10
    assert codec.decode(b"abc", bytes) == b"abc"
    with pytest.raises(MessageTooLargeError, match="cannot send message of 11 bytes"):
        codec.encode(b"x" * 11, bytes)


# --- client side --------------------------------------------------------------------------------

LIMIT = 100_000


def test_client_receive_limit_unary_and_channel_survives() -> None:
    async def main() -> None:
        async with (
            serving(tuned_server([Sized()], codec=RawBytesCodec())) as port,
            TunedChannel(
                "127.0.0.1", port, codec=RawBytesCodec(), max_message_length=LIMIT
            ) as channel,
        ):
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            assert len(await method(_request(LIMIT))) == LIMIT  # exactly at the limit
            with pytest.raises(MessageTooLargeError) as info:
                await method(_request(LIMIT + 1))
            assert info.value.size == LIMIT + 1
            assert info.value.limit == LIMIT
            assert str(info.value).startswith(f"received message of {LIMIT + 1} bytes")
            # The stream was reset; the connection still works.
            assert await method(_request(3)) == b"rrr"

    run(main)


def test_client_receive_limit_streaming() -> None:
    async def main() -> None:
        async with (
            serving(tuned_server([Sized()], codec=RawBytesCodec())) as port,
            TunedChannel(
                "127.0.0.1", port, codec=RawBytesCodec(), max_message_length=LIMIT
            ) as channel,
        ):
            method = UnaryStreamMethod[bytes, bytes](channel, SERVER_STREAM, bytes, bytes)
            received: list[int] = []
            with pytest.raises(MessageTooLargeError):
                async with method.open() as stream:
                    await stream.send_message(struct.pack(">3I", 10, 0, LIMIT + 7), end=True)
                    async for message in stream:
                        received.append(len(message))
            assert received == [10, 0]

    run(main)


def test_client_send_limit_refuses_before_sending() -> None:
    sized = Sized()

    async def main() -> None:
        async with (
            serving(tuned_server([sized], codec=RawBytesCodec())) as port,
            TunedChannel(
                "127.0.0.1", port, codec=RawBytesCodec(), max_message_length=LIMIT
            ) as channel,
        ):
            unary = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            with pytest.raises(MessageTooLargeError) as info:
                await unary(_request(1, padding=LIMIT))
            assert str(info.value) == (
                f"cannot send message of {LIMIT + 4} bytes: exceeds grpc_max_message_length={LIMIT}"
            )
            bidi = StreamStreamMethod[bytes, bytes](channel, BIDI, bytes, bytes)
            with pytest.raises(MessageTooLargeError):
                await bidi([b"a", b"b" * (LIMIT + 1)])
            assert await unary(_request(2, padding=LIMIT - 4)) == b"rr"
        # The oversized messages never reached the server.
        assert all(size <= LIMIT for size in sized.received)
        assert LIMIT in sized.received

    run(main)


# --- server side --------------------------------------------------------------------------------


def test_server_receive_limit_gives_resource_exhausted() -> None:
    sized = Sized()

    async def main() -> None:
        server = tuned_server([sized], codec=RawBytesCodec(), max_message_length=LIMIT)
        async with (
            serving(server) as port,
            TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            unary = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            with pytest.raises(GRPCError) as info:
                await unary(_request(1, padding=LIMIT))
            assert info.value.status is Status.RESOURCE_EXHAUSTED
            assert info.value.message == (
                f"received message of {LIMIT + 4} bytes exceeds grpc_max_message_length={LIMIT}"
            )
            bidi = StreamStreamMethod[bytes, bytes](channel, BIDI, bytes, bytes)
            with pytest.raises(GRPCError) as info:
                await bidi([b"a", b"b" * (LIMIT + 1)])
            assert info.value.status is Status.RESOURCE_EXHAUSTED
            assert await unary(_request(1)) == b"r"
        assert sized.received == [1, 4]
        assert len(sized.errors) == 1  # the handler saw MessageTooLargeError itself

    run(main)


def test_server_send_limit_gives_resource_exhausted() -> None:
    async def main() -> None:
        server = tuned_server([Sized()], codec=RawBytesCodec(), max_message_length=LIMIT)
        async with (
            serving(server) as port,
            TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel,
        ):
            unary = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            with pytest.raises(GRPCError) as info:
                await unary(_request(LIMIT + 1))
            assert info.value.status is Status.RESOURCE_EXHAUSTED
            assert info.value.message is not None
            assert info.value.message.startswith(f"cannot send message of {LIMIT + 1} bytes")

    run(main)


# --- hand-built frames: the body is never read ---------------------------------------------------


async def _raw_h2_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request with a gRPC prefix announcing HUGE bytes, then 1 KiB, then waits."""
    conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    conn.send_headers(
                        event.stream_id, [(":status", "200"), ("content-type", "application/grpc")]
                    )
                    conn.send_data(
                        event.stream_id, b"\x00" + struct.pack(">I", HUGE) + b"\0" * 1024
                    )
            writer.write(conn.data_to_send())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def test_huge_prefix_refused_before_reading_body() -> None:
    async def main() -> None:
        server = await asyncio.start_server(_raw_h2_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with TunedChannel(
                "127.0.0.1",
                port,
                codec=RawBytesCodec(),
                max_message_length=DEFAULT_MAX_MESSAGE_LENGTH,
            ) as channel:
                unary = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
                tracemalloc.start()
                try:
                    started = time.monotonic()
                    with pytest.raises(MessageTooLargeError) as info:
                        # The server never sends the body: only an immediate refusal passes.
                        await asyncio.wait_for(unary(b"hi"), timeout=3)
                    elapsed = time.monotonic() - started
                    _current, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
        finally:
            server.close()
            await server.wait_closed()
        assert str(info.value) == (
            "received message of 600000000 bytes exceeds grpc_max_message_length=536870912"
        )
        assert (info.value.size, info.value.limit) == (HUGE, DEFAULT_MAX_MESSAGE_LENGTH)
        assert elapsed < 2
        assert peak < 4 * 2**20, f"peak traced allocation {peak} bytes"

    run(main)


async def _raw_h2_call(port: int, payload: bytes) -> tuple[dict[str, str], int]:
    """Send one gRPC request frame by hand; return (headers + trailers, body bytes received)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", UNARY),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    conn.send_data(stream_id, payload)
    writer.write(conn.data_to_send())
    headers: dict[str, str] = {}
    body = 0
    try:
        while data := await reader.read(65536):
            events = conn.receive_data(data)
            writer.write(conn.data_to_send())
            for event in events:
                if isinstance(event, ResponseReceived | TrailersReceived):
                    headers.update(dict(event.headers))  # type: ignore[arg-type]
                elif hasattr(event, "data"):
                    body += len(event.data)
                elif isinstance(event, StreamEnded):
                    return headers, body
    finally:
        writer.close()
    return headers, body


def test_server_refuses_huge_prefix_from_raw_client() -> None:
    sized = Sized()

    async def main() -> None:
        server = tuned_server([sized], codec=RawBytesCodec(), max_message_length=LIMIT)
        async with serving(server) as port:
            frame = b"\x00" + struct.pack(">I", HUGE) + b"\0" * 100
            headers, body = await _raw_h2_call(port, frame)
        assert headers["grpc-status"] == str(Status.RESOURCE_EXHAUSTED.value)
        assert "600000000" in headers["grpc-message"]
        assert body == 0
        assert sized.received == []

    run(main)


def test_call_on_a_connection_closed_under_it_is_a_retryable_connection_error() -> None:
    """A dying server can reset a connection right after the handshake; grpclib then closes
    it before the first call creates its stream. That must surface as "unavailable"
    (reconnect), not as stock grpclib's AttributeError (seen when a legacy server was
    SIGKILLed while clients reconnected)."""
    from flwr_sdk.errors import ServerUnavailableError
    from flwr_sdk.transport.grpc_errors import map_grpc_error

    async def main() -> None:
        async with (
            serving(tuned_server([Sized()], codec=RawBytesCodec())) as port,
            TunedChannel(
                "127.0.0.1", port, codec=RawBytesCodec(), max_message_length=LIMIT
            ) as channel,
        ):
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            assert await method(_request(2)) == b"rr"
            protocol = channel._protocol
            assert protocol is not None
            # What grpclib does on connection_lost, before the channel notices.
            protocol.processor.connection.close()
            with pytest.raises(ConnectionResetError) as info:
                await method(_request(2))
            error = map_grpc_error(info.value, host="127.0.0.1", what="Join")
            assert isinstance(error, ServerUnavailableError)

    run(main)
