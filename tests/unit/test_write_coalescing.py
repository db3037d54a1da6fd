"""Tests for flwr_sdk.net.write_coalescing over real loopback sockets.

The proxy wraps a real asyncio socket transport; a thin recorder between the two notes
which objects reach the real transport (and in what order), the peer reads the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream
from support.raw_grpc import RawBytesCodec

from flwr_sdk.net.grpc_tuning import GrpcTuning, TunedChannel, TunedH2Protocol, tuned_server
from flwr_sdk.net.grpclib_internals import bound_port
from flwr_sdk.net.write_coalescing import COALESCE_MAX, CoalescingTransport

UNARY = "/test.Echo/Unary"


class Echo:
    async def unary(self, stream: Stream[bytes, bytes]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {UNARY: Handler(self.unary, Cardinality.UNARY_UNARY, bytes, bytes)}


class Recorder(asyncio.Transport):
    """Forwards to the real transport; remembers every object written to it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.transport = transport
        self.written: list[Any] = []

    def write(self, data: Any) -> None:
        self.written.append(data)
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()


Scenario = Callable[[CoalescingTransport, Recorder, asyncio.StreamReader], Awaitable[None]]


def run_over_socket(scenario: Scenario) -> None:
    """Run ``scenario(proxy, recorder, peer_reader)`` on a real loopback TCP connection."""

    async def main() -> None:
        accepted: asyncio.Future[asyncio.StreamReader] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(reader)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader = await accepted
        recorder = Recorder(writer.transport)  # type: ignore[arg-type]
        try:
            await scenario(CoalescingTransport(recorder), recorder, reader)
        finally:
            writer.transport.abort()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), timeout=10))


def test_small_writes_of_one_iteration_reach_the_socket_once_in_order() -> None:
    async def scenario(proxy: CoalescingTransport, rec: Recorder, peer: Any) -> None:
        proxy.write(b"ab")
        proxy.write(b"")
        proxy.writelines([b"c", b"de"])
        assert rec.written == [] and proxy.get_write_buffer_size() == 5
        await asyncio.sleep(0)  # the flush was scheduled before this task resumes
        assert rec.written == [b"abcde"] and proxy.writes == 1
        proxy.write(b"f")
        await asyncio.sleep(0)
        assert rec.written == [b"abcde", b"f"]
        assert await peer.readexactly(6) == b"abcdef"

    run_over_socket(scenario)


def test_large_and_mutable_writes_go_through_as_the_same_object_after_pending_bytes() -> None:
    big_view = memoryview(bytearray(b"v" * (1 << 20)))
    big_bytes = b"B" * (COALESCE_MAX + 1)
    small_view = memoryview(b"mv")
    mutable = bytearray(b"ba")

    async def scenario(proxy: CoalescingTransport, rec: Recorder, peer: Any) -> None:
        proxy.write(b"h1")
        proxy.write(b"h2")
        proxy.write(big_view)
        proxy.write(b"h3")
        proxy.write(big_bytes)
        proxy.write(small_view)
        proxy.write(mutable)
        mutable[:] = b"XX"  # a kept bytearray would now be wrong on the wire
        proxy.write(b"t")
        assert rec.written[0] == b"h1h2"
        assert rec.written[1] is big_view
        assert rec.written[2] == b"h3"
        assert rec.written[3] is big_bytes
        assert rec.written[4] is small_view
        assert rec.written[5] is mutable
        assert len(rec.written) == 6  # b"t" is kept for the end of the iteration
        await asyncio.sleep(0)
        expected = b"h1h2" + bytes(big_view) + b"h3" + big_bytes + b"mv" + b"ba" + b"t"
        assert await peer.readexactly(len(expected)) == expected  # "ba": as at write()

    run_over_socket(scenario)


def test_close_flushes_then_closes_and_later_writes_are_not_kept() -> None:
    async def scenario(proxy: CoalescingTransport, rec: Recorder, peer: Any) -> None:
        proxy.write(b"last words")
        proxy.close()
        assert rec.written == [b"last words"] and proxy.is_closing()
        proxy.write(b"late")  # handed to the real transport (it ignores it once closed)
        assert rec.written == [b"last words", b"late"]
        assert proxy.get_write_buffer_size() == rec.get_write_buffer_size()
        assert await peer.read() == b"last words"  # then EOF

    run_over_socket(scenario)


def test_abort_and_discard_drop_pending_bytes() -> None:
    async def scenario(proxy: CoalescingTransport, rec: Recorder, peer: Any) -> None:
        proxy.write(b"dropped")
        proxy.discard()
        await asyncio.sleep(0)
        assert rec.written == []
        proxy.write(b"also dropped")
        proxy.abort()
        await asyncio.sleep(0)
        assert rec.written == [] and proxy.is_closing()
        assert await peer.read() == b""  # EOF without a byte

    run_over_socket(scenario)


def test_a_tuned_client_sends_a_unary_request_in_one_write() -> None:
    async def main() -> None:
        server = tuned_server([Echo()], codec=RawBytesCodec())
        await server.start("127.0.0.1", 0)
        port = bound_port(server)
        async with TunedChannel("127.0.0.1", port, codec=RawBytesCodec()) as channel:
            method = UnaryUnaryMethod[bytes, bytes](channel, UNARY, bytes, bytes)
            assert await method(b"warm-up") == b"warm-up"
            protocol = channel._protocol
            assert isinstance(protocol, TunedH2Protocol) and protocol.coalescer is not None
            before = protocol.coalescer.writes
            for size in (10, 100, 1000):
                assert await method(b"q" * size) == b"q" * size
            # HEADERS and DATA of each request: one write (the replies need no acks).
            assert protocol.coalescer.writes - before == 3

            plain = GrpcTuning(coalesce_writes=False)
            async with TunedChannel("127.0.0.1", port, codec=RawBytesCodec(), tuning=plain) as ch:
                method = UnaryUnaryMethod[bytes, bytes](ch, UNARY, bytes, bytes)
                assert await method(b"p") == b"p"
                assert isinstance(ch._protocol, TunedH2Protocol)
                assert ch._protocol.coalescer is None
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def test_coalesce_writes_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="coalesce_writes"):
        GrpcTuning(coalesce_writes=1)  # type: ignore[arg-type]
