"""The round path's copy-free pieces: chunked sends, preallocated receives, size limits.

Tuned grpclib endpoints with the fast codec (client and server) on 127.0.0.1:

* a large message is sent as ``EncodedChunks`` (never joined) and received into one
  preallocated buffer that the decoded tensors are views of;
* the message-size limit still refuses an oversized frame from its 5-byte prefix, before
  any buffer for the body is allocated, on the client and on the server;
* the arrays user code gets from a large received message are writable views of that
  buffer (in-place training works and copies nothing), from a small one writable copies;
  a second load, and the Arrays kept in ``Context.state``, never alias an earlier one.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import numpy as np
import pytest
from flwr_sdk_proto.v1_12 import fastcodec
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from flwr_sdk.clientapp.dispatch import handle_message
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common._npy import NpyPayload, load_npy
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_records import FIT_KIND
from flwr_sdk.common.legacy_types import Config, Metrics, Parameters
from flwr_sdk.common.message import Message
from flwr_sdk.common.ndarrays import NDArrays, ndarrays_to_parameters, parameters_to_ndarrays
from flwr_sdk.common.records import Array, ParametersRecord, RecordSet
from flwr_sdk.errors import MessageTooLargeError, ProtocolError
from flwr_sdk.net import framing, limits
from flwr_sdk.net.chunks import ChunkCursor, EncodedChunks
from flwr_sdk.net.fast_codec import (
    FastProtoCodec,
    decode_message,
    encode_message,
    encode_message_chunks,
)
from flwr_sdk.net.grpc_tuning import TunedChannel, tuned_server
from flwr_sdk.wire import bidi
from flwr_sdk.wire.records import recordset_from_wire

PATH = "/test.Params/Echo"
MiB = 1 << 20


class ParamsEcho:
    """Echoes a ``pb.Parameters`` (or answers with ``reply`` when set)."""

    def __init__(self, reply: pb.Parameters | None = None) -> None:
        self.reply = reply
        self.received: list[pb.Parameters] = []

    async def echo(self, stream: Stream[pb.Parameters, pb.Parameters]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.received.append(request)
        await stream.send_message(self.reply if self.reply is not None else request)

    def __mapping__(self) -> dict[str, Handler]:
        return {PATH: Handler(self.echo, Cardinality.UNARY_UNARY, pb.Parameters, pb.Parameters)}


@asynccontextmanager
async def serving(server: Any) -> AsyncIterator[int]:
    await server.start("127.0.0.1", 0)
    try:
        yield int(server._server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=60))


def arrays(total: int, count: int = 4) -> list[np.ndarray]:
    per = total // count // 4
    return [np.arange(per, dtype=np.float32) + i for i in range(count)]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class AllocationSpy:
    """Records the sizes of the receive buffers the tuned streams allocate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = limits._np.empty

        def empty(size: int, dtype: Any = None) -> Any:
            self.sizes.append(int(size))
            return real(size, dtype=dtype)

        monkeypatch.setattr(limits, "_np", _NumpyProxy(empty))


class _NumpyProxy:
    def __init__(self, empty: Callable[..., Any]) -> None:
        self.empty = empty
        self.uint8 = np.uint8


# ------------------------------------------------------------------ NpyPayload


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        np.arange(20, dtype=np.float64)[::2],  # not contiguous: copied once
        np.zeros((0, 3), dtype=np.float32),
        np.full((), 3.5, dtype=np.float32),
    ],
)
def test_npy_payload_bytes_equal_numpy_save(array: np.ndarray) -> None:
    payload = NpyPayload(array)
    expected = npy_bytes(array)
    assert bytes(payload) == expected
    assert len(payload) == len(expected)
    assert payload == expected and expected == payload
    assert b"".join(payload.byte_segments()) == expected
    assert load_npy(payload) is array


def test_npy_payload_shares_memory_with_contiguous_arrays() -> None:
    array = np.arange(1000, dtype=np.float32)
    payload = NpyPayload(array)
    data = payload.byte_segments()[1]
    assert isinstance(data, memoryview)
    assert np.shares_memory(np.frombuffer(data, dtype=np.uint8), array)


def test_npy_payload_refuses_object_arrays() -> None:
    with pytest.raises(TypeError, match="object dtype"):
        NpyPayload(np.array([{}, None], dtype=object))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        NpyPayload([1, 2])  # type: ignore[arg-type]


def test_zero_copy_parameters_flow_through_records_and_wire() -> None:
    weights = arrays(400_000)
    parameters = ndarrays_to_parameters(weights, zero_copy=True)
    assert all(isinstance(t, NpyPayload) for t in parameters.tensors)
    # Internally the payload gives back its array; user code gets a copy (the array
    # belongs to whoever made the payload, who may still change it).
    assert load_npy(parameters.tensors[0]) is weights[0]
    handed = parameters_to_ndarrays(parameters)[0]
    assert np.array_equal(handed, weights[0]) and not np.shares_memory(handed, weights[0])
    record_array = Array(dtype="", shape=[], stype="numpy.ndarray", data=parameters.tensors[0])
    assert record_array == Array(
        dtype="", shape=[], stype="numpy.ndarray", data=npy_bytes(weights[0])
    )
    assert record_array.data is parameters.tensors[0]  # nothing copied into the record
    wire = bidi.parameters_to_wire(parameters)
    plain = pb.Parameters(tensors=[npy_bytes(w) for w in weights], tensor_type="numpy.ndarray")
    assert bytes(fastcodec.encode(wire)) == bytes(plain)
    assert bytes(encode_message_chunks(wire)) == bytes(plain)


# ------------------------------------------------------------------ EncodedChunks


def test_encoded_chunks_prefix_and_cursor() -> None:
    chunks = EncodedChunks([b"abc", memoryview(b"defgh"), b"", bytearray(b"ij")])
    assert len(chunks) == 10 and bytes(chunks) == b"abcdefghij"
    prefixed = b"\x00" + b"\x00\x00\x00\x0a" + chunks
    assert isinstance(prefixed, EncodedChunks)
    assert bytes(prefixed) == b"\x00\x00\x00\x00\x0aabcdefghij"
    cursor = ChunkCursor(chunks.pieces)
    taken = [bytes(cursor.take(n)) for n in (2, 4, 1, 10, 3)]
    assert taken == [b"ab", b"cdef", b"g", b"hij", b""]


def test_fast_codec_chunked_encoding_references_large_values() -> None:
    weights = arrays(2 * MiB)
    message = pb.Parameters(tensors=[NpyPayload(w) for w in weights], tensor_type="x")
    codec = FastProtoCodec(chunked=True)
    encoded = codec.encode(message, pb.Parameters)
    assert isinstance(encoded, EncodedChunks)
    assert bytes(encoded) == bytes(encode_message(message))
    views = [p for p in encoded.pieces if p.nbytes >= 64 * 1024]
    assert len(views) == len(weights)
    assert all(
        np.shares_memory(np.frombuffer(v, np.uint8), w) for v, w in zip(views, weights, strict=True)
    )
    # Small messages stay one contiguous buffer.
    small = pb.Parameters(tensors=[b"x" * 10], tensor_type="x")
    assert not isinstance(codec.encode(small, pb.Parameters), EncodedChunks)


def test_malformed_bodies_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_message(pb.Parameters, b"\x0a\xff\xff")
    with pytest.raises(ProtocolError):
        FastProtoCodec().decode(b"\x0a\x05ab", pb.Parameters)


# ------------------------------------------------------------------ over the wire


def test_large_message_round_trip_is_chunked_and_received_into_one_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = AllocationSpy(monkeypatch)
    sent: list[int] = []
    real_send = framing.send_chunks

    async def counting_send(
        stream: Any, chunks: EncodedChunks, end_stream: bool = False, **options: Any
    ) -> None:
        sent.append(len(chunks))
        await real_send(stream, chunks, end_stream, **options)

    monkeypatch.setattr(limits, "send_chunks", counting_send)
    weights = arrays(8 * MiB)
    request = pb.Parameters(tensors=[NpyPayload(w) for w in weights], tensor_type="numpy")
    size = len(encode_message(request))

    async def scenario() -> None:
        echo = ParamsEcho()
        server = tuned_server(
            [echo], codec=FastProtoCodec(chunked=True), max_message_length=16 * MiB
        )
        async with serving(server) as port:
            channel = TunedChannel(
                "127.0.0.1", port, codec=FastProtoCodec(chunked=True), max_message_length=16 * MiB
            )
            try:
                method = UnaryUnaryMethod(channel, PATH, pb.Parameters, pb.Parameters)
                reply = await method(request)
            finally:
                channel.close()
        got = [load_npy(t) for t in reply.tensors]
        assert all(np.array_equal(a, b) for a, b in zip(got, weights, strict=True))
        # The tensors are writable views of one buffer received for this message alone.
        assert all(isinstance(t, memoryview) and not t.readonly for t in reply.tensors)
        assert len({id(t.obj) for t in reply.tensors}) == 1
        assert len(echo.received) == 1

    run(scenario)
    prefix = limits.GRPC_PREFIX_LENGTH
    assert sent == [size + prefix, size + prefix]  # request and echoed reply, both chunked
    assert spy.sizes == [size, size]  # one body buffer on each side, nothing else


def test_server_refuses_oversized_frame_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = AllocationSpy(monkeypatch)
    request = pb.Parameters(tensors=[NpyPayload(w) for w in arrays(2 * MiB)], tensor_type="x")

    async def scenario() -> None:
        echo = ParamsEcho()
        server = tuned_server([echo], codec=FastProtoCodec(chunked=True), max_message_length=MiB)
        async with serving(server) as port:
            channel = TunedChannel("127.0.0.1", port, codec=FastProtoCodec(chunked=True))
            try:
                method = UnaryUnaryMethod(channel, PATH, pb.Parameters, pb.Parameters)
                with pytest.raises(GRPCError) as info:
                    await method(request)
            finally:
                channel.close()
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert echo.received == []

    run(scenario)
    assert spy.sizes == []  # the server never allocated a buffer for the body


def test_client_refuses_oversized_reply_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = AllocationSpy(monkeypatch)
    reads: list[int] = []
    real_read = framing.read_into

    async def counting_read(buffer: Any, target: memoryview) -> None:
        reads.append(target.nbytes)
        await real_read(buffer, target)

    monkeypatch.setattr(limits, "read_into", counting_read)
    big = pb.Parameters(tensors=[NpyPayload(w) for w in arrays(4 * MiB)], tensor_type="x")

    async def scenario() -> None:
        server = tuned_server([ParamsEcho(reply=big)], codec=FastProtoCodec(chunked=True))
        async with serving(server) as port:
            channel = TunedChannel(
                "127.0.0.1", port, codec=FastProtoCodec(chunked=True), max_message_length=MiB
            )
            try:
                method = UnaryUnaryMethod(channel, PATH, pb.Parameters, pb.Parameters)
                with pytest.raises(MessageTooLargeError) as info:
                    await method(pb.Parameters(tensors=[b"small"], tensor_type="x"))
            finally:
                channel.close()
        assert info.value.limit == MiB
        assert cast(int, info.value.size) > MiB

    run(scenario)
    assert reads == []
    assert spy.sizes == []  # only the server's (unlimited) side could have allocated


def test_client_refuses_to_send_oversized_chunked_message() -> None:
    request = pb.Parameters(tensors=[NpyPayload(w) for w in arrays(2 * MiB)], tensor_type="x")

    async def scenario() -> None:
        echo = ParamsEcho()
        server = tuned_server([echo], codec=FastProtoCodec(chunked=True))
        async with serving(server) as port:
            channel = TunedChannel(
                "127.0.0.1", port, codec=FastProtoCodec(chunked=True), max_message_length=MiB
            )
            try:
                method = UnaryUnaryMethod(channel, PATH, pb.Parameters, pb.Parameters)
                with pytest.raises(MessageTooLargeError):
                    await method(request)
            finally:
                channel.close()
        assert echo.received == []

    run(scenario)


# ------------------------------------------------ writable arrays for user code (issue 13)

ECHO_PATH = "/test.Echo/Echo"


class MessageEcho:
    """Echoes any message of one class back unchanged."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls

    async def echo(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {ECHO_PATH: Handler(self.echo, Cardinality.UNARY_UNARY, self.cls, self.cls)}


def echoed(request: Any) -> Any:
    """``request`` after a round trip over tuned grpclib endpoints with the fast codec."""
    cls = type(request)
    replies: list[Any] = []

    async def scenario() -> None:
        server = tuned_server(
            [MessageEcho(cls)], codec=FastProtoCodec(chunked=True), max_message_length=64 * MiB
        )
        async with serving(server) as port:
            channel = TunedChannel(
                "127.0.0.1", port, codec=FastProtoCodec(chunked=True), max_message_length=64 * MiB
            )
            try:
                replies.append(await UnaryUnaryMethod(channel, ECHO_PATH, cls, cls)(request))
            finally:
                channel.close()

    run(scenario)
    return replies[0]


def fit_server_message(weights: list[np.ndarray]) -> pb.ServerMessage:
    return pb.ServerMessage(
        fit_ins=pb.ServerMessageFitIns(
            parameters=pb.Parameters(
                tensors=[NpyPayload(w) for w in weights], tensor_type="numpy.ndarray"
            ),
            config={},
        )
    )


class InPlaceTrainer(NumPyClient):
    """Trains in place on the received arrays, the way Flower's examples do."""

    def __init__(self) -> None:
        self.weights: list[np.ndarray] = []

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        self.weights = parameters
        for w in self.weights:
            w -= 0.5
            w *= 2
        return self.weights, 1, {}


def run_fit(server_message: pb.ServerMessage) -> tuple[InPlaceTrainer, list[np.ndarray]]:
    """Handle a received grpc-bidi FitIns with an InPlaceTrainer; return it and the reply."""
    instruction = bidi.server_message_to_instruction(server_message)
    assert isinstance(instruction, Message)
    trainer = InPlaceTrainer()
    context = Context(node_id=-1, node_config={}, state=RecordSet(), run_config={})
    reply = handle_message(instruction, context, lambda _: trainer)
    fit_res = FIT_KIND.recordset_to_res(reply.content, keep_input=True)
    return trainer, [load_npy(t) for t in fit_res.parameters.tensors]


def test_in_place_training_on_a_large_received_message_copies_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = AllocationSpy(monkeypatch)
    weights = arrays(8 * MiB)
    received = echoed(fit_server_message(weights))
    tensors = received.fit_ins.parameters.tensors
    buffer = tensors[0].obj
    assert all(isinstance(t, memoryview) and t.obj is buffer for t in tensors)
    whole = np.frombuffer(buffer, dtype=np.uint8)

    trainer, sent_back = run_fit(received)

    # fit saw writable arrays that ARE the receive buffer: nothing was copied for it ...
    assert len(trainer.weights) == len(weights)
    for seen, want in zip(trainer.weights, weights, strict=True):
        assert seen.flags.writeable and not seen.flags.owndata
        assert np.shares_memory(seen, whole)
        np.testing.assert_array_equal(seen, (want - 0.5) * 2)
    # ... and the reply is written straight from those arrays (NpyPayload, no copy).
    for back, seen in zip(sent_back, trainer.weights, strict=True):
        assert back is seen
    assert len(spy.sizes) == 2  # one body buffer per side of the echo, nothing else


def test_in_place_training_on_a_small_received_message_works_on_copies() -> None:
    weights = [np.arange(16, dtype=np.float32), np.ones((2, 3), dtype=np.float64)]
    received = echoed(fit_server_message(weights))
    tensors = received.fit_ins.parameters.tensors
    # grpclib hands small messages over as bytes: the tensors are read-only views.
    assert all(isinstance(t, memoryview) and t.readonly for t in tensors)
    before = [bytes(t) for t in tensors]

    trainer, sent_back = run_fit(received)

    for seen, want in zip(trainer.weights, weights, strict=True):
        assert seen.flags.writeable and seen.flags.owndata
        np.testing.assert_array_equal(seen, (want - 0.5) * 2)
    assert [bytes(t) for t in tensors] == before  # the received bytes are untouched
    assert all(back is seen for back, seen in zip(sent_back, trainer.weights, strict=True))


def test_arrays_of_a_large_received_recordset_are_views_then_copies() -> None:
    weights = arrays(4 * MiB, count=2)
    request = pb.RecordSet(
        parameters={
            "p": pb.ParametersRecord(
                data_keys=["a", "b"],
                data_values=[
                    pb.Array(
                        dtype="float32",
                        shape=list(w.shape),
                        stype="numpy.ndarray",
                        data=NpyPayload(w),
                    )
                    for w in weights
                ],
            )
        }
    )
    content = recordset_from_wire(echoed(request))
    record = content.parameters_records["p"]
    buffer = record["a"].data.obj  # type: ignore[union-attr]
    whole = np.frombuffer(buffer, dtype=np.uint8)
    first = record["a"].numpy()
    assert first.flags.writeable and np.shares_memory(first, whole)  # no copy
    first += 1  # in place, as user code does
    second = record["a"].numpy()  # a fresh copy: never aliases the first
    assert not np.shares_memory(second, whole)
    np.testing.assert_array_equal(second, weights[0] + 1)
    second -= 100
    np.testing.assert_array_equal(first, weights[0] + 1)


def test_keeping_a_received_array_in_state_copies_only_if_it_was_handed_out() -> None:
    weights = arrays(4 * MiB, count=2)
    received = echoed(fit_server_message(weights))
    tensors = received.fit_ins.parameters.tensors
    whole = np.frombuffer(tensors[0].obj, dtype=np.uint8)
    kept, trained = (Array(dtype="", shape=[], stype="numpy.ndarray", data=t) for t in tensors)
    handed_out = trained.numpy()  # the view of the receive buffer, before entering state
    context = Context(node_id=1, node_config={}, state=RecordSet(), run_config={})
    context.state.parameters_records["global"] = ParametersRecord({"kept": kept})
    context.state.parameters_records["global"]["trained"] = trained

    # Not handed out before: kept without a copy, read-only from now on.
    assert isinstance(kept.data, memoryview) and kept.data.readonly
    assert np.shares_memory(np.frombuffer(kept.data, np.uint8), whole)
    # Handed out before: copied once, so the earlier array cannot change the state ...
    assert not np.shares_memory(np.frombuffer(trained.data, np.uint8), whole)
    handed_out -= 1
    np.testing.assert_array_equal(trained.numpy(), weights[1])
    # ... and arrays read from the state are copies, also for the legacy path.
    from_state = kept.numpy()
    from_state += 1
    np.testing.assert_array_equal(kept.numpy(), weights[0])
    legacy = parameters_to_ndarrays(Parameters(tensors=[tensors[0]], tensor_type="numpy.ndarray"))
    assert not np.shares_memory(legacy[0], whole)
