"""Every use of grpclib / h2 / hyperframe internals, behind a version guard.

The tuned endpoints of :mod:`flwr_sdk.net.grpc_tuning` (1 MiB frames, no per-frame hex
dump, message-size limits checked on the 5-byte prefix before a body is allocated,
zero-copy chunked sends and preallocated receives) need a few things grpclib and h2 do not
offer publicly. They are all here, each named in :data:`PRIVATE_ACCESSES` (the guard checks
that list) and below; no other module of flwr-sdk touches a private attribute of these
libraries. Tested with **grpclib 0.4.9, h2 4.4.1** (hyperframe 6.1.0), the versions pinned in
``pyproject.toml`` and listed in :data:`TESTED_VERSIONS`.

Private accesses (owner.attribute: what for):

* ``grpclib.client.Channel._protocol_factory`` / ``grpclib.server.Server._protocol_factory``:
  :func:`install_protocol_factory` shadows it per endpoint (instance attribute, nothing global)
  so the endpoint builds the tuned protocol from the stock one's handler and configs.
* ``grpclib.server.Server._server``: :func:`bound_port` reads the port a started server
  listens on (grpclib does not expose its ``asyncio.Server``; port 0 means "any free
  port", and the reference server must tell clients which one it got).
* ``grpclib.protocol.Connection._connection`` / ``._transport``:
  :func:`connection_parts` reads the h2 connection and the transport a new stream needs
  (``SizeLimitedConnection.create_stream``); ``_transport`` is absent once grpclib closed
  the connection (then :class:`ConnectionResetError`, not grpclib's ``AttributeError``).
* ``grpclib.protocol.Stream._h2_connection`` / ``._transport``: :func:`stream_parts`, for
  :func:`flwr_sdk.net.framing.send_chunks` (frame-by-frame, zero-copy sends).
* ``grpclib.protocol.Buffer._acked`` / ``._acked_size`` / ``._unacked`` / ``._eof`` /
  ``._ack_callback`` and ``grpclib.protocol.AckedData``: :func:`read_into` fills one
  preallocated buffer from the received DATA chunks (instead of ``Buffer.read``'s join),
  acknowledging flow control as grpclib does.
* ``h2.connection.H2Connection._frame_dispatch_table`` / ``._receive_frame`` /
  ``._receive_data_frame``: :class:`TunedH2Connection` dispatches the quiet DATA frame
  class to h2's DATA handler and re-classes received frames before h2 handles them.
* ``hyperframe.frame.DataFrame.__class__`` (reassigned) and ``DataFrame._body_repr``
  (overridden): received DATA frames become :class:`_QuietDataFrame`, whose ``repr`` does not
  serialize and hex-dump the body (h2 evaluates ``repr(frame)`` for every frame it receives).
* ``hyperframe.frame.Frame.__class__`` (reassigned), with ``hyperframe.frame.FRAMES`` (the
  frame classes), ``h2.config.DummyLogger`` and ``H2Configuration.logger``: when h2 logs to
  its ``DummyLogger`` (which discards that trace line), every received frame is re-classed
  to a subclass whose ``repr`` is only its class name and stream id (hyperframe's formats
  every field and flag: a few percent of an idle swarm's CPU).

* ``grpclib.client.Stream._stream``: :func:`received_status` reads the HEADERS a call
  received (``protocol.Stream.headers`` / ``.trailers``), so a status the server sent
  before resetting the stream is not lost (grpclib reports only "Stream reset by remote
  party" then). Checked by a probe: grpclib's ``send_request`` must still assign it.

Received headers are decoded leniently (:class:`TunedH2Connection`): h2 decodes header
values with ``str.decode("ascii")`` and a non-ASCII byte (e.g. in ``grpc-message``) raised
``UnicodeDecodeError`` out of ``data_received``, which killed the whole connection and lost
the status. The tuned connection asks h2 for bytes (``H2Configuration.header_encoding =
None``, on a copy of grpclib's configuration) and decodes each received header itself with
``backslashreplace``, so such a status reaches the caller (and a non-ASCII content type is
refused by grpclib like any other wrong one).

:class:`TunedEventsProcessor` (a subclass of grpclib's public ``EventsProcessor``) ends a
client call whose response stream ended (END_STREAM) without trailers at once: it gives the
stream empty trailers, so grpclib raises UNKNOWN "Missing grpc-status header" (mapped to a
protocol error) instead of waiting for trailers until the call's deadline.

Undocumented but public-named attributes relied on (also checked by the guard):
``H2Connection.state_machine`` / ``.streams`` / ``.outbound_flow_control_window`` and
``H2Stream.state_machine`` / ``.outbound_flow_control_window`` (the bookkeeping of
:meth:`TunedH2Connection.send_data_frame`); ``H2Connection.config`` (lenient header
decoding); ``grpclib.protocol.Stream.headers`` / ``.trailers`` / ``.trailers_received`` and
``EventsProcessor.streams`` / ``.process_stream_ended`` (:class:`TunedEventsProcessor`,
:func:`received_status`); ``grpclib.protocol.Stream.buffer`` /
``.window_updated`` / ``.connection`` and ``Connection.write_ready`` / ``.data_sent`` /
``.data_send_process`` (send and receive loops); ``grpclib.stream.send_message`` (below).

The chunked send hand-off: grpclib's ``send_message`` takes ``codec.encode(...)``, calls
``len()`` on it and sends ``prefix + encoded`` to the protocol stream. A message encoded as
:class:`~flwr_sdk.net.chunks.EncodedChunks` must reach the stream's ``send_data`` as chunks,
never joined. The tuned endpoints' codec (:class:`ChunkHandoffCodec`) therefore hands grpclib
a :class:`GrpclibBody`, an object defined here whose only operations are exactly those two
(``len`` and ``bytes + body``, which yields the prefixed :class:`EncodedChunks`), and the
guard runs grpclib's real ``send_message`` once (:func:`internals_problems`) to check that it
still applies exactly those. On stock endpoints the same codec joins the chunks into
``bytes`` before grpclib sees them, so nothing relies on how grpclib concatenates.

The guard: :func:`internals_usable` is ``True`` when the installed grpclib and h2 are the
tested versions, every access above resolves and the hand-off probe passes. Otherwise it
logs one WARNING naming the problems and returns ``False``: the endpoints then fall back to
stock grpclib (stock ``H2Protocol`` / ``Connection`` / ``Stream``, grpclib's default
configuration, contiguous messages) which is correct, only slower; message-size limits are
then enforced by the codec (:class:`~flwr_sdk.net.limits.SizeLimitedCodec` checks sends
before they are framed and received bodies before they are decoded). The fallback can be
forced with the environment variable ``FLWR_SDK_STOCK_GRPCLIB=1`` or
:func:`force_stock_grpclib` (for tests). What the fallback gives up besides speed: a
response without trailers waits for the call's deadline again, a non-ASCII header kills
the connection (its calls fail as unavailable, the status is lost), a grpc-bidi status
sent before a reset is reported as the reset, and liveness is grpclib's own periodic
keepalive (:func:`flwr_sdk.net.grpc_tuning.stock_keepalive_configuration`) without the
progress deadline.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib.metadata
import logging
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from grpclib.client import Channel
from grpclib.encoding.base import CodecBase
from grpclib.protocol import Connection, EventsProcessor, H2Protocol
from grpclib.server import Server
from h2.config import DummyLogger, H2Configuration
from h2.connection import ConnectionInputs, H2Connection
from h2.events import Event as H2Event
from h2.events import StreamEnded
from h2.exceptions import FlowControlError, FrameTooLargeError
from h2.stream import StreamInputs
from hyperframe.frame import FRAMES, DataFrame, Frame

from flwr_sdk.net.chunks import EncodedChunks

__all__ = [
    "ENV_FORCE_STOCK",
    "PRIVATE_ACCESSES",
    "TESTED_VERSIONS",
    "ChunkHandoffCodec",
    "GrpclibBody",
    "PrivateAccess",
    "TunedEventsProcessor",
    "TunedH2Connection",
    "bound_port",
    "connection_parts",
    "force_stock_grpclib",
    "install_protocol_factory",
    "installed_versions",
    "internals_problems",
    "internals_usable",
    "read_into",
    "received_status",
    "stream_parts",
]

log = logging.getLogger("flwr_sdk")

#: The distributions whose internals are used, and the versions this module is tested with.
TESTED_VERSIONS: dict[str, str] = {"grpclib": "0.4.9", "h2": "4.4.1"}
#: Set to ``1`` (or ``true`` / ``yes``) to use stock grpclib endpoints regardless.
ENV_FORCE_STOCK = "FLWR_SDK_STOCK_GRPCLIB"


@dataclass(frozen=True)
class PrivateAccess:
    """One attribute of grpclib / h2 / hyperframe used here, and what it is used for."""

    owner: str
    attribute: str
    purpose: str
    private: bool = True


PRIVATE_ACCESSES: tuple[PrivateAccess, ...] = (
    PrivateAccess("grpclib.client.Channel", "_protocol_factory", "install the tuned protocol"),
    PrivateAccess("grpclib.server.Server", "_protocol_factory", "install the tuned protocol"),
    PrivateAccess("grpclib.server.Server", "_server", "the port a started server listens on"),
    PrivateAccess("grpclib.protocol.Connection", "_connection", "h2 connection for new streams"),
    PrivateAccess("grpclib.protocol.Connection", "_transport", "transport for new streams"),
    PrivateAccess("grpclib.protocol.Stream", "_h2_connection", "zero-copy chunked sends"),
    PrivateAccess("grpclib.protocol.Stream", "_transport", "zero-copy chunked sends"),
    PrivateAccess("grpclib.protocol.Buffer", "_acked", "preallocated receives"),
    PrivateAccess("grpclib.protocol.Buffer", "_acked_size", "preallocated receives"),
    PrivateAccess("grpclib.protocol.Buffer", "_unacked", "preallocated receives"),
    PrivateAccess("grpclib.protocol.Buffer", "_eof", "preallocated receives"),
    PrivateAccess("grpclib.protocol.Buffer", "_ack_callback", "flow-control acks on receive"),
    PrivateAccess("grpclib.protocol", "AckedData", "preallocated receives", private=False),
    PrivateAccess("h2.connection.H2Connection", "_frame_dispatch_table", "quiet DATA frames"),
    PrivateAccess("h2.connection.H2Connection", "_receive_frame", "quiet DATA frames"),
    PrivateAccess("h2.connection.H2Connection", "_receive_data_frame", "quiet DATA frames"),
    PrivateAccess("hyperframe.frame.DataFrame", "_body_repr", "quiet DATA frames"),
    PrivateAccess("hyperframe.frame.DataFrame", "__class__", "quiet DATA frames (reassigned)"),
    PrivateAccess("hyperframe.frame.Frame", "__class__", "silent frame reprs (reassigned)"),
    PrivateAccess("hyperframe.frame", "FRAMES", "silent frame reprs", False),
    PrivateAccess("h2.config", "DummyLogger", "silent frame reprs", False),
    PrivateAccess("h2.config.H2Configuration", "logger", "silent frame reprs", False),
    PrivateAccess("h2.connection.H2Connection", "state_machine", "send_data_frame", False),
    PrivateAccess("h2.connection.H2Connection", "streams", "send_data_frame", False),
    PrivateAccess(
        "h2.connection.H2Connection", "outbound_flow_control_window", "send_data_frame", False
    ),
    PrivateAccess("h2.stream.H2Stream", "state_machine", "send_data_frame", False),
    PrivateAccess("h2.stream.H2Stream", "outbound_flow_control_window", "send_data_frame", False),
    PrivateAccess("grpclib.protocol.Stream", "buffer", "preallocated receives", False),
    PrivateAccess("grpclib.protocol.Stream", "window_updated", "chunked sends", False),
    PrivateAccess("grpclib.protocol.Connection", "write_ready", "chunked sends", False),
    PrivateAccess("grpclib.protocol.Connection", "data_send_process", "chunked sends", False),
    PrivateAccess("grpclib.stream", "send_message", "chunked send hand-off", False),
    PrivateAccess("grpclib.client.Stream", "_stream", "statuses sent before a reset"),
    PrivateAccess("h2.connection.H2Connection", "config", "lenient header decoding", False),
    PrivateAccess("grpclib.protocol.Stream", "headers", "statuses sent before a reset", False),
    PrivateAccess("grpclib.protocol.Stream", "trailers", "missing trailers", False),
    PrivateAccess("grpclib.protocol.Stream", "trailers_received", "missing trailers", False),
    PrivateAccess("grpclib.protocol.EventsProcessor", "streams", "missing trailers", False),
    PrivateAccess(
        "grpclib.protocol.EventsProcessor", "process_stream_ended", "missing trailers", False
    ),
)

# --- the guard --------------------------------------------------------------------------------

_forced_stock: bool | None = None
_warned = False


def installed_versions() -> dict[str, str | None]:
    """The installed versions of :data:`TESTED_VERSIONS`' distributions (``None``: not found)."""
    versions: dict[str, str | None] = {}
    for name in TESTED_VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class _NullTransport(asyncio.Transport):
    """A transport that discards what is written (for the probes; never connected)."""

    def write(self, data: Any) -> None:
        pass


def _sample_objects() -> dict[str, object]:
    """One object of every owner in :data:`PRIVATE_ACCESSES` (no I/O, no event loop)."""
    import grpclib.protocol
    import grpclib.stream
    from grpclib.config import Configuration
    from h2 import config as h2_config_module
    from hyperframe import frame as frame_module
    from hyperframe.frame import PingFrame

    h2 = H2Connection(H2Configuration(client_side=True, header_encoding="ascii"))
    h2.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    h2.send_headers(1, headers)
    transport = _NullTransport()
    connection = grpclib.protocol.Connection(h2, transport, config=Configuration())
    stream = grpclib.protocol.Stream(connection, h2, transport, stream_id=1)
    # A server object (never started) on a throwaway loop: grpclib deprecates passing
    # the loop, but asking for the current one would create or require one here.
    loop = asyncio.new_event_loop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server = Server([], loop=loop)
    finally:
        loop.close()
    processor = grpclib.protocol.EventsProcessor(cast(Any, None), connection)
    return {
        "grpclib.client.Channel": Channel,
        "grpclib.client.Stream": _ClientStreamAttributes(),
        "grpclib.protocol.EventsProcessor": processor,
        "grpclib.server.Server": server,
        "grpclib.protocol": grpclib.protocol,
        "grpclib.protocol.Connection": connection,
        "grpclib.protocol.Stream": stream,
        "grpclib.protocol.Buffer": stream.buffer,
        "grpclib.stream": grpclib.stream,
        "h2.connection.H2Connection": h2,
        "h2.stream.H2Stream": h2.streams[1],
        "hyperframe.frame.DataFrame": DataFrame(1, b"x"),
        "hyperframe.frame.Frame": PingFrame(0),
        "hyperframe.frame": frame_module,
        "h2.config": h2_config_module,
        "h2.config.H2Configuration": H2Configuration(),
    }


def _probe_send_handoff() -> str | None:
    """Run grpclib's ``send_message`` on a recording stream; describe what went wrong."""
    from grpclib.stream import send_message

    large = bytearray(b"x" * 32)
    chunks = EncodedChunks((b"ab", large))
    sent: list[tuple[object, bool]] = []

    class Codec(CodecBase):
        __content_subtype__ = "proto"

        def encode(self, message: Any, message_type: Any) -> bytes:
            return GrpclibBody.wrap(chunks)

        def decode(self, data: bytes, message_type: Any) -> Any:
            raise NotImplementedError

    class Recorder:
        async def send_data(self, data: object, end_stream: bool = False) -> None:
            sent.append((data, end_stream))

    coro = send_message(cast(Any, Recorder()), Codec(), None, object, end=True)
    try:
        coro.send(None)
    except StopIteration:
        pass
    else:
        coro.close()
        return "grpclib.stream.send_message suspended on a stream that never blocks"
    if len(sent) != 1:
        return f"grpclib.stream.send_message called send_data {len(sent)} times"
    data, end_stream = sent[0]
    if not isinstance(data, EncodedChunks) or not end_stream:
        return f"grpclib.stream.send_message sent {type(data).__name__}, not EncodedChunks"
    if bytes(data.pieces[0]) != struct.pack(">?I", False, 34) or data.pieces[-1].obj is not large:
        return "grpclib.stream.send_message framed the chunks differently (or copied them)"
    return None


class _ClientStreamAttributes:
    """Stands for a ``grpclib.client.Stream`` in the guard: the attributes its code assigns.

    ``grpclib.client.Stream._stream`` is set in ``send_request`` (not in ``__init__``), so
    the guard looks for the assignment in the method's code instead of on an instance.
    """

    def __getattr__(self, name: str) -> object:
        from grpclib.client import Stream as ClientStream

        if name in ClientStream.send_request.__code__.co_names:
            return True
        raise AttributeError(name)


def _probe_quiet_frames() -> str | None:
    frame = DataFrame(1, b"abc")
    frame.__class__ = _QuietDataFrame
    if "<3 bytes>" not in repr(frame):
        return "hyperframe's DataFrame repr does not use _body_repr"
    table = getattr(H2Connection(), "_frame_dispatch_table", None)
    if not isinstance(table, dict) or DataFrame not in table:
        return "h2's _frame_dispatch_table no longer maps DataFrame"
    unmapped = [cls.__name__ for cls in FRAMES.values() if cls not in table]
    if unmapped:
        return f"h2's _frame_dispatch_table does not map {', '.join(unmapped)}"
    if not isinstance(H2Configuration().logger, DummyLogger):
        return "h2's default logger is no longer its DummyLogger"
    return None


@functools.cache
def internals_problems() -> tuple[str, ...]:
    """Why the tuned endpoints cannot be used with the installed libraries (empty: they can)."""
    problems: list[str] = []
    for name, version in installed_versions().items():
        if version != TESTED_VERSIONS[name]:
            problems.append(f"{name} {version} installed, tested with {TESTED_VERSIONS[name]}")
    try:
        samples = _sample_objects()
    except Exception as exc:  # any failure means "the internals changed"
        return (*problems, f"cannot build grpclib/h2 objects the tuned path uses: {exc!r}")
    for access in PRIVATE_ACCESSES:
        if not hasattr(samples[access.owner], access.attribute):
            problems.append(f"{access.owner}.{access.attribute} is missing")
    for probe in (_probe_send_handoff, _probe_quiet_frames, _probe_lenient_headers):
        try:
            problem = probe()
        except Exception as exc:  # a probe that fails is a problem, not a crash
            problem = f"{probe.__name__} failed: {exc!r}"
        if problem is not None:
            problems.append(problem)
    return tuple(problems)


def force_stock_grpclib(force: bool | None) -> None:
    """Choose the path of endpoints created afterwards (for tests).

    ``True``: stock grpclib; ``False``: tuned whenever the guard allows it (ignoring
    ``FLWR_SDK_STOCK_GRPCLIB``); ``None`` (the default): the environment variable, then
    the guard decide.
    """
    global _forced_stock
    if force is not None and not isinstance(force, bool):
        raise TypeError(f"force must be a bool or None, got {type(force).__name__}")
    _forced_stock = force


def _env_forces_stock() -> bool:
    return os.environ.get(ENV_FORCE_STOCK, "").strip().lower() in {"1", "true", "yes", "on"}


def internals_usable() -> bool:
    """Whether new endpoints use the tuned path (see the module docs)."""
    global _warned
    forced = _forced_stock if _forced_stock is not None else _env_forces_stock()
    if forced:
        return False
    problems = internals_problems()
    if problems:
        if not _warned:
            _warned = True
            log.warning(
                "flwr-sdk: using stock grpclib endpoints (correct but slower for large "
                "messages): %s",
                "; ".join(problems),
            )
        return False
    return True


# --- grpclib endpoints and connections ---------------------------------------------------------


def install_protocol_factory(
    endpoint: Channel | Server, build: Callable[[H2Protocol], H2Protocol]
) -> None:
    """Make ``endpoint`` create its connections' protocols as ``build(<stock protocol>)``.

    Shadows the endpoint's ``_protocol_factory`` with an instance attribute (the class and
    other endpoints are untouched).
    """
    stock_factory: Callable[[], H2Protocol] = endpoint._protocol_factory

    def factory() -> H2Protocol:
        return build(stock_factory())

    # An instance attribute shadows the method (mypy refuses assigning to a method).
    setattr(endpoint, "_protocol_factory", factory)  # noqa: B010


def bound_port(server: Server) -> int:
    """The TCP port a started grpclib ``Server`` listens on (its first socket's).

    Raises:
        RuntimeError: the server is not listening on a socket.

    """
    listener = getattr(server, "_server", None)
    sockets = listener.sockets if isinstance(listener, asyncio.Server) else ()
    if not sockets:
        raise RuntimeError("the gRPC server is not listening")
    return int(sockets[0].getsockname()[1])


def connection_parts(connection: Connection) -> tuple[H2Connection, asyncio.Transport]:
    """The h2 connection and transport of a grpclib ``Connection`` (for a new stream).

    Raises:
        ConnectionResetError: grpclib already closed the connection (it deletes the
            transport then).

    """
    transport: asyncio.Transport | None = getattr(connection, "_transport", None)
    if transport is None:
        raise ConnectionResetError("the connection was closed before the call could start")
    return connection._connection, transport


def stream_parts(stream: Any) -> tuple[Any, asyncio.Transport]:
    """The h2 connection and transport a grpclib ``protocol.Stream`` writes to.

    The h2 connection is typed ``Any``: on tuned endpoints it is a
    :class:`TunedH2Connection` (with ``send_data_frame``).
    """
    return stream._h2_connection, stream._transport


async def read_into(
    buffer: Any, target: memoryview, progress: Callable[[int], None] | None = None
) -> None:
    """Fill ``target`` from a grpclib ``protocol.Buffer`` (what ``read(len(target))`` reads).

    Received chunks are copied into ``target`` and released one by one (and acknowledged
    to the peer's flow control as grpclib does), so no joined copy of the message exists.
    ``progress`` (if given) is told the bytes filled so far after every chunk copied.

    Raises:
        AssertionError: the stream ended before ``len(target)`` bytes arrived (grpclib's
            own error for this case).

    """
    from grpclib.protocol import AckedData

    size = target.nbytes
    filled = 0
    acked = buffer._acked
    while filled < size:
        if acked:
            chunk, chunk_size = acked[0]
            take = min(chunk_size, size - filled)
            target[filled : filled + take] = chunk[:take]
            if take == chunk_size:
                acked.popleft()
            else:
                acked[0] = AckedData(chunk[take:], chunk_size - take)
            buffer._acked_size -= take
            filled += take
            if progress is not None:
                progress(filled)
            continue
        if buffer._eof and buffer._unacked.empty():
            raise AssertionError("Received less data than expected")
        data, data_size, ack_size = await buffer._unacked.get()
        if not ack_size:
            raise AssertionError("Received less data than expected")
        acked.append(AckedData(memoryview(data), data_size))
        buffer._acked_size += data_size
        buffer._ack_callback(ack_size)


def received_status(call: Any) -> tuple[int, str | None] | None:
    """The gRPC status a grpclib client call (``grpclib.client.Stream``) received, if any.

    Reads the trailers, or a trailers-only response's headers, that arrived on the call's
    HTTP/2 stream, also when the stream was reset afterwards (then grpclib itself raises
    only ``StreamTerminatedError``). Returns ``(code, message)`` with the
    ``grpc-message`` percent-decoded, or ``None`` when no ``grpc-status`` arrived or it is
    not a number. Always ``None`` on the stock fallback (:func:`internals_usable` false).
    """
    from grpclib.metadata import decode_grpc_message

    if not internals_usable():
        return None
    stream = getattr(call, "_stream", None)
    if stream is None:
        return None
    for headers in (stream.trailers, stream.headers):
        if not headers:
            continue
        fields = dict(headers)
        status = fields.get("grpc-status")
        if status is None:
            continue
        try:
            code = int(status)
        except ValueError:
            return None
        message = fields.get("grpc-message")
        return code, (decode_grpc_message(message) if message is not None else None)
    return None


class TunedEventsProcessor(EventsProcessor):
    """grpclib's ``EventsProcessor``; a client stream ending without trailers fails at once.

    grpclib waits for trailers after END_STREAM until the call's deadline. Here a client
    stream that ends (END_STREAM on DATA, not on trailers or on a trailers-only response)
    gets empty trailers, so grpclib raises UNKNOWN "Missing grpc-status header" right away.
    """

    def __init__(self, handler: Any, connection: Connection, *, client_side: bool) -> None:
        super().__init__(handler, connection)
        self.client_side = client_side

    def process_stream_ended(self, event: StreamEnded) -> None:
        """Mark the stream's input ended; on a client, supply missing trailers."""
        stream = self.streams.get(event.stream_id) if self.client_side else None
        if (
            stream is not None
            and stream.trailers is None
            and stream.headers is not None
            and "grpc-status" not in dict(stream.headers)
        ):
            stream.trailers = []
            stream.trailers_received.set()
        super().process_stream_ended(event)


# --- the chunked send hand-off -----------------------------------------------------------------


class GrpclibBody:
    """An :class:`EncodedChunks` message as handed to grpclib's ``send_message``.

    grpclib applies two operations to an encoded message: ``len()`` (for the gRPC prefix)
    and ``prefix + message``; here the latter returns the prefixed :class:`EncodedChunks`
    (no copy), which the tuned stream's ``send_data`` writes frame by frame.
    """

    __slots__ = ("chunks",)

    def __init__(self, chunks: EncodedChunks) -> None:
        self.chunks = chunks

    @classmethod
    def wrap(cls, chunks: EncodedChunks) -> bytes:
        """``chunks`` as grpclib's codec interface types it (``bytes``)."""
        return cast(bytes, cls(chunks))

    def __len__(self) -> int:
        """The message size (what grpclib puts in the gRPC prefix)."""
        return len(self.chunks)

    def __radd__(self, prefix: object) -> EncodedChunks:
        """``prefix + self``: the framed message, prefix first, pieces not copied."""
        if not isinstance(prefix, (bytes, bytearray, memoryview)):
            return NotImplemented
        return EncodedChunks((prefix, *self.chunks.pieces))

    def __repr__(self) -> str:
        """Describe the size, not the content."""
        return f"GrpclibBody({self.chunks!r})"


class ChunkHandoffCodec(CodecBase):
    """The codec a flwr-sdk endpoint gives grpclib: wraps the user's codec.

    :class:`EncodedChunks` from the wrapped codec go to grpclib as :class:`GrpclibBody`
    on tuned endpoints (``tuned=True``: sent frame by frame without a join) and joined into
    ``bytes`` on stock ones. Everything else passes through unchanged.
    """

    def __init__(self, codec: CodecBase, *, tuned: bool) -> None:
        self.codec = codec
        self.tuned = tuned

    @property
    def __content_subtype__(self) -> str:
        return self.codec.__content_subtype__

    def encode(self, message: Any, message_type: Any) -> bytes:
        """Encode with the wrapped codec; hand chunked results over as described above."""
        data: object = self.codec.encode(message, message_type)
        if isinstance(data, EncodedChunks):
            return GrpclibBody.wrap(data) if self.tuned else bytes(data)
        return cast(bytes, data)

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Decode with the wrapped codec."""
        return self.codec.decode(data, message_type)


# --- h2 -------------------------------------------------------------------------------------------


class _QuietDataFrame(DataFrame):
    """A received DATA frame whose ``repr`` does not serialize and hex-dump the body."""

    def _body_repr(self) -> str:
        return f"<{len(self.data)} bytes>"


def _silent_repr(frame: Frame) -> str:
    return f"{frame.__class__.__mro__[1].__name__}(stream_id={frame.stream_id})"


def _silent_class(frame_class: type[Frame]) -> type[Frame]:
    """A subclass of ``frame_class`` whose ``repr`` is only its name and stream id."""
    base = _QuietDataFrame if frame_class is DataFrame else frame_class
    name = f"_Silent{frame_class.__name__}"
    return type(name, (base,), {"__repr__": _silent_repr, "__module__": __name__})


#: h2 evaluates ``repr(frame)`` for every received frame, for a trace log line that its
#: default ``DummyLogger`` discards; hyperframe's ``repr`` formats every field and flag.
#: With that logger, received frames are re-classed to these subclasses (same handlers).
_SILENT_FRAMES: dict[type[Frame], type[Frame]] = {
    frame_class: _silent_class(frame_class) for frame_class in FRAMES.values()
}


class TunedH2Connection(H2Connection):
    """An ``h2`` connection that moves DATA frame bodies without copying them.

    * Received ``DataFrame`` objects are re-classed to a subclass with a cheap ``repr``
      before h2 handles them; the subclass is dispatched to the same DATA handler
      (``quiet_data_frames=False`` keeps h2's frames). When the configuration's logger is
      h2's ``DummyLogger`` (it discards h2's trace line ``repr(frame)``, computed for
      every received frame), every known frame class is re-classed too, to a subclass
      whose ``repr`` is only the class name and stream id.
    * Received headers are decoded leniently: with a ``header_encoding`` configured, h2
      is asked for bytes and each name and value is decoded here with that encoding and
      ``errors="backslashreplace"`` (a non-ASCII ``grpc-message`` no longer kills the
      connection; see the module docs).
    * :meth:`send_data_frame` does the bookkeeping of ``send_data`` (checks, state machines,
      flow-control windows) but returns the frame header instead of queuing header and
      body in h2's output buffer, so the caller can hand the body to the transport as the
      view it already is. h2's ``send_data`` copies a body five times on its way out
      (``memoryview.tobytes``, frame body, frame, output ``bytearray``, ``data_to_send``).

    Everything else is stock h2.
    """

    def __init__(
        self, config: H2Configuration | None = None, *, quiet_data_frames: bool = True
    ) -> None:
        encoding: str | None = None
        if config is not None and isinstance(config.header_encoding, str):
            encoding = config.header_encoding
            config = copy.copy(config)
            config.header_encoding = None
        super().__init__(config=config)
        self.event_header_encoding = encoding
        self.quiet_data_frames = quiet_data_frames
        self._frame_dispatch_table[_QuietDataFrame] = self._receive_data_frame
        #: Received frame class -> the class it is re-classed to before h2 handles it.
        self.received_classes: dict[type[Frame], type[Frame]] = {}
        if quiet_data_frames:
            self.received_classes[DataFrame] = _QuietDataFrame
            if isinstance(self.config.logger, DummyLogger):
                self.received_classes.update(_SILENT_FRAMES)
        table = self._frame_dispatch_table
        for original, replacement in self.received_classes.items():
            table[replacement] = table[original]

    def _receive_frame(self, frame: Frame) -> list[H2Event]:
        replacement = self.received_classes.get(frame.__class__)
        if replacement is not None:
            frame.__class__ = replacement
        events: list[H2Event] = super()._receive_frame(frame)
        encoding = self.event_header_encoding
        if encoding is not None:
            for event in events:
                headers = getattr(event, "headers", None)
                if headers:
                    event.headers = [  # type: ignore[attr-defined]
                        (_lenient(name, encoding), _lenient(value, encoding))
                        for name, value in headers
                    ]
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


def _lenient(value: object, encoding: str) -> object:
    """``value`` decoded with ``encoding`` (undecodable bytes escaped); ``str`` unchanged."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(encoding, "backslashreplace")
    return value


def _probe_lenient_headers() -> str | None:
    """Check that h2 hands received headers over as bytes with ``header_encoding=None``."""
    server_config = H2Configuration(client_side=False, header_encoding=None)
    client = TunedH2Connection(H2Configuration(client_side=True, header_encoding="ascii"))
    server = H2Connection(server_config)
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    client.send_headers(1, headers)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200"), (b"grpc-message", b"\xff")], end_stream=True)
    events = client.receive_data(server.data_to_send())
    received = [getattr(event, "headers", None) for event in events]
    if [(":status", "200"), ("grpc-message", "\\xff")] not in received:
        return f"lenient header decoding gave {received!r}"
    return None


#: HTTP/2 frame header: 24-bit length (as 16 + 8 bits), type, flags, 31-bit stream id.
_DATA_HEADER = struct.Struct(">HBBBL")
_DATA_FRAME_TYPE = 0x0
