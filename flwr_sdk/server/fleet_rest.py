"""The Fleet API over HTTP (REST), on aiohttp.

Exactly what a Flower SuperLink's REST Fleet API answers, for the paths of one wire
line's servicer (:meth:`~flwr_sdk.server.fleet_line.FleetLineServicer.rest_routes`;
1.12: ``/api/v0/fleet/{create-node, delete-node, ping, pull-task-ins, push-task-res,
get-run, get-fab}``; 1.15: ``pull-messages`` and ``push-messages`` instead of the
TaskIns/TaskRes paths):

* ``POST`` to a Fleet path with ``Content-Type: application/protobuf`` and ``Accept:
  application/protobuf`` → 200, ``content-type: application/protobuf``, the serialized
  answer (empty body = default message);
* a missing ``Content-Type`` → 400 ``Missing header `Content-Type```; another content
  type → 400 ``Unsupported `Content-Type```; an ``Accept`` that is missing or not exactly
  ``application/protobuf`` → 400 ``Unsupported `Accept```;
* any other path (also ``//api/v0/fleet/get-run``, which the 1.12 client requests) →
  404 ``Not Found``; another method on a Fleet path → 405 ``Method Not Allowed``. The
  one exception is a line's own choice: the 1.15 servicer also routes the
  ``//api/v0/fleet/…`` paths Flower 1.15.2's REST client requests
  (:data:`~flwr_sdk.server.fleet_v1_15.DOUBLE_SLASH_PATHS`), a tolerance for that
  client's bug, not SuperLink behaviour;
* a request the SuperLink fails on (unknown node in delete-node, empty push, unknown
  FAB) → 500 ``Internal Server Error``.

Beyond the SuperLink: the body size is limited (413 ``Payload Too Large``, decided from
``Content-Length`` before reading, or while streaming a chunked body, never buffering
more than the limit) and an undecodable body gets 400 ``Invalid protobuf body`` instead
of a server error. REST has no node authentication (as in Flower).

Stopping is prompt: a request whose body is still being read when the server stops
(or that arrives while it stops) is answered 503 ``Service Unavailable`` at once —
no reply to it was begun, so none is lost — while a request already being answered
gets up to :data:`SHUTDOWN_GRACE` seconds to finish. (aiohttp alone waits up to 60 s
per connection for a handler, e.g. one waiting for the body of a client that stalls: a
300-node REST swarm held a finished run's server for 20 s.)

Why aiohttp: one well-kept package that runs its HTTP server inside the event loop that
already runs the gRPC servers and the driver (no thread, no signal handlers of its own),
lets a handler see the raw request target (``//`` paths stay unnormalised) and stream the
body chunk by chunk, and does not touch the starlette/uvicorn versions that a released
``flwr[rest]`` pins in the same environment.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping

from aiohttp import StreamReader, web

from flwr_sdk.net.chunks import ChunkCursor, EncodedChunks
from flwr_sdk.net.fast_codec import DEFAULT_CHUNK_SIZE, encode_message_chunks
from flwr_sdk.net.framing import read_declared
from flwr_sdk.net.limits import PREALLOCATED_BODY_MIN
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_state import FleetError
from flwr_sdk.server.wire_check import strict_decode

__all__ = ["PROTOBUF", "SHUTDOWN_GRACE", "RestFleetServer", "stream_protobuf"]

log = logging.getLogger("flwr_sdk.server")

PROTOBUF = "application/protobuf"
_CHUNK = 1 << 20

SHUTDOWN_GRACE = 5.0
"""Seconds a stopping server lets a request being answered finish (gRPC's grace too)."""


class _StoppingError(ConnectionError):
    """The server stops while (or before) a request body is read: answer 503."""


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")


class RestFleetServer:
    """An aiohttp server for the REST Fleet API of one wire line.

    ``routes``: HTTP path → the line servicer's typed method
    (:meth:`~flwr_sdk.server.fleet_line.FleetLineServicer.rest_routes`).
    """

    def __init__(self, routes: Mapping[str, FleetRoute], *, max_body_size: int) -> None:
        self.routes = dict(routes)
        self.max_body_size = max_body_size
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._stopping = False
        self._reading: set[StreamReader] = set()  # bodies being read

    def application(self) -> web.Application:
        """The aiohttp application (one catch-all route; dispatch is done here)."""
        app = web.Application(client_max_size=self.max_body_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        """Listen on host:port (0 = any free port); return the port."""
        self._stopping = False
        self._runner = web.AppRunner(
            self.application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0]
        self.port = int(bound[1])
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection.

        Bodies still being read end at once (503); replies being written get
        :data:`SHUTDOWN_GRACE` seconds.
        """
        self._stopping = True
        if self._reading:
            log.info("stopping: %d request bodies still unread answered 503", len(self._reading))
        for content in self._reading:
            # As aiohttp's own shutdown ends a read: its lingering close then stays quiet.
            content.set_exception(asyncio.CancelledError())
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _unavailable(self) -> web.Response:
        """The answer to a request the stopping server will not handle."""
        return _text(503, "Service Unavailable")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except _StoppingError:
            return self._unavailable()

    async def _read_body(self, request: web.Request) -> bytes | memoryview | None:
        """The body, or None when it exceeds the limit (decided before allocating it).

        A body announced by ``Content-Length`` is read into one buffer of that size (a
        read-only view of it is returned); otherwise the chunks are joined. Raises
        :class:`_StoppingError` when the server stops before the body is complete.
        """
        if self._stopping:
            raise _StoppingError("the server is stopping")
        self._reading.add(request.content)
        try:
            return await self._read_limited(request)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and task is not None and not task.cancelling():
                raise _StoppingError("the server is stopping") from None
            raise
        finally:
            self._reading.discard(request.content)

    async def _read_limited(self, request: web.Request) -> bytes | memoryview | None:
        length = request.content_length
        if length is not None and length > self.max_body_size:
            return None
        if length is not None and length >= PREALLOCATED_BODY_MIN:
            return await read_declared(request.content.iter_chunked(_CHUNK), length)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_body_size:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        rpc = self.routes.get(path)
        if rpc is None:
            return _text(404, "Not Found")
        if request.method != "POST":
            return _text(405, "Method Not Allowed")
        content_type = request.headers.get("Content-Type")
        if content_type is None:
            return _text(400, "Missing header `Content-Type`")
        if content_type != PROTOBUF:
            return _text(400, "Unsupported `Content-Type`")
        if request.headers.get("Accept") != PROTOBUF:
            return _text(400, "Unsupported `Accept`")
        try:
            body = await self._read_body(request)
        except ValueError as exc:  # body length differs from its Content-Length
            log.warning("%s: undecodable body: %s", rpc.name, exc)
            return _text(400, "Invalid protobuf body")
        if body is None:
            log.warning("%s: body over the %d-byte limit refused", rpc.name, self.max_body_size)
            return _text(413, f"Payload Too Large (limit {self.max_body_size} bytes)")
        try:
            message = strict_decode(rpc.request_type, body)
        except Exception as exc:
            log.warning("%s: undecodable body: %s", rpc.name, exc)
            return _text(400, "Invalid protobuf body")
        try:
            response = await rpc.call(message)
        except FleetError as exc:
            log.warning("%s failed: %s", rpc.name, exc)
            return _text(500, "Internal Server Error")
        return await stream_protobuf(request, encode_message_chunks(response))


async def stream_protobuf(request: web.Request, body: EncodedChunks) -> web.StreamResponse:
    """A 200 response with ``body`` written piece by piece (tensor bytes not joined)."""
    response = web.StreamResponse(status=200)
    response.content_type = PROTOBUF
    response.content_length = len(body)
    await response.prepare(request)
    cursor = ChunkCursor(body.pieces)
    while piece := cursor.take(DEFAULT_CHUNK_SIZE):
        await response.write(piece)
    await response.write_eof()
    return response
