"""Tuned grpclib endpoints: :class:`TunedChannel` (client) and :func:`tuned_server`.

Stock grpclib 0.4.9 reaches about half of grpcio's throughput on large messages. Three
changes, applied per endpoint (nothing global, nothing patched), close the gap:

1. **64 MiB flow-control windows** via ``grpclib.config.Configuration``
   (``http2_connection_window_size``, ``http2_stream_window_size``).
2. **1 MiB SETTINGS_MAX_FRAME_SIZE**: the peer may then send DATA frames of up to 1 MiB
   instead of 16 KiB, so h2 and grpclib handle 64x fewer frames and events.
3. **No per-DATA-frame hex dump**: h2 4.4.1's ``H2Connection._receive_frame`` evaluates
   ``repr(frame)`` eagerly for a trace log line (``config.logger.trace("Received frame:
   %s", repr(frame))``), even though the default ``DummyLogger`` discards it. For a DATA
   frame, hyperframe's ``repr`` re-serializes the whole body (a copy) and hex-encodes it
   (twice its size) just to keep the first 20 characters. A quiet logger does not help;
   the work happens before the call. We re-class received DATA frames to a subclass whose
   ``repr`` only states the length.

How it hooks in (grpclib 0.4.9 / h2 4.4.1, both pinned):

* ``Channel._protocol_factory`` / ``Server._protocol_factory`` are overridden to return a
  :class:`TunedH2Protocol` built from the stock protocol's handler, grpclib configuration
  and ``H2Configuration``.
* :class:`TunedH2Protocol` overrides ``H2Protocol.connection_made`` (re-implemented; the
  stock one hard-codes ``H2Connection``) to create a :class:`TunedH2Connection`, apply
  windows and frame size with h2's public ``increment_flow_control_window`` and
  ``update_settings``, and wrap it in grpclib's ``Connection`` (or, with a message-size
  limit, :class:`~flwr_sdk.net.limits.SizeLimitedConnection`) and
  ``EventsProcessor`` exactly like the stock protocol.
* :class:`TunedH2Connection` adds the quiet DATA-frame class to the connection's
  ``_frame_dispatch_table`` (an instance dict) and overrides ``_receive_frame`` to
  re-class ``DataFrame`` objects before delegating to h2.
* After advertising the larger frame size, ``H2Connection.max_inbound_frame_size`` is
  raised at once instead of on the peer's SETTINGS ACK: h2 copies that limit into its frame
  buffer once per received chunk, so a chunk holding the ACK *and* a large DATA frame would
  otherwise be refused as an overlong frame (seen on fresh connections).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl as _ssl
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol
from grpclib.server import Server
from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection
from h2.events import Event as H2Event
from h2.exceptions import FlowControlError, FrameTooLargeError
from h2.settings import SettingCodes
from h2.stream import StreamInputs
from hyperframe.frame import DataFrame, Frame

from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.limits import (
    SizeLimitedCodec,
    SizeLimitedConnection,
    resource_exhausted_on_too_large,
    validate_max_message_length,
)

__all__ = [
    "DEFAULT_TUNING",
    "TUNED_MAX_FRAME_SIZE",
    "TUNED_WINDOW_SIZE",
    "GrpcTuning",
    "TunedChannel",
    "TunedH2Connection",
    "TunedH2Protocol",
    "TunedServer",
    "tuned_configuration",
    "tuned_server",
]

log = logging.getLogger("flwr_sdk")

#: Connection and stream flow-control window of tuned endpoints (64 MiB).
TUNED_WINDOW_SIZE = 64 * 2**20
#: SETTINGS_MAX_FRAME_SIZE advertised by tuned endpoints (1 MiB; HTTP/2 allows up to 16 MiB-1).
TUNED_MAX_FRAME_SIZE = 2**20
_H2_MIN_FRAME_SIZE = 2**14
_H2_MAX_FRAME_SIZE = 2**24 - 1


@dataclass(frozen=True)
class GrpcTuning:
    """The HTTP/2-level tuning of one endpoint.

    Attributes:
        max_frame_size: SETTINGS_MAX_FRAME_SIZE to advertise (16 KiB .. 16 MiB-1), or
            ``None`` to keep h2's default (16 KiB).
        quiet_data_frames: skip h2's per-DATA-frame hex dump (see module docs).

    """

    max_frame_size: int | None = TUNED_MAX_FRAME_SIZE
    quiet_data_frames: bool = True

    def __post_init__(self) -> None:
        size = self.max_frame_size
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"max_frame_size must be an int or None, got {type(size).__name__}")
            if not _H2_MIN_FRAME_SIZE <= size <= _H2_MAX_FRAME_SIZE:
                raise ValueError(
                    f"max_frame_size must be in {_H2_MIN_FRAME_SIZE}..{_H2_MAX_FRAME_SIZE}, "
                    f"got {size}"
                )
        if not isinstance(self.quiet_data_frames, bool):
            raise TypeError("quiet_data_frames must be a bool")


#: What :class:`TunedChannel` and :func:`tuned_server` use unless told otherwise.
DEFAULT_TUNING = GrpcTuning()


def tuned_configuration(
    *,
    window_size: int = TUNED_WINDOW_SIZE,
    ssl_target_name_override: str | None = None,
) -> Configuration:
    """A ``grpclib.config.Configuration`` with ``window_size`` connection and stream windows."""
    return Configuration(
        http2_connection_window_size=window_size,
        http2_stream_window_size=window_size,
        ssl_target_name_override=ssl_target_name_override,
    )


class _QuietDataFrame(DataFrame):
    """A received DATA frame whose ``repr`` does not serialize and hex-dump the body."""

    def _body_repr(self) -> str:
        return f"<{len(self.data)} bytes>"


class TunedH2Connection(H2Connection):
    """An ``h2`` connection that moves DATA frame bodies without copying them.

    * Received ``DataFrame`` objects are re-classed to a subclass with a cheap ``repr``
      before h2 handles them; the subclass is dispatched to the same DATA handler.
    * :meth:`send_data_frame` does the bookkeeping of ``send_data`` (checks, state machines,
      flow-control windows) but returns the frame header instead of queuing header and
      body in h2's output buffer, so the caller can hand the body to the transport as the
      view it already is. h2's ``send_data`` copies a body five times on its way out
      (``memoryview.tobytes``, frame body, frame, output ``bytearray``, ``data_to_send``).

    Everything else is stock h2.
    """

    def __init__(self, config: H2Configuration | None = None) -> None:
        super().__init__(config=config)
        self._frame_dispatch_table[_QuietDataFrame] = self._receive_data_frame

    def _receive_frame(self, frame: Frame) -> list[H2Event]:
        if frame.__class__ is DataFrame:
            frame.__class__ = _QuietDataFrame
        events: list[H2Event] = super()._receive_frame(frame)
        return events

    def send_data_frame(self, stream_id: int, body: memoryview) -> bytes:
        """Account one DATA frame (no padding, stream stays open) and return its header.

        Returns h2's pending output followed by the 9-byte frame header; the caller writes
        that and then ``body`` to the transport, in this order, before anything else.

        Raises:
            h2.exceptions.FlowControlError: ``body`` exceeds the stream's send window.
            h2.exceptions.FrameTooLargeError: ``body`` exceeds the peer's max frame size.
            h2.exceptions.ProtocolError: the stream or connection cannot send data.

        """
        size = body.nbytes
        window = self.local_flow_control_window(stream_id)
        if size > window:
            raise FlowControlError(f"Cannot send {size} bytes, flow control window is {window}")
        if size > self.max_outbound_frame_size:
            raise FrameTooLargeError(
                f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}"
            )
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        stream = self.streams[stream_id]
        stream.state_machine.process_input(StreamInputs.SEND_DATA)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        header = _DATA_HEADER.pack(size >> 8, size & 0xFF, _DATA_FRAME_TYPE, 0, stream_id)
        return self.data_to_send() + header


#: HTTP/2 frame header: 24-bit length (as 16 + 8 bits), type, flags, 31-bit stream id.
_DATA_HEADER = struct.Struct(">HBBBL")
_DATA_FRAME_TYPE = 0x0


def _set_tcp_nodelay(sock: socket.socket) -> None:
    if (
        hasattr(socket, "TCP_NODELAY")
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TunedH2Protocol(H2Protocol):
    """grpclib's ``H2Protocol`` with :class:`GrpcTuning` and an optional message-size limit.

    Same behaviour as the stock protocol (TCP_NODELAY, windows from the grpclib
    ``Configuration``, keepalive), plus the frame-size setting, the quiet DATA frames and,
    a :class:`SizeLimitedConnection` (``max_message_length`` enforced when set; chunked
    sends; with ``zero_copy_receive`` large bodies read into one preallocated buffer).
    """

    def __init__(
        self,
        handler: AbstractHandler,
        config: Configuration,
        h2_config: H2Configuration,
        *,
        tuning: GrpcTuning = DEFAULT_TUNING,
        max_message_length: int | None = None,
        zero_copy_receive: bool = False,
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.tuning = tuning
        self.max_message_length = max_message_length
        self.zero_copy_receive = zero_copy_receive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Set up the HTTP/2 connection (called by asyncio)."""
        stream_transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_tcp_nodelay(sock)

        h2_conn: H2Connection
        if self.tuning.quiet_data_frames:
            h2_conn = TunedH2Connection(config=self.h2_config)
        else:
            h2_conn = H2Connection(config=self.h2_config)
        h2_conn.initiate_connection()

        settings: dict[SettingCodes | int, int] = {}
        initial = h2_conn.local_settings.initial_window_size
        connection_delta = self.config.http2_connection_window_size - initial
        if connection_delta:
            h2_conn.increment_flow_control_window(connection_delta)
        if self.config.http2_stream_window_size != initial:
            settings[SettingCodes.INITIAL_WINDOW_SIZE] = self.config.http2_stream_window_size
        if self.tuning.max_frame_size is not None:
            settings[SettingCodes.MAX_FRAME_SIZE] = self.tuning.max_frame_size
        if settings:
            h2_conn.update_settings(settings)
        if self.tuning.max_frame_size is not None:
            # h2 only raises its inbound frame limit when the peer ACKs our SETTINGS, and it
            # snapshots that limit once per received chunk: a chunk holding the ACK followed
            # by a large DATA frame would be refused as "overlong frame". Accepting frames up
            # to the advertised size right away is safe (a peer cannot send them earlier).
            h2_conn.max_inbound_frame_size = max(
                h2_conn.max_inbound_frame_size, self.tuning.max_frame_size
            )

        connection: Connection = SizeLimitedConnection(
            h2_conn,
            stream_transport,
            config=self.config,
            max_message_length=self.max_message_length,
            zero_copy_receive=self.zero_copy_receive,
        )
        self.connection = connection
        connection.flush()
        connection.initialize()
        self.processor = EventsProcessor(self.handler, connection)


def _status_details_codec_default() -> StatusDetailsCodecBase | None:
    """Grpclib's default status-details codec, when googleapis-common-protos is installed."""
    try:
        importlib.import_module("google.rpc.status_pb2")
    except ImportError:
        return None
    from grpclib.encoding.proto import ProtoStatusDetailsCodec

    return ProtoStatusDetailsCodec()


def _accepts_views(codec: CodecBase | None) -> bool:
    """Whether ``codec`` decodes memoryviews (then large bodies are received without a join)."""
    while isinstance(codec, SizeLimitedCodec):
        codec = codec.codec
    return isinstance(codec, FastProtoCodec)


def _limited_codecs(
    codec: CodecBase | None,
    status_details_codec: StatusDetailsCodecBase | None,
    max_message_length: int | None,
) -> tuple[CodecBase | None, StatusDetailsCodecBase | None]:
    if max_message_length is None:
        return codec, status_details_codec
    if codec is None:
        codec = ProtoCodec()
        if status_details_codec is None:
            status_details_codec = _status_details_codec_default()
    return SizeLimitedCodec(codec, max_message_length), status_details_codec


class TunedChannel(Channel):
    """A ``grpclib.client.Channel`` with tuned HTTP/2 settings and an optional size limit.

    Args:
        host: host name or IP address (IPv6 without brackets).
        port: TCP port.
        ssl: client ``ssl.SSLContext`` (see :func:`flwr_sdk.net.tls.client_ssl_context`)
            or ``None`` for plaintext.
        config: grpclib configuration; defaults to :func:`tuned_configuration` (64 MiB
            windows). A given configuration is used as is.
        codec: message codec (grpclib's ``ProtoCodec`` by default). With a
            :class:`~flwr_sdk.net.fast_codec.FastProtoCodec` (possibly inside a
            ``SizeLimitedCodec``), large received bodies are read into one preallocated
            buffer and decoded as views of it.
        status_details_codec: as in grpclib.
        max_message_length: refuse to receive or send gRPC messages larger than this many
            bytes (``MessageTooLargeError``), for unary and streaming calls; ``None``:
            no limit.
        tuning: HTTP/2 tuning, :data:`DEFAULT_TUNING` by default.

    Create it inside a running event loop (grpclib binds the channel to the current loop).

    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        config: Configuration | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        max_message_length: int | None = None,
        tuning: GrpcTuning = DEFAULT_TUNING,
    ) -> None:
        if max_message_length is not None:
            validate_max_message_length(max_message_length)
        if not isinstance(tuning, GrpcTuning):
            raise TypeError(f"tuning must be a GrpcTuning, got {type(tuning).__name__}")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, got {type(ssl).__name__}")
        zero_copy = _accepts_views(codec)
        codec, status_details_codec = _limited_codecs(
            codec, status_details_codec, max_message_length
        )
        super().__init__(
            host,
            port,
            ssl=ssl,
            config=config if config is not None else tuned_configuration(),
            codec=codec,
            status_details_codec=status_details_codec,
        )
        self.tuning = tuning
        self.max_message_length = max_message_length
        self.zero_copy_receive = zero_copy

    def _protocol_factory(self) -> H2Protocol:
        stock = super()._protocol_factory()
        return TunedH2Protocol(
            stock.handler,
            stock.config,
            stock.h2_config,
            tuning=self.tuning,
            max_message_length=self.max_message_length,
            zero_copy_receive=self.zero_copy_receive,
        )


class TunedServer(Server):
    """A ``grpclib.server.Server`` with tuned HTTP/2 settings and an optional size limit.

    With ``max_message_length``, received messages announcing more bytes are refused before
    their body is read, and replies larger than the limit are not sent; either way a
    ``MessageTooLargeError`` raised inside a handler (and not caught there) ends the call
    with status ``RESOURCE_EXHAUSTED``.
    """

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        config: Configuration | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        max_message_length: int | None = None,
        tuning: GrpcTuning = DEFAULT_TUNING,
    ) -> None:
        if max_message_length is not None:
            validate_max_message_length(max_message_length)
        if not isinstance(tuning, GrpcTuning):
            raise TypeError(f"tuning must be a GrpcTuning, got {type(tuning).__name__}")
        zero_copy = _accepts_views(codec)
        codec, status_details_codec = _limited_codecs(
            codec, status_details_codec, max_message_length
        )
        super().__init__(
            handlers,
            codec=codec,
            status_details_codec=status_details_codec,
            config=config if config is not None else tuned_configuration(),
        )
        self.tuning = tuning
        self.max_message_length = max_message_length
        self.zero_copy_receive = zero_copy
        if max_message_length is not None:
            self._mapping = resource_exhausted_on_too_large(self._mapping)

    def _protocol_factory(self) -> H2Protocol:
        stock = super()._protocol_factory()
        return TunedH2Protocol(
            stock.handler,
            stock.config,
            stock.h2_config,
            tuning=self.tuning,
            max_message_length=self.max_message_length,
            zero_copy_receive=self.zero_copy_receive,
        )


def tuned_server(
    handlers: Collection[Any],
    *,
    config: Configuration | None = None,
    codec: CodecBase | None = None,
    status_details_codec: StatusDetailsCodecBase | None = None,
    max_message_length: int | None = None,
    tuning: GrpcTuning = DEFAULT_TUNING,
) -> TunedServer:
    """Create a :class:`TunedServer` for ``handlers`` (grpclib servables); start it yourself.

    Example::

        server = tuned_server([MyService()], max_message_length=512 * 2**20)
        await server.start("127.0.0.1", 9092, ssl=server_ssl_context)
    """
    return TunedServer(
        handlers,
        config=config,
        codec=codec,
        status_details_codec=status_details_codec,
        max_message_length=max_message_length,
        tuning=tuning,
    )
