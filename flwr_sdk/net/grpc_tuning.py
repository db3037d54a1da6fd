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

4. **Write coalescing** (``GrpcTuning.coalesce_writes``): grpclib writes every HTTP/2 step
   to the transport at once (a unary call: HEADERS and DATA on the client; HEADERS, DATA
   and trailers on the server), one ``send`` system call each. A
   :class:`~flwr_sdk.net.write_coalescing.CoalescingTransport` joins the small writes of
   one event-loop iteration into one; big frames are written directly, never copied.
   The peer then also reads a call in one chunk instead of one per frame. Together with
   silent frame reprs (:class:`TunedH2Connection`) it cut a small unary call's CPU by
   about 15 % on either side (loopback, 300 calls a second on one connection), and an
   idle 1,000-node swarm's CPU by about 20 % (the reference server's by about 30 %),
   measured side by side on a loaded 2-core machine.

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

**Liveness** (client connections of the tuned path; :class:`ConnectionLiveness`). A
black-holed connection (the peer stops answering, no FIN, no RST: a NAT timeout, a Wi-Fi
drop, a crashed host) otherwise leaves a call waiting for its deadline (600 s for a pull)
and an idle grpc-bidi ``Join`` waiting forever. Two rules, checked about once a second:

* **Keepalive.** When nothing at all has been received on a connection with an open
  stream for :data:`KEEPALIVE_TIME` (30 s), the client sends an HTTP/2 PING; when its ACK
  does not come within :data:`KEEPALIVE_TIMEOUT` (20 s, gRPC's own default), the
  connection is closed and every call on it fails with ``StreamTerminatedError``, which
  the transports report as ``ServerUnavailableError`` (the retry path reconnects). A
  dead path is noticed 30-50 s after the last byte, also on a ``Join`` idle between rounds.

  Why these numbers and why it is safe with Flower's servers: Flower's servers (the
  SuperLink's Fleet API and the legacy grpc-bidi server, both
  ``flwr.server...generic_create_grpc_server``) are grpcio (grpc-core) servers. They set
  their *own* keepalive (``grpc.keepalive_time_ms`` 210 000, pings to the client every
  210 s, ``keepalive_permit_without_calls`` 0, ``http2.max_pings_without_data`` 0) and leave
  the *received*-ping policy at grpc-core's defaults: ``http2.min_ping_interval_without_data_ms``
  300 000 (5 min; 2 h when the connection has no call) and ``http2.max_ping_strikes`` 2. A
  client PING that comes sooner than 5 min after the previous one is a strike; the third
  strike is answered with GOAWAY ENHANCE_YOUR_CALM "too_many_pings", which kills every call.
  Strikes (and the 5-min clock) are reset whenever the server sends HEADERS or DATA
  (checked against flwr 1.12's own server by tests/faults/test_net_grpcio_ping_policy.py,
  grpcio 1.85: PINGs 0.3 s apart kill the connection, the rule below does not). So the
  client never pings again within one stretch of server silence unless the server has sent
  HEADERS or DATA since its previous PING, or :data:`PEER_MIN_PING_INTERVAL` (330 s: grpc-core's
  5 min plus 10 % for timer and network jitter) has passed: every PING it sends is one
  grpc-core accepts without a strike. On a Fleet connection (grpc-rere) every call's answer
  resets the clock, so each silence gets its 30-s probe; on an idle ``Join`` the first probe
  comes after 30 s, later ones at most every 330 s (a black hole then takes up to
  330 + 20 s to notice; the legacy server's own 210-s pings also count as received bytes).
  PINGs are only sent while a call is open (as ``keepalive_permit_without_calls`` = 0
  expects); a connection without calls is not checked.

* **Progress deadline.** While a stream is owed bytes by the server — the request is
  complete and the answer has not ended, a gRPC message is being received in part, or a
  request body is being sent (it needs WINDOW_UPDATEs) — and *no byte* arrives on the
  connection for :data:`PROGRESS_TIMEOUT` (60 s), the connection is closed the same way.
  Flower's Fleet RPCs answer at once (pulls do not long-poll; a SQLite SuperLink's "database
  is locked" comes after 5 s), so 60 s without a byte while an answer is due means a dead
  path or a wedged server. A grpc-bidi ``Join`` between rounds owes nothing (the server
  legitimately holds it open for as long as a round takes), so only keepalive covers it.

Servers do not run these rules. On the stock fallback path (below), client channels use
grpclib's own keepalive instead: a PING every :data:`PEER_MIN_PING_INTERVAL` while a call is
open, the same timeout, no progress deadline.

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
import math
import socket
import ssl as _ssl
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.protocol import AbstractHandler, Connection, H2Protocol
from grpclib.server import Server
from h2.config import H2Configuration
from h2.events import (
    DataReceived,
    InformationalResponseReceived,
    PingAckReceived,
    ResponseReceived,
    TrailersReceived,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes
from typing_extensions import Unpack

from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.grpclib_internals import (
    ChunkHandoffCodec,
    TunedEventsProcessor,
    TunedH2Connection,
    connection_parts,
    install_protocol_factory,
    internals_usable,
)
from flwr_sdk.net.limits import (
    SizeLimitedCodec,
    SizeLimitedConnection,
    resource_exhausted_servables,
    validate_max_message_length,
)
from flwr_sdk.net.write_coalescing import CoalescingTransport

__all__ = [
    "DEFAULT_TUNING",
    "KEEPALIVE_TIME",
    "KEEPALIVE_TIMEOUT",
    "PEER_MIN_PING_INTERVAL",
    "PROGRESS_TIMEOUT",
    "ConnectionLiveness",
    "EndpointOptions",
    "TUNED_MAX_FRAME_SIZE",
    "TUNED_WINDOW_SIZE",
    "GrpcTuning",
    "TunedChannel",
    "TunedH2Connection",
    "TunedH2Protocol",
    "TunedServer",
    "stock_keepalive_configuration",
    "tuned_configuration",
    "tuned_server",
]

log = logging.getLogger("flwr_sdk")

#: Connection and stream flow-control window of tuned endpoints (64 MiB).
TUNED_WINDOW_SIZE = 64 * 2**20
#: SETTINGS_MAX_FRAME_SIZE advertised by tuned endpoints (1 MiB; HTTP/2 allows up to 16 MiB-1).
TUNED_MAX_FRAME_SIZE = 2**20
#: Seconds without any received byte (on a connection with a call open) before a PING.
KEEPALIVE_TIME = 30.0
#: Seconds a PING may wait for its ACK before the connection is declared dead.
KEEPALIVE_TIMEOUT = 20.0
#: Seconds between two PINGs without HEADERS / DATA from the server in between (grpc-core
#: servers' ``min_ping_interval_without_data`` default, 300 s, plus 10 %).
PEER_MIN_PING_INTERVAL = 330.0
#: Seconds without any received byte while the server owes a stream bytes before the
#: connection is declared dead.
PROGRESS_TIMEOUT = 60.0
_H2_MIN_FRAME_SIZE = 2**14
_H2_MAX_FRAME_SIZE = 2**24 - 1


@dataclass(frozen=True)
class GrpcTuning:
    """The HTTP/2-level tuning of one endpoint.

    Attributes:
        max_frame_size: SETTINGS_MAX_FRAME_SIZE to advertise (16 KiB .. 16 MiB-1), or
            ``None`` to keep h2's default (16 KiB).
        quiet_data_frames: skip h2's per-DATA-frame hex dump (see module docs).
        keepalive_time: seconds of silence before a client PING (``None``: no keepalive).
        keepalive_timeout: seconds a PING may wait for its ACK.
        peer_min_ping_interval: seconds between two PINGs when the server sent no HEADERS
            or DATA in between.
        progress_timeout: seconds without a received byte while the server owes bytes
            (``None``: no progress deadline).
        coalesce_writes: join the small writes of one event-loop iteration into one
            socket write (:mod:`flwr_sdk.net.write_coalescing`; big frames are written
            directly, never copied).

    The liveness settings apply to client connections only (see the module docs).

    """

    max_frame_size: int | None = TUNED_MAX_FRAME_SIZE
    quiet_data_frames: bool = True
    keepalive_time: float | None = KEEPALIVE_TIME
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    peer_min_ping_interval: float = PEER_MIN_PING_INTERVAL
    progress_timeout: float | None = PROGRESS_TIMEOUT
    coalesce_writes: bool = True

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
        for flag in ("quiet_data_frames", "coalesce_writes"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool")
        for name in ("keepalive_time", "progress_timeout"):
            value = getattr(self, name)
            if value is not None:
                _check_seconds(name, value)
        _check_seconds("keepalive_timeout", self.keepalive_timeout)
        _check_seconds("peer_min_ping_interval", self.peer_min_ping_interval)


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value}")


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


def stock_keepalive_configuration(tuning: GrpcTuning) -> Configuration:
    """The stock fallback's client configuration: grpclib's defaults and its keepalive.

    grpclib's keepalive pings at a fixed period while a call is open; the period is
    ``tuning.peer_min_ping_interval`` so that no PING is a strike for a grpc-core server
    (see the module docs), the ACK timeout ``tuning.keepalive_timeout``.
    """
    return Configuration(
        _keepalive_time=tuning.peer_min_ping_interval,
        _keepalive_timeout=tuning.keepalive_timeout,
        _keepalive_permit_without_calls=False,
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=tuning.peer_min_ping_interval,
    )


def _set_tcp_nodelay(sock: socket.socket) -> None:
    if (
        hasattr(socket, "TCP_NODELAY")
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: Received events that mean the server sent HEADERS or DATA (they reset grpc-core's
#: ping-strike clock; see the module docs).
_PEER_WROTE = (ResponseReceived, TrailersReceived, DataReceived, InformationalResponseReceived)


class ConnectionLiveness:
    """Keepalive PINGs and the progress deadline of one client connection (module docs).

    :meth:`received` is told about every chunk of bytes and the h2 events it produced;
    a timer calls :meth:`check` about once a second (more often for short settings).
    When the connection is found dead, ``fail(reason)`` is called once.
    """

    def __init__(
        self,
        tuning: GrpcTuning,
        *,
        ping: Callable[[bytes], None],
        streams: Callable[[], Iterable[Any]],
        fail: Callable[[str], None],
    ) -> None:
        self.tuning = tuning
        self._ping = ping
        self._streams = streams
        self._fail = fail
        now = time.monotonic()
        self.last_received = now
        self.last_ping_sent: float | None = None
        self.pings_sent = 0
        self._ping_payload: bytes | None = None
        self._ping_deadline: float | None = None
        self._peer_wrote_since_ping = True
        self._awaiting_since: dict[int, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._done = False
        periods = [tuning.keepalive_timeout]
        periods += [p for p in (tuning.keepalive_time, tuning.progress_timeout) if p]
        self.tick = min(1.0, max(0.02, min(periods) / 10))

    @property
    def active(self) -> bool:
        """Whether any rule is on."""
        return self.tuning.keepalive_time is not None or self.tuning.progress_timeout is not None

    def start(self) -> None:
        """Start the timer (in the connection's event loop)."""
        if self.active and not self._done:
            self._handle = asyncio.get_running_loop().call_later(self.tick, self._on_timer)

    def stop(self) -> None:
        """Stop the timer (the connection is closed)."""
        self._done = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def received(self, events: Iterable[object]) -> None:
        """Note bytes from the peer and the events they produced."""
        self.last_received = time.monotonic()
        for event in events:
            if isinstance(event, _PEER_WROTE):
                self._peer_wrote_since_ping = True
            elif isinstance(event, PingAckReceived) and event.ping_data == self._ping_payload:
                self._ping_payload = None
                self._ping_deadline = None

    def _on_timer(self) -> None:
        self._handle = None
        if self._done:
            return
        self.check(time.monotonic())
        if not self._done:
            self._handle = asyncio.get_running_loop().call_later(self.tick, self._on_timer)

    def check(self, now: float) -> None:
        """Apply the rules at time ``now`` (``time.monotonic()``)."""
        tuning = self.tuning
        if self._ping_deadline is not None and now >= self._ping_deadline:
            self._dead(f"no answer to a keepalive PING within {tuning.keepalive_timeout:g} s")
            return
        streams = list(self._streams())
        if not streams:
            self._awaiting_since.clear()
            return
        silence = now - self.last_received
        if tuning.progress_timeout is not None:
            awaiting: dict[int, float] = {}
            for stream in streams:
                if getattr(stream, "awaiting_peer", False) and stream.id is not None:
                    awaiting[stream.id] = self._awaiting_since.get(stream.id, now)
            self._awaiting_since = awaiting
            if awaiting:
                stalled = now - max(self.last_received, min(awaiting.values()))
                if stalled >= tuning.progress_timeout:
                    self._dead(
                        f"no byte received for {tuning.progress_timeout:g} s while the "
                        "server owed an answer"
                    )
                    return
        if (
            tuning.keepalive_time is not None
            and self._ping_payload is None
            and silence >= tuning.keepalive_time
            and self._may_ping(now)
        ):
            self.pings_sent += 1
            self._ping_payload = self.pings_sent.to_bytes(8, "big")
            self._ping_deadline = now + tuning.keepalive_timeout
            self.last_ping_sent = now
            self._peer_wrote_since_ping = False
            self._ping(self._ping_payload)

    def _may_ping(self, now: float) -> bool:
        """Whether a PING now cannot be a strike for a grpc-core server (module docs)."""
        if self.last_ping_sent is None or self._peer_wrote_since_ping:
            return True
        return now - self.last_ping_sent >= self.tuning.peer_min_ping_interval

    def _dead(self, reason: str) -> None:
        self.stop()
        log.warning("gRPC connection declared dead: %s", reason)
        self._fail(reason)


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
        self.liveness: ConnectionLiveness | None = None
        #: The write-coalescing proxy of the connection (``tuning.coalesce_writes``).
        self.coalescer: CoalescingTransport | None = None
        self._failed_reason: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Set up the HTTP/2 connection (called by asyncio)."""
        stream_transport = cast(asyncio.Transport, transport)
        if self.tuning.coalesce_writes:
            self.coalescer = CoalescingTransport(stream_transport)
            stream_transport = self.coalescer
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_tcp_nodelay(sock)

        h2_conn = TunedH2Connection(
            config=self.h2_config, quiet_data_frames=self.tuning.quiet_data_frames
        )
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
        client_side = bool(self.h2_config.client_side)
        self.processor = TunedEventsProcessor(self.handler, connection, client_side=client_side)
        if client_side:
            self.liveness = ConnectionLiveness(
                self.tuning,
                ping=self._send_ping,
                streams=lambda: tuple(self.processor.streams.values()),
                fail=self._fail_connection,
            )
            self.liveness.start()

    def _send_ping(self, payload: bytes) -> None:
        if not self.connection.is_closing():
            h2_conn, _transport = connection_parts(self.connection)
            h2_conn.ping(payload)
            self.connection.flush()

    def _fail_connection(self, reason: str) -> None:
        """Close the connection; every call on it fails with ``reason``."""
        self._failed_reason = reason
        self.processor.close(reason)

    def data_received(self, data: bytes) -> None:
        """Feed received bytes to h2 and grpclib (as the stock protocol); note liveness."""
        try:
            events = self.connection.feed(data)
        except H2ProtocolError:
            log.debug("HTTP/2 protocol error", exc_info=True)
            self.processor.close("Protocol error")
            return
        if self.liveness is not None:
            self.liveness.received(events)
        self.connection.flush()
        for event in events:
            self.processor.process(event)
        self.connection.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport closed: fail the calls (unless liveness already did)."""
        if self.liveness is not None:
            self.liveness.stop()
        if self.coalescer is not None:
            self.coalescer.discard()
        if self._failed_reason is None:
            super().connection_lost(exc)


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
        *,
        client: bool = False,
    ) -> _EndpointSetup:
        if max_message_length is not None:
            validate_max_message_length(max_message_length)
        if not isinstance(tuning, GrpcTuning):
            raise TypeError(f"tuning must be a GrpcTuning, got {type(tuning).__name__}")
        tuned = internals_usable()
        if config is None:
            if tuned:
                config = tuned_configuration()
            elif client and tuning.keepalive_time is not None:
                config = stock_keepalive_configuration(tuning)
            else:
                config = Configuration()
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
        setup = _EndpointSetup.prepare(**options, client=True)
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
