"""Tuned grpclib endpoints: :class:`TunedChannel` (client) and :func:`tuned_server`.

Stock grpclib 0.4.9 reaches about half of grpcio's throughput on large messages. Three
changes, applied per endpoint (nothing global: no grpclib, h2 or hyperframe class or module
is modified), close the gap:

1. **64 MiB flow-control windows** via ``grpclib.config.Configuration``
   (``http2_connection_window_size``, ``http2_stream_window_size``).
2. **1 MiB SETTINGS_MAX_FRAME_SIZE**: the peer may then send DATA frames of up to 1 MiB
   instead of 16 KiB, so h2 and grpclib handle 64x fewer frames and events.
3. **No per-DATA-frame hex dump**: h2 4.4.1 evaluates ``repr(frame)`` eagerly for a trace
   log line, even though the default ``DummyLogger`` discards it. For a DATA frame,
   hyperframe's ``repr`` re-serializes the whole body (a copy) and hex-encodes it (twice its
   size) just to keep the first 20 characters. Received DATA frames are re-classed to a
   subclass whose ``repr`` only states the length (:class:`TunedH2Connection`).

Plus the message-size limit checked on each gRPC prefix before the body is allocated,
chunked zero-copy sends and preallocated receives (:mod:`flwr_sdk.net.limits`,
:mod:`flwr_sdk.net.framing`).

How it hooks in: each endpoint's protocol factory (installed per instance by
:func:`~flwr_sdk.net.grpclib_internals.install_protocol_factory`) returns a
:class:`TunedH2Protocol` built from the stock protocol's handler, grpclib configuration
and ``H2Configuration``. Its ``connection_made`` re-implements grpclib's (which hard-codes
``H2Connection``): it creates a :class:`TunedH2Connection`, applies windows and frame size
with h2's public ``increment_flow_control_window`` and ``update_settings``, and wraps it in
a :class:`~flwr_sdk.net.limits.SizeLimitedConnection` and grpclib's ``EventsProcessor``
exactly like the stock protocol. After advertising the larger frame size,
``H2Connection.max_inbound_frame_size`` is raised at once instead of on the peer's SETTINGS
ACK: h2 copies that limit into its frame buffer once per received chunk, so a chunk holding
the ACK *and* a large DATA frame would otherwise be refused as an overlong frame.

Every private grpclib / h2 attribute this needs is reached in
:mod:`flwr_sdk.net.grpclib_internals`, which checks the installed versions. When they are
not the tested ones (or ``FLWR_SDK_STOCK_GRPCLIB=1``), :class:`TunedChannel` and
:class:`TunedServer` behave as stock ``grpclib`` endpoints (grpclib's default configuration
and protocol, messages joined before grpclib sees them), with the same messages and the
same ``MessageTooLargeError`` limits, enforced by the codec; see :attr:`TunedChannel.tuned`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl as _ssl
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol
from grpclib.server import Server
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from typing_extensions import Unpack

from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.grpclib_internals import (
    ChunkHandoffCodec,
    TunedH2Connection,
    install_protocol_factory,
    internals_usable,
)
from flwr_sdk.net.limits import (
    SizeLimitedCodec,
    SizeLimitedConnection,
    resource_exhausted_servables,
    validate_max_message_length,
)

__all__ = [
    "DEFAULT_TUNING",
    "EndpointOptions",
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
    while isinstance(codec, (SizeLimitedCodec, ChunkHandoffCodec)):
        codec = codec.codec
    return isinstance(codec, FastProtoCodec)


@dataclass(frozen=True)
class _EndpointSetup:
    """What :class:`TunedChannel` and :class:`TunedServer` pass to grpclib and install.

    Built by :meth:`prepare` from the constructor arguments (validated once, here), then
    :meth:`apply` to the constructed endpoint.
    """

    tuned: bool
    config: Configuration
    codec: CodecBase | None
    status_details_codec: StatusDetailsCodecBase | None
    max_message_length: int | None
    tuning: GrpcTuning
    zero_copy_receive: bool

    @classmethod
    def prepare(
        cls,
        config: Configuration | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        max_message_length: int | None = None,
        tuning: GrpcTuning = DEFAULT_TUNING,
    ) -> _EndpointSetup:
        if max_message_length is not None:
            validate_max_message_length(max_message_length)
        if not isinstance(tuning, GrpcTuning):
            raise TypeError(f"tuning must be a GrpcTuning, got {type(tuning).__name__}")
        tuned = internals_usable()
        if config is None:
            config = tuned_configuration() if tuned else Configuration()
        zero_copy = tuned and _accepts_views(codec)
        if max_message_length is not None:
            if codec is None:
                codec = ProtoCodec()
                if status_details_codec is None:
                    status_details_codec = _status_details_codec_default()
            codec = SizeLimitedCodec(codec, max_message_length)
        if codec is not None:
            codec = ChunkHandoffCodec(codec, tuned=tuned)
        return cls(
            tuned=tuned,
            config=config,
            codec=codec,
            status_details_codec=status_details_codec,
            max_message_length=max_message_length,
            tuning=tuning,
            zero_copy_receive=zero_copy,
        )

    def apply(self, endpoint: TunedChannel | TunedServer) -> None:
        """Record the settings on ``endpoint``; on the tuned path, install the protocol."""
        endpoint.tuned = self.tuned
        endpoint.tuning = self.tuning
        endpoint.max_message_length = self.max_message_length
        endpoint.zero_copy_receive = self.zero_copy_receive
        if self.tuned:
            install_protocol_factory(endpoint, self.protocol)

    def protocol(self, stock: H2Protocol) -> H2Protocol:
        """The tuned protocol replacing grpclib's ``stock`` one for a new connection."""
        return TunedH2Protocol(
            stock.handler,
            stock.config,
            stock.h2_config,
            tuning=self.tuning,
            max_message_length=self.max_message_length,
            zero_copy_receive=self.zero_copy_receive,
        )


class EndpointOptions(TypedDict, total=False):
    """The keyword arguments :class:`TunedChannel` and :class:`TunedServer` share.

    * ``config``: grpclib configuration; defaults to :func:`tuned_configuration` (64 MiB
      windows; grpclib's default on the stock fallback). A given configuration is used
      as is.
    * ``codec``: message codec (grpclib's ``ProtoCodec`` by default). With a
      :class:`~flwr_sdk.net.fast_codec.FastProtoCodec` (possibly inside a
      ``SizeLimitedCodec``), large received bodies are read into one preallocated buffer
      and decoded as views of it.
    * ``status_details_codec``: as in grpclib.
    * ``max_message_length``: refuse to receive or send gRPC messages larger than this many
      bytes (``MessageTooLargeError``), for unary and streaming calls; ``None``: no limit.
    * ``tuning``: HTTP/2 tuning, :data:`DEFAULT_TUNING` by default.
    """

    config: Configuration | None
    codec: CodecBase | None
    status_details_codec: StatusDetailsCodecBase | None
    max_message_length: int | None
    tuning: GrpcTuning


class _TunedEndpoint:
    """The settings :meth:`_EndpointSetup.apply` records on a channel or server."""

    #: Whether the tuned path is used (else stock grpclib: see the module docs).
    tuned: bool
    tuning: GrpcTuning
    max_message_length: int | None
    zero_copy_receive: bool


class TunedChannel(_TunedEndpoint, Channel):
    """A ``grpclib.client.Channel`` with tuned HTTP/2 settings and an optional size limit.

    Args:
        host: host name or IP address (IPv6 without brackets).
        port: TCP port.
        ssl: client ``ssl.SSLContext`` (see :func:`flwr_sdk.net.tls.client_ssl_context`)
            or ``None`` for plaintext.
        options: see :class:`EndpointOptions`.

    Attributes:
        tuned: whether the tuned path is used (else stock grpclib: see the module docs).

    Create it inside a running event loop (grpclib binds the channel to the current loop).

    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        **options: Unpack[EndpointOptions],
    ) -> None:
        setup = _EndpointSetup.prepare(**options)
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, got {type(ssl).__name__}")
        super().__init__(
            host,
            port,
            ssl=ssl,
            config=setup.config,
            codec=setup.codec,
            status_details_codec=setup.status_details_codec,
        )
        setup.apply(self)


class TunedServer(_TunedEndpoint, Server):
    """A ``grpclib.server.Server`` with tuned HTTP/2 settings and an optional size limit.

    With ``max_message_length``, received messages announcing more bytes are refused before
    their body is read, and replies larger than the limit are not sent; either way a
    ``MessageTooLargeError`` raised inside a handler (and not caught there) ends the call
    with status ``RESOURCE_EXHAUSTED``. ``options``: see :class:`EndpointOptions`;
    :attr:`tuned` as for :class:`TunedChannel`.
    """

    def __init__(self, handlers: Collection[Any], **options: Unpack[EndpointOptions]) -> None:
        setup = _EndpointSetup.prepare(**options)
        if setup.max_message_length is not None:
            handlers = resource_exhausted_servables(handlers)
        super().__init__(
            handlers,
            codec=setup.codec,
            status_details_codec=setup.status_details_codec,
            config=setup.config,
        )
        setup.apply(self)


def tuned_server(handlers: Collection[Any], **options: Unpack[EndpointOptions]) -> TunedServer:
    """Create a :class:`TunedServer` for ``handlers`` (grpclib servables); start it yourself.

    Example::

        server = tuned_server([MyService()], max_message_length=512 * 2**20)
        await server.start("127.0.0.1", 9092, ssl=server_ssl_context)
    """
    return TunedServer(handlers, **options)
