"""A hostile Flower server for tests: speaks grpc-rere, rest and grpc-bidi, badly on purpose.

One server object runs on the test's event loop and answers like a well-behaved
server of one wire line (:class:`~support.hostile_frames.NormalFleet`), except where the
current :class:`~support.hostile_frames.Frame` says otherwise: the first call of each
role the frame names gets the frame's answer instead, once. Answers are raw bytes, so
anything a server could put on the wire can be sent.

* :class:`HostileGrpcServer` — HTTP/2 over plain TCP with the ``h2`` state machine
  directly (no gRPC library in between): the Fleet service paths of the 1.12 and 1.15
  lines (``/flwr.proto.Fleet/<Rpc>``; the pull/push RPCs of the other line are
  ``UNIMPLEMENTED``, as on a real SuperLink) and the grpc-bidi ``Join`` stream
  (``/flwr.proto.FlowerService/Join``: the server speaks first, then answers each
  ``ClientMessage``; its second message is ``ReconnectIns(seconds=0)``).
* :class:`HostileRestServer` — HTTP/1.1 over plain TCP, ``POST /api/v0/fleet/<rpc>``.

Line detection is answered as the real SuperLinks answer it (see
:mod:`flwr_sdk.wire.detect`). Every call is recorded in :attr:`HostileServer.calls` as
``(role, path)`` and its request body in :attr:`HostileServer.bodies`;
:attr:`HostileServer.used` lists the roles whose one-shot answer went out.
:meth:`HostileServer.queue` adds one-shot answers for scenario tests.

Typical use::

    server = HostileGrpcServer()
    await server.start()
    server.use(fuzz_frame("42", "grpc-rere"))
    ... connect a client to server.address ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from flwr_sdk_proto.v1_12.flwr import proto as pb12

from flwr_sdk.wire.base import FleetRpcs

from .hostile_frames import (
    LINES,
    RESPONSE_HEADERS,
    Answer,
    Close,
    Data,
    Frame,
    GoAway,
    GrpcAction,
    GrpcAnswer,
    Headers,
    HttpAnswer,
    NormalFleet,
    Reset,
    grpc_frame,
    grpc_ok,
    grpc_status,
    http_response,
    normal_server_message,
)

__all__ = ["HostileGrpcServer", "HostileRestServer", "HostileServer"]

log = logging.getLogger("flwr_sdk.tests.hostile_server")

JOIN_PATH = "/flwr.proto.FlowerService/Join"
_ROLES = ("register", "unregister", "heartbeat", "pull", "push", "get_run", "get_fab")


def _paths(kind: str) -> dict[str, tuple[str, str]]:
    """Path → (line, role) for every Fleet RPC of every line (shared RPCs: both lines)."""
    table: dict[str, tuple[str, str]] = {}
    for name, line in LINES.items():
        rpcs: FleetRpcs = line.rpcs
        for role in _ROLES:
            rpc = getattr(rpcs, role)
            path = rpc.grpc_path if kind == "grpc" else rpc.rest_path
            if role in ("pull", "push") or path not in table:
                table[path] = (name, role)
    return table


class HostileServer:
    """What both servers share: the current frame, the normal answers, the record."""

    kind = ""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._paths = _paths(self.kind)
        self.frame: Frame | None = None
        self.normal = NormalFleet("1.12")
        self._pending: dict[str, list[Answer]] = {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, bytes]] = []
        self.used: list[str] = []
        self.role_seen: dict[str, asyncio.Event] = {}
        self._connections: set[asyncio.WriteTransport] = set()

    @property
    def address(self) -> str:
        """``host:port`` (gRPC) to connect to."""
        return f"{self.host}:{self.port}"

    def use(self, frame: Frame | None, line: str | None = None) -> None:
        """Serve ``frame`` from now on (None: behave; ``line``: the line when behaving)."""
        self.frame = frame
        chosen = frame.line if frame is not None and frame.line else (line or "1.12")
        self.normal = NormalFleet(chosen, frame.fab if frame is not None else None)
        answers = frame.answers if frame is not None else {}
        self._pending = {role: [answer] for role, answer in answers.items()}
        self.calls.clear()
        self.bodies.clear()
        self.used.clear()
        self.role_seen = {}

    def queue(self, role: str, *answers: Answer) -> None:
        """Answer the next calls of ``role`` with ``answers``, in order, once each."""
        self._pending.setdefault(role, []).extend(answers)

    def answered(self, role: str) -> asyncio.Event:
        """An event set once a call of ``role`` has been answered."""
        return self.role_seen.setdefault(role, asyncio.Event())

    def take(self, role: str) -> Answer | None:
        """The next one-shot answer for ``role``, if any is left."""
        pending = self._pending.get(role)
        if not pending:
            return None
        self.used.append(role)
        return pending.pop(0)

    def route(self, path: str, body: bytes) -> tuple[str, str | None]:
        """``(role, line)`` of a call: ``probe`` for a pull without a body; line None when
        the path belongs to the other line only (answered "absent")."""
        line, role = self._paths.get(path, ("", "unknown"))
        if role in ("pull", "push") and line != self.normal.line:
            return role, None
        if role == "pull" and not body:
            return "probe", line
        return role, line or None

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for transport in list(self._connections):
                transport.abort()  # every stream transport can abort
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None


# ---------------------------------------------------------------------------- gRPC


@dataclass
class _Stream:
    path: str = ""
    body: bytearray = field(default_factory=bytearray)
    actions: list[GrpcAction] = field(default_factory=list)
    headers_sent: bool = False
    ended: bool = False
    join_step: int = 0
    inbound: bytearray = field(default_factory=bytearray)


class HostileGrpcServer(HostileServer):
    """Fleet (1.12 / 1.15) and ``Join`` over HTTP/2, answering raw frames."""

    kind = "grpc"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _GrpcConnection(self, reader, writer)
        self._connections.add(writer.transport)
        try:
            await connection.run()
        finally:
            self._connections.discard(writer.transport)
            writer.transport.abort()

    def unary_answer(self, path: str, body: bytes) -> GrpcAnswer:
        """The answer to one unary Fleet call."""
        role, line = self.route(path, body)
        self.calls.append((role, path))
        self.bodies.append((role, body))
        if line is None:
            return grpc_status(12, b"Method not found!", "UNIMPLEMENTED")
        fuzzed = self.take(role)
        if fuzzed is not None:
            assert isinstance(fuzzed, GrpcAnswer)
            return fuzzed
        if role == "probe" and self.normal.line == "1.15":
            return grpc_status(16, b"Missing authentication metadata")
        return grpc_ok(bytes(self.normal.answer(role)))

    def join_answer(self, step: int) -> list[GrpcAction]:
        """What the server sends at ``step`` of a Join stream (0: on open).

        Normally an instruction on open and ``ReconnectIns(seconds=0)`` after every
        answer; the stream ends (status OK) when the client ends its side.
        """
        role = ("join_first", "join_second")[min(step, 1)]
        self.calls.append((role, JOIN_PATH))
        fuzzed = self.take(role)
        if fuzzed is not None:
            assert isinstance(fuzzed, GrpcAnswer)
            return list(fuzzed.actions)
        return [Data(grpc_frame(normal_server_message(role)))]


class _GrpcConnection:
    """One HTTP/2 connection of :class:`HostileGrpcServer`."""

    def __init__(
        self, server: HostileGrpcServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config)
        self.streams: dict[int, _Stream] = {}
        self.closed = False

    async def run(self) -> None:
        self.h2.initiate_connection()
        await self.flush()
        while not self.closed:
            try:
                data = await self.reader.read(65536)
            except ConnectionError:
                return
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                return
            for event in events:
                self.handle(event)
            self.pump()
            await self.flush()

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers or [])
            stream = self.streams.setdefault(event.stream_id, _Stream())
            stream.path = bytes(headers.get(b":path", b"")).decode("latin1")
            if stream.path == JOIN_PATH:
                stream.actions.extend(self.server.join_answer(0))
                stream.join_step = 1
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.setdefault(event.stream_id, _Stream())
            data = event.data or b""
            with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream.path == JOIN_PATH:
                self.join_data(stream, data)
            else:
                stream.body += data
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.setdefault(event.stream_id, _Stream())
            if stream.path == JOIN_PATH:
                if not stream.ended:
                    stream.actions.append(Headers(((b"grpc-status", b"0"),), end_stream=True))
            else:
                body = bytes(stream.body[5:]) if len(stream.body) >= 5 else b""
                answer = self.server.unary_answer(stream.path, body)
                stream.actions.extend(answer.actions)
                role, _ = self.server.route(stream.path, body)
                self.server.answered(role).set()
        elif isinstance(event, h2.events.StreamReset):
            reset = self.streams.get(event.stream_id)
            if reset is not None:
                reset.actions.clear()
                reset.ended = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def join_data(self, stream: _Stream, data: bytes) -> None:
        """Answer each complete ClientMessage on a Join stream with the next step."""
        stream.inbound += data
        while len(stream.inbound) >= 5:
            length = int.from_bytes(stream.inbound[1:5], "big")
            if len(stream.inbound) < 5 + length:
                return
            message = bytes(stream.inbound[5 : 5 + length])
            del stream.inbound[: 5 + length]
            with contextlib.suppress(Exception):
                if pb12.ClientMessage.parse(message).disconnect_res is not None:
                    continue  # the goodbye to ReconnectIns: wait for the stream to end
            step = stream.join_step
            stream.join_step += 1
            stream.actions.extend(self.server.join_answer(step))

    def pump(self) -> None:
        """Send what each stream has queued, as far as flow control allows."""
        for stream_id, stream in list(self.streams.items()):
            while stream.actions and not self.closed:
                action = stream.actions[0]
                if not self.act(stream_id, stream, action):
                    break
                stream.actions.pop(0)

    def act(self, stream_id: int, stream: _Stream, action: GrpcAction) -> bool:
        """Perform one action; False when it must wait for the flow-control window."""
        try:
            if isinstance(action, Headers):
                if not action.end_stream and stream.headers_sent:
                    return True  # response headers of a Join stream went out already
                pairs: Iterable[tuple[bytes, bytes]] = action.pairs
                if not stream.headers_sent and all(name != b":status" for name, _ in pairs):
                    pairs = (*RESPONSE_HEADERS, *pairs)  # trailers-only needs a :status
                self.h2.send_headers(stream_id, list(pairs), end_stream=action.end_stream)
                stream.headers_sent = True
                stream.ended = stream.ended or action.end_stream
                return True
            if isinstance(action, Data):
                if not stream.headers_sent:
                    self.h2.send_headers(stream_id, list(RESPONSE_HEADERS))
                    stream.headers_sent = True
                return self.send_data(stream_id, stream, action)
            if isinstance(action, Reset):
                self.h2.reset_stream(stream_id, action.code)
                stream.ended = True
                return True
            if isinstance(action, GoAway):
                self.h2.close_connection(action.code)
                self.writer.write(self.h2.data_to_send())
                self.closed = True
                self.writer.transport.abort()
                return True
            if isinstance(action, Close):
                self.closed = True
                self.writer.write(self.h2.data_to_send())
                self.writer.transport.abort()
                return True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            log.debug("stream %d: %s", stream_id, exc)
            stream.actions.clear()
            return False
        raise AssertionError(action)

    def send_data(self, stream_id: int, stream: _Stream, action: Data) -> bool:
        data = action.data
        while data:
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                stream.actions[0] = Data(data, action.end_stream)
                return False
            self.h2.send_data(stream_id, data[:window])
            data = data[window:]
        if action.end_stream:
            self.h2.end_stream(stream_id)
            stream.ended = True
        return True


# ---------------------------------------------------------------------------- REST


class HostileRestServer(HostileServer):
    """The REST Fleet API (``POST /api/v0/fleet/<rpc>``) over HTTP/1.1."""

    kind = "rest"

    @property
    def address(self) -> str:
        """The base URL to connect to."""
        return f"http://{self.host}:{self.port}"

    def answer(self, path: str, body: bytes) -> HttpAnswer:
        """The answer to one POST."""
        role, line = self.route(path, body)
        self.calls.append((role, path))
        self.bodies.append((role, body))
        if line is None:
            return http_response(404, b"Not Found", content_type=b"text/plain")
        fuzzed = self.take(role)
        if fuzzed is not None:
            assert isinstance(fuzzed, HttpAnswer)
            return fuzzed
        return http_response(200, bytes(self.normal.answer(role)))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer.transport)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                path, body = request
                answer = self.answer(path, body)
                role, _ = self.route(path, body)
                writer.write(answer.raw)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                self.answered(role).set()
                if answer.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._connections.discard(writer.transport)
            writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    """One HTTP/1.1 request: ``(path, body)``; None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else "/"
    headers: dict[str, Any] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return path, body
