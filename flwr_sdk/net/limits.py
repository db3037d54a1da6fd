"""gRPC message-size limits for grpclib (which has none of its own).

grpclib reads each gRPC message as a 5-byte prefix (compressed flag + big-endian length)
followed by that many bytes, and trusts the announced length. This module adds the limit
at the two places where it can be enforced cheaply:

* **receive**: :class:`SizeLimitedConnection` is a ``grpclib.protocol.Connection`` whose
  HTTP/2 streams (:class:`SizeLimitedStream`) check the prefix as soon as it has been read
  and raise :class:`~flwr_sdk.errors.MessageTooLargeError` *before* the body is read or
  buffered. The connection is installed by the tuned protocol in
  :mod:`flwr_sdk.net.grpc_tuning`, so it covers clients and servers, unary and
  streaming calls alike.
* **send**: :class:`SizeLimitedCodec` wraps any grpclib codec and refuses to hand an
  encoded message larger than the limit to grpclib, i.e. before the frame is built and
  written.

On a server, :func:`resource_exhausted_on_too_large` (applied to the servables by
:func:`resource_exhausted_servables`) turns a ``MessageTooLargeError`` that escapes a
handler into the gRPC status ``RESOURCE_EXHAUSTED`` (as grpc-core does).

When the tuned path is unavailable (:func:`flwr_sdk.net.grpclib_internals.internals_usable`
is false), endpoints run stock grpclib streams: then :class:`SizeLimitedCodec` also checks
each received body before decoding it (the same ``MessageTooLargeError``, but only after
grpclib has read the body).

Relies on grpclib 0.4.9 behaviour: ``grpclib.stream.recv_message`` calls
``Stream.recv_data(5)`` for the prefix and then ``Stream.recv_data(length)`` for the body,
and both client and server create their per-request ``grpclib.protocol.Stream`` through
``Connection.create_stream``. The private attributes a stream is built from are read by
:func:`flwr_sdk.net.grpclib_internals.connection_parts`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections.abc import Callable, Collection, Coroutine
from typing import Any, cast

import numpy as _np
from grpclib.config import Configuration
from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.protocol import Connection, Stream
from grpclib.utils import Wrapper
from h2.connection import H2Connection

from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.net import grpclib_internals
from flwr_sdk.net.chunks import EncodedChunks
from flwr_sdk.net.framing import read_into, send_chunks, transfer_meter

__all__ = [
    "DEFAULT_MAX_MESSAGE_LENGTH",
    "GRPC_PREFIX_LENGTH",
    "PREALLOCATED_BODY_MIN",
    "SizeLimitedCodec",
    "SizeLimitedConnection",
    "SizeLimitedStream",
    "check_received_length",
    "check_send_length",
    "resource_exhausted_on_too_large",
    "resource_exhausted_servables",
    "validate_max_message_length",
]

log = logging.getLogger("flwr_sdk")

#: Length of the gRPC message prefix: 1 flag byte + 4 length bytes.
GRPC_PREFIX_LENGTH = 5
#: The largest length a gRPC prefix can announce.
_MAX_PREFIX_LENGTH = 2**32 - 1
#: Smallest body that :class:`SizeLimitedStream` reads into a preallocated buffer.
PREALLOCATED_BODY_MIN = 64 * 1024
_LIMIT_NAME = "grpc_max_message_length"
_PREFIX = struct.Struct(">?I")


def validate_max_message_length(value: object, *, name: str = _LIMIT_NAME) -> int:
    """Check a user-supplied message-size limit (an ``int >= 1``) and return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of bytes, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 byte, got {value}")
    return value


def check_received_length(size: int, limit: int) -> None:
    """Raise :class:`MessageTooLargeError` if a received message of ``size`` bytes is too big."""
    if size > limit:
        raise MessageTooLargeError(
            f"received message of {size} bytes exceeds {_LIMIT_NAME}={limit}",
            size=size,
            limit=limit,
        )


def check_send_length(size: int, limit: int) -> None:
    """Raise :class:`MessageTooLargeError` if a message of ``size`` bytes may not be sent."""
    if size > limit:
        raise MessageTooLargeError(
            f"cannot send message of {size} bytes: exceeds {_LIMIT_NAME}={limit}",
            size=size,
            limit=limit,
        )


class SizeLimitedCodec(CodecBase):
    """A codec wrapper that refuses to encode messages larger than ``max_message_length``.

    Decoding checks the size too, then delegates: on tuned endpoints the receive limit was
    already enforced on the prefix (by :class:`SizeLimitedStream`, before the body was
    read); on stock grpclib endpoints this is where it is enforced. The content subtype is
    the wrapped codec's.
    """

    def __init__(self, codec: CodecBase, max_message_length: int) -> None:
        self.codec = codec
        self.max_message_length = validate_max_message_length(max_message_length)

    @property
    def __content_subtype__(self) -> str:
        return self.codec.__content_subtype__

    def encode(self, message: Any, message_type: Any) -> bytes:
        """Encode with the wrapped codec, then check the size."""
        data = self.codec.encode(message, message_type)
        check_send_length(len(data), self.max_message_length)
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Check the size, then decode with the wrapped codec."""
        check_received_length(len(data), self.max_message_length)
        return self.codec.decode(data, message_type)


class SizeLimitedStream(Stream):
    """A ``grpclib.protocol.Stream`` that checks each gRPC prefix against a limit.

    gRPC framing alternates prefix (5 bytes) and body; grpclib reads them with two
    ``recv_data`` calls. This stream remembers which one comes next, decodes the length
    from every prefix it returns and raises :class:`MessageTooLargeError` when the length
    exceeds the limit, so the body is never read, buffered or acknowledged (the caller's
    error handling then resets the stream). ``max_message_length=None`` checks nothing.

    With ``zero_copy_receive``, a body of at least :data:`PREALLOCATED_BODY_MIN` bytes is
    read into one buffer allocated (uninitialised) from the announced length *after* the
    limit check, and returned as a writable ``memoryview`` of it instead of grpclib's
    ``b"".join`` of the DATA chunks (the buffer belongs to this one message, so arrays
    decoded from it reach user code writable without a copy). The codec must accept
    memoryviews (the fast codec's decoded tensors are then views of that buffer). Sends of
    :class:`~flwr_sdk.net.chunks.EncodedChunks` are written frame by frame
    without joining them (any stream: see :meth:`send_data`). Both paths report transfer
    progress when a client node asks for it (:func:`~flwr_sdk.net.framing.transfer_meter`).

    For the progress deadline of :mod:`flwr_sdk.net.grpc_tuning` the stream tells
    whether it is :attr:`awaiting_peer`: a body send in progress, a gRPC message received
    in part, or its own side ended while the peer's answer has not ended yet.
    """

    def __init__(
        self,
        connection: Connection,
        h2_connection: H2Connection,
        transport: asyncio.Transport,
        *,
        max_message_length: int | None,
        zero_copy_receive: bool = False,
        stream_id: int | None = None,
        wrapper: Wrapper | None = None,
    ) -> None:
        super().__init__(connection, h2_connection, transport, stream_id=stream_id, wrapper=wrapper)
        self.max_message_length = max_message_length
        self.zero_copy_receive = zero_copy_receive
        self._expect_prefix = True
        self._sending = 0
        self._receiving_body = False
        self._local_ended = False
        self._remote_ended = False

    @property
    def awaiting_peer(self) -> bool:
        """Whether the peer owes this stream bytes now (see the class docs).

        ``False`` for a stream both sides keep open between messages (a bidi ``Join``
        waiting for the server's next instruction): only keepalive covers those.
        """
        if self._remote_ended:
            return False
        return self._sending > 0 or self._receiving_body or self._local_ended

    def __ended__(self) -> None:
        """The peer ended its side (END_STREAM received)."""
        self._remote_ended = True
        super().__ended__()

    async def end(self) -> None:
        """End this side of the stream (END_STREAM without data)."""
        await super().end()
        self._local_ended = True

    async def recv_data(self, size: int) -> bytes:
        """Read ``size`` bytes; if they are a gRPC prefix, enforce the limit on its length."""
        if not self._expect_prefix:
            self._expect_prefix = True
            self._receiving_body = True
            try:
                return await self._recv_body(size)
            finally:
                self._receiving_body = False
        data = await super().recv_data(size)
        if size == GRPC_PREFIX_LENGTH and len(data) == GRPC_PREFIX_LENGTH:
            _compressed, length = _PREFIX.unpack(data)
            if self.max_message_length is not None:
                check_received_length(length, self.max_message_length)
            # An empty body is read by grpclib as recv_data(0), which returns at once.
            self._expect_prefix = False
        return data

    async def _recv_body(self, size: int) -> bytes:
        """Read a message body of ``size`` bytes (into one buffer when large enough)."""
        if self.zero_copy_receive and size >= PREALLOCATED_BODY_MIN:
            target = _np.empty(size, dtype=_np.uint8).data
            meter = transfer_meter("receive", size)
            if meter is None:
                await read_into(self.buffer, target)
            else:
                await read_into(self.buffer, target, meter)
            # grpclib's signature says bytes; the codec takes any bytes-like buffer.
            return cast(bytes, target)
        return await super().recv_data(size)

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """Send ``data``; :class:`EncodedChunks` go out piece by piece (no joined copy)."""
        self._sending += 1
        try:
            await self._send_data(data, end_stream)
        finally:
            self._sending -= 1
        if end_stream:
            self._local_ended = True

    async def _send_data(self, data: bytes, end_stream: bool) -> None:
        chunks: object = data
        if isinstance(chunks, EncodedChunks):
            # The chunks are the gRPC prefix followed by the message.
            meter = transfer_meter(
                "send", len(chunks) - GRPC_PREFIX_LENGTH, offset=GRPC_PREFIX_LENGTH
            )
            if meter is None:
                await send_chunks(self, chunks, end_stream=end_stream)
            else:
                await send_chunks(self, chunks, end_stream=end_stream, progress=meter)
            return
        await super().send_data(data, end_stream=end_stream)


class SizeLimitedConnection(Connection):
    """A ``grpclib.protocol.Connection`` whose streams are :class:`SizeLimitedStream`."""

    def __init__(
        self,
        connection: H2Connection,
        transport: asyncio.Transport,
        *,
        config: Configuration,
        max_message_length: int | None,
        zero_copy_receive: bool = False,
    ) -> None:
        super().__init__(connection, transport, config=config)
        self.max_message_length = (
            None if max_message_length is None else validate_max_message_length(max_message_length)
        )
        self.zero_copy_receive = zero_copy_receive

    def create_stream(
        self,
        *,
        stream_id: int | None = None,
        wrapper: Wrapper | None = None,
    ) -> Stream:
        """Create a :class:`SizeLimitedStream` (called by grpclib for each request).

        Raises:
            ConnectionResetError: the connection was lost (and closed) between being made
                and this call, e.g. a dying server reset it right after the handshake.
                Stock grpclib fails here with ``AttributeError`` (``close`` deletes the
                transport); a connection error makes the caller reconnect instead.

        """
        h2_connection, transport = grpclib_internals.connection_parts(self)
        return SizeLimitedStream(
            self,
            h2_connection,
            transport,
            max_message_length=self.max_message_length,
            zero_copy_receive=self.zero_copy_receive,
            stream_id=stream_id,
            wrapper=wrapper,
        )


_HandlerFunc = Callable[[Any], Coroutine[Any, Any, None]]


def _wrap_handler_func(func: _HandlerFunc) -> _HandlerFunc:
    @functools.wraps(func)
    async def guarded(stream: Any) -> None:
        try:
            await func(stream)
        except MessageTooLargeError as exc:
            log.warning("Refused a gRPC message: %s", exc)
            raise GRPCError(Status.RESOURCE_EXHAUSTED, str(exc)) from exc

    return guarded


def resource_exhausted_on_too_large(mapping: dict[str, Handler]) -> dict[str, Handler]:
    """Return ``mapping`` (a grpclib server's method table) with guarded handler functions.

    A :class:`MessageTooLargeError` escaping a handler becomes
    ``GRPCError(RESOURCE_EXHAUSTED, <message>)``, so the client gets the gRPC status that
    grpc-core would send instead of ``UNKNOWN``; handlers can still catch the error.
    """
    return {
        name: Handler(
            _wrap_handler_func(handler.func),
            handler.cardinality,
            handler.request_type,
            handler.reply_type,
        )
        for name, handler in mapping.items()
    }


class _ResourceExhaustedServable:
    """A grpclib servable whose method table is another's, guarded."""

    def __init__(self, servable: Any) -> None:
        self.servable = servable

    def __mapping__(self) -> dict[str, Handler]:
        mapping: dict[str, Handler] = self.servable.__mapping__()
        return resource_exhausted_on_too_large(mapping)


def resource_exhausted_servables(handlers: Collection[Any]) -> list[Any]:
    """``handlers`` (grpclib servables) with :func:`resource_exhausted_on_too_large` applied.

    Pass the result to ``grpclib.server.Server`` instead of ``handlers``.
    """
    return [_ResourceExhaustedServable(handler) for handler in handlers]
