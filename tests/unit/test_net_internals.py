"""Tests for flwr_sdk.net.grpclib_internals: the version guard and the stock-grpclib fallback.

The guard tests fail loudly when grpclib / h2 are bumped (or a private attribute the tuned
path uses disappears) without re-checking flwr_sdk/net/grpclib_internals.py. The fallback
tests start real endpoints on 127.0.0.1 with the fallback forced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpclib.stream
import numpy as np
import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.client import StreamStreamMethod, UnaryUnaryMethod
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.protocol import Connection
from grpclib.server import Stream
from h2.connection import H2Connection

from flwr_sdk.common._npy import NpyPayload
from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.net import grpclib_internals as internals
from flwr_sdk.net.chunks import EncodedChunks
from flwr_sdk.net.fast_codec import FastProtoCodec, encode_message
from flwr_sdk.net.grpc_tuning import (
    TUNED_MAX_FRAME_SIZE,
    TUNED_WINDOW_SIZE,
    TunedChannel,
    TunedH2Connection,
    TunedServer,
    tuned_server,
)
from flwr_sdk.net.limits import SizeLimitedConnection
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory

ROOT = Path(__file__).resolve().parents[2]
UNARY = "/test.Params/Echo"
BIDI = "/test.Params/EchoStream"
MiB = 1 << 20
LIMIT = 8 * MiB
H2_DEFAULT_FRAME = 2**14
#: grpclib's default stream window (not h2's 65535).
GRPCLIB_DEFAULT_WINDOW = Configuration().http2_stream_window_size


@pytest.fixture(autouse=True)
def _fresh_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the default decision (no env var, nothing forced)."""
    monkeypatch.delenv(internals.ENV_FORCE_STOCK, raising=False)
    monkeypatch.setattr(internals, "_forced_stock", None)
    monkeypatch.setattr(internals, "_warned", False)
    internals.internals_problems.cache_clear()
    yield
    internals.internals_problems.cache_clear()


# --- the guard: fails loudly on a dependency bump -------------------------------------------------


def test_installed_grpclib_and_h2_are_the_tested_versions() -> None:
    assert internals.installed_versions() == internals.TESTED_VERSIONS, (
        "grpclib/h2 differ from the versions flwr_sdk/net/grpclib_internals.py is tested "
        "with: the tuned endpoints fall back to stock grpclib. Re-check every access listed "
        "in that module against the new versions, then update TESTED_VERSIONS."
    )


def test_pyproject_pins_the_tested_versions() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, version in internals.TESTED_VERSIONS.items():
        assert f'"{name}=={version}"' in pyproject, f"pyproject.toml must pin {name}=={version}"


@pytest.mark.parametrize(
    "access", internals.PRIVATE_ACCESSES, ids=lambda a: f"{a.owner}.{a.attribute}"
)
def test_every_named_access_resolves(access: internals.PrivateAccess) -> None:
    samples = internals._sample_objects()
    assert hasattr(samples[access.owner], access.attribute), (
        f"{access.owner}.{access.attribute} (used for: {access.purpose}) is gone: "
        "update flwr_sdk/net/grpclib_internals.py"
    )


def test_guard_passes_with_the_installed_libraries() -> None:
    assert internals.internals_problems() == ()
    assert internals.internals_usable()


def test_module_docstring_names_every_access() -> None:
    doc = internals.__doc__ or ""
    for access in internals.PRIVATE_ACCESSES:
        assert access.attribute in doc, f"{access.attribute} is not named in the module docs"
    for name, version in internals.TESTED_VERSIONS.items():
        assert f"{name} {version}" in doc


#: Private attributes of grpclib / h2 / hyperframe that only grpclib_internals may touch.
_PRIVATE = re.compile(
    r"\._(protocol_factory|h2_connection|transport|connection|acked|acked_size|unacked|eof"
    r"|ack_callback|frame_dispatch_table|receive_frame|receive_data_frame|body_repr|mapping"
    r"|server|codec)\b|__class__\s*="
)


def test_no_private_access_outside_the_internals_module() -> None:
    files = [
        *sorted((ROOT / "flwr_sdk/net").glob("*.py")),
        ROOT / "flwr_sdk/transport/grpc_channel.py",
        *sorted((ROOT / "flwr_sdk/server").glob("*.py")),
    ]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if path.name != "grpclib_internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _PRIVATE.search(line)
    ]
    assert offenders == []


def test_bound_port_reads_the_listening_socket() -> None:
    async def scenario() -> int:
        server = tuned_server([], max_message_length=LIMIT)
        with pytest.raises(RuntimeError, match="not listening"):
            internals.bound_port(server)
        await server.start("127.0.0.1", 0)
        try:
            port = internals.bound_port(server)
            _, writer = await asyncio.open_connection("127.0.0.1", port)  # it listens there
            writer.close()
            return port
        finally:
            server.close()
            await server.wait_closed()

    assert 0 < asyncio.run(scenario()) < 65536


def test_version_mismatch_warns_once_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        internals, "installed_versions", lambda: {"grpclib": "0.5.0", "h2": "4.4.1"}
    )
    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        assert not internals.internals_usable()
        assert not internals.internals_usable()
    assert internals.internals_problems() == ("grpclib 0.5.0 installed, tested with 0.4.9",)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stock grpclib" in warnings[0].getMessage()
    assert "grpclib 0.5.0" in warnings[0].getMessage()


def test_missing_private_attribute_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = internals.PrivateAccess("grpclib.protocol.Buffer", "_renamed_in_0_5", "test")
    monkeypatch.setattr(internals, "PRIVATE_ACCESSES", (*internals.PRIVATE_ACCESSES, gone))
    assert internals.internals_problems() == ("grpclib.protocol.Buffer._renamed_in_0_5 is missing",)
    assert not internals.internals_usable()


def test_changed_send_handoff_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    async def joining_send_message(
        stream: Any, codec: Any, message: Any, message_type: Any, *, end: bool = False
    ) -> None:
        body = codec.encode(message, message_type)
        prefix = struct.pack(">?I", False, len(body))
        await stream.send_data(b"".join([prefix, body]), end_stream=end)

    monkeypatch.setattr(grpclib.stream, "send_message", joining_send_message)
    problems = internals.internals_problems()
    assert len(problems) == 1 and "_probe_send_handoff failed" in problems[0]
    assert not internals.internals_usable()


def test_force_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert internals.internals_usable()
    monkeypatch.setenv(internals.ENV_FORCE_STOCK, "1")
    assert not internals.internals_usable()
    internals.force_stock_grpclib(False)  # the function wins over the environment
    assert internals.internals_usable()
    monkeypatch.setenv(internals.ENV_FORCE_STOCK, "0")
    internals.force_stock_grpclib(True)
    assert not internals.internals_usable()
    internals.force_stock_grpclib(None)
    assert internals.internals_usable()
    with pytest.raises(TypeError):
        internals.force_stock_grpclib(1)  # type: ignore[arg-type]


def test_handoff_codec() -> None:
    chunks = EncodedChunks([b"ab", bytearray(b"c" * 100)])

    class Chunked(FastProtoCodec):
        def encode(self, message: Any, message_type: Any) -> bytes:
            return cast(bytes, chunks)

    tuned = internals.ChunkHandoffCodec(Chunked(), tuned=True)
    body = tuned.encode(None, object)
    assert isinstance(body, internals.GrpclibBody) and len(body) == 102
    framed = b"\x00\x00\x00\x00\x66" + body
    assert isinstance(framed, EncodedChunks)
    assert framed.pieces[-1].obj is chunks.pieces[-1].obj  # not copied
    stock = internals.ChunkHandoffCodec(Chunked(), tuned=False)
    assert stock.encode(None, object) == b"ab" + b"c" * 100
    assert type(stock.encode(None, object)) is bytes
    assert stock.__content_subtype__ == "proto"


# --- real endpoints -------------------------------------------------------------------------------


class ParamsEcho:
    """Echoes ``pb.Parameters`` (or answers with ``reply``); unary and bidi."""

    def __init__(self, reply: pb.Parameters | None = None) -> None:
        self.reply = reply
        self.received: list[int] = []

    async def echo(self, stream: Stream[pb.Parameters, pb.Parameters]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.received.append(len(request.tensors))
        await stream.send_message(self.reply if self.reply is not None else request)

    async def echo_stream(self, stream: Stream[pb.Parameters, pb.Parameters]) -> None:
        async for request in stream:
            self.received.append(len(request.tensors))
            await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            UNARY: Handler(self.echo, Cardinality.UNARY_UNARY, pb.Parameters, pb.Parameters),
            BIDI: Handler(
                self.echo_stream, Cardinality.STREAM_STREAM, pb.Parameters, pb.Parameters
            ),
        }


@asynccontextmanager
async def serving(server: TunedServer) -> AsyncIterator[int]:
    await server.start("127.0.0.1", 0)
    try:
        yield int(cast(asyncio.Server, server._server).sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=60))


def params(total: int, seed: int = 0) -> pb.Parameters:
    rng = np.random.default_rng(seed)
    arrays = [rng.random(total // 16, dtype=np.float32) for _ in range(4)]
    return pb.Parameters(tensors=[NpyPayload(a) for a in arrays], tensor_type="numpy.ndarray")


def tensors(message: pb.Parameters) -> list[bytes]:
    return [bytes(t) for t in message.tensors]


def factory(port: int, limit: int = LIMIT) -> GrpcChannelFactory:
    return GrpcChannelFactory(
        TransportSettings(
            server_address=f"127.0.0.1:{port}",
            max_message_length=limit,
            root_certificates=None,
            insecure=True,
            authentication_keys=None,
        )
    )


def reference_server(echo: ParamsEcho, limit: int = LIMIT) -> TunedServer:
    """Built like flwr_sdk.server.app's listener: tuned_server + chunked fast codec + limit."""
    return tuned_server([echo], codec=FastProtoCodec(chunked=True), max_message_length=limit)


def _h2_of(channel: TunedChannel) -> tuple[Connection, H2Connection]:
    assert channel._protocol is not None
    connection = channel._protocol.connection
    return connection, connection._connection


def test_tuned_path_is_the_default() -> None:
    request = params(3 * MiB)

    async def main() -> None:
        echo = ParamsEcho()
        server = reference_server(echo)
        assert server.tuned
        async with serving(server) as port:
            channel = cast(TunedChannel, factory(port).create())
            assert isinstance(channel, TunedChannel) and channel.tuned
            try:
                method = UnaryUnaryMethod(channel, UNARY, pb.Parameters, pb.Parameters)
                reply = await method(request)
                connection, h2 = _h2_of(channel)
                assert isinstance(connection, SizeLimitedConnection)
                assert connection.zero_copy_receive
                assert isinstance(h2, TunedH2Connection)
                assert h2.local_settings.max_frame_size == TUNED_MAX_FRAME_SIZE
                assert h2.local_settings.initial_window_size == TUNED_WINDOW_SIZE
            finally:
                channel.close()
        assert tensors(reply) == tensors(request)
        assert all(isinstance(t, memoryview) for t in reply.tensors)  # preallocated receive

    run(main)


async def _ping_pong(
    method: StreamStreamMethod[pb.Parameters, pb.Parameters], requests: list[pb.Parameters]
) -> list[pb.Parameters]:
    """One bidi call, reading each echo before sending the next message.

    (grpclib's ``method(requests)`` sends everything first: with grpclib's default 4 MiB
    windows, echoes of MiB-sized messages would then block both sides.)
    """
    replies: list[pb.Parameters] = []
    async with method.open() as stream:
        for request in requests:
            await stream.send_message(request)
            reply = await stream.recv_message()
            assert reply is not None
            replies.append(reply)
        await stream.end()
        assert await stream.recv_message() is None
    return replies


def test_fallback_round_trips_and_enforces_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(internals.ENV_FORCE_STOCK, "1")
    request = params(6 * MiB)
    size = len(encode_message(request))
    assert 5 * MiB < size < LIMIT
    stream_requests = [params(5 * MiB, seed=1), params(64 * 1024, seed=2), params(6 * MiB, 3)]
    too_big = params(LIMIT + MiB, seed=4)

    async def main() -> None:
        echo = ParamsEcho()
        server = reference_server(echo)
        assert not server.tuned
        async with serving(server) as port:
            channel = cast(TunedChannel, factory(port).create())
            assert not channel.tuned
            try:
                unary = UnaryUnaryMethod(channel, UNARY, pb.Parameters, pb.Parameters)
                reply = await unary(request)
                assert tensors(reply) == tensors(request)
                # Stock grpclib underneath: stock connection, h2 defaults.
                connection, h2 = _h2_of(channel)
                assert type(connection) is Connection
                assert type(h2) is H2Connection
                assert h2.local_settings.max_frame_size == H2_DEFAULT_FRAME
                assert h2.local_settings.initial_window_size == GRPCLIB_DEFAULT_WINDOW

                bidi = StreamStreamMethod(channel, BIDI, pb.Parameters, pb.Parameters)
                replies = await _ping_pong(bidi, stream_requests)
                assert [tensors(r) for r in replies] == [tensors(r) for r in stream_requests]

                # Over the limit, on the client: refused before it is sent.
                received = list(echo.received)
                with pytest.raises(MessageTooLargeError) as info:
                    await unary(too_big)
                assert info.value.limit == LIMIT
                assert cast(int, info.value.size) > LIMIT
                assert str(info.value).startswith("cannot send message of")
                with pytest.raises(MessageTooLargeError):
                    await _ping_pong(bidi, [stream_requests[1], too_big])
                assert echo.received == [*received, 4]  # only the small bidi message arrived
                assert tensors(await unary(request)) == tensors(request)  # channel still works
            finally:
                channel.close()

    run(main)


def test_fallback_refuses_oversized_messages_on_receive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(internals.ENV_FORCE_STOCK, "1")
    big = params(3 * MiB)
    small = pb.Parameters(tensors=[b"small"], tensor_type="x")

    async def main() -> None:
        # The client's limit refuses a large reply.
        async with serving(reference_server(ParamsEcho(reply=big))) as port:
            channel = factory(port, limit=MiB).create()
            try:
                unary = UnaryUnaryMethod(channel, UNARY, pb.Parameters, pb.Parameters)
                with pytest.raises(MessageTooLargeError) as info:
                    await unary(small)
                assert info.value.limit == MiB
                assert str(info.value).startswith("received message of")
            finally:
                channel.close()
        # The server's limit refuses a large request: RESOURCE_EXHAUSTED, handler not run.
        echo = ParamsEcho()
        async with serving(reference_server(echo, limit=MiB)) as port:
            channel = factory(port, limit=LIMIT).create()
            try:
                unary = UnaryUnaryMethod(channel, UNARY, pb.Parameters, pb.Parameters)
                with pytest.raises(GRPCError) as error:
                    await unary(big)
                assert error.value.status is Status.RESOURCE_EXHAUSTED
                assert "exceeds grpc_max_message_length" in (error.value.message or "")
                assert tensors(await unary(small)) == [b"small"]
            finally:
                channel.close()
        assert echo.received == [1]

    run(main)


def test_fallback_without_limit_or_codec() -> None:
    """No limit and grpclib's default codec: exactly a stock grpclib endpoint."""
    internals.force_stock_grpclib(True)
    payload = pb.Parameters(tensors=[os.urandom(2 * MiB), b"x"], tensor_type="raw")

    async def main() -> None:
        server = TunedServer([ParamsEcho()])
        async with serving(server) as port, TunedChannel("127.0.0.1", port) as channel:
            assert not channel.tuned
            assert type(channel._codec) is ProtoCodec
            assert channel._config.http2_stream_window_size == GRPCLIB_DEFAULT_WINDOW
            unary = UnaryUnaryMethod(channel, UNARY, pb.Parameters, pb.Parameters)
            reply = await unary(payload)
        assert tensors(reply) == tensors(payload)

    run(main)


# --- statuses, headers, trailers ---------------------------------------------------------------


def test_client_stream_attribute_is_checked_on_grpclib_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """grpclib.client.Stream._stream is assigned in send_request; a rename is noticed."""
    import grpclib.client

    async def renamed(self: Any, *, end: bool = False) -> None:
        self._h2_stream = None

    monkeypatch.setattr(grpclib.client.Stream, "send_request", renamed)
    problems = internals.internals_problems()
    assert problems == ("grpclib.client.Stream._stream is missing",)
    assert not internals.internals_usable()


def test_changed_header_decoding_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_lenient", lambda value, encoding: value)
    problems = internals.internals_problems()
    assert len(problems) == 1 and "lenient header decoding" in problems[0]


class _Call:
    """Stands for a grpclib client call: ``_stream`` holds what was received."""

    def __init__(self, headers: Any = None, trailers: Any = None) -> None:
        self._stream = SimpleNamespace(headers=headers, trailers=trailers)


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (
            _Call([(":status", "200")], [("grpc-status", "13"), ("grpc-message", "a%20b")]),
            (13, "a b"),
        ),
        (_Call([(":status", "200"), ("grpc-status", "16")]), (16, None)),
        (_Call([(":status", "200")], [("grpc-status", "0")]), (0, None)),
        (_Call([(":status", "200")]), None),
        (_Call([(":status", "200")], [("grpc-status", "x")]), None),
        (_Call(), None),
        (SimpleNamespace(), None),
    ],
)
def test_received_status(call: Any, status: Any) -> None:
    assert internals.received_status(call) == status


def test_stock_fallback_channels_use_grpclibs_keepalive() -> None:
    """Untested versions: grpclib's keepalive, at a strike-safe period."""
    from flwr_sdk.net.grpc_tuning import DEFAULT_TUNING

    internals.force_stock_grpclib(True)
    try:

        async def main() -> None:
            channel = TunedChannel("127.0.0.1", 1)
            try:
                config = channel._config
                assert config._keepalive_time == DEFAULT_TUNING.peer_min_ping_interval
                assert config._keepalive_timeout == DEFAULT_TUNING.keepalive_timeout
                assert config._keepalive_permit_without_calls is False
            finally:
                channel.close()

        asyncio.run(main())
    finally:
        internals.force_stock_grpclib(None)


def test_received_status_is_not_read_on_the_stock_fallback() -> None:
    call = _Call([(":status", "200")], [("grpc-status", "13")])
    internals.force_stock_grpclib(True)
    try:
        assert internals.received_status(call) is None
    finally:
        internals.force_stock_grpclib(None)
    assert internals.received_status(call) == (13, None)
