"""grpc-bidi: Flower's legacy bidirectional stream, ``/flwr.proto.FlowerService/Join``.

The server speaks first and the node answers every ``ServerMessage`` with exactly one
``ClientMessage`` on the same stream. There are no node ids, no run ids and no error
replies: a failed instruction is reported by dropping the stream (the server counts the
round as a failure for this client) and the node joins again. ``ReconnectIns`` ends the
session; the node answers ``DisconnectRes`` and, if asked, comes back after N seconds.

Statuses are never lost: a server that ends ``Join`` with an error status also resets
the stream afterwards (the client never ends its side), and grpclib then reports only
"Stream reset by remote party". Whenever receiving or sending fails, or the stream ends,
the status the server sent (trailers, or a trailers-only answer) is looked up first
(:func:`flwr_sdk.net.grpclib_internals.received_status`) and mapped like any gRPC status
(:func:`~flwr_sdk.transport.grpc_errors.map_grpc_error`: UNAUTHENTICATED /
PERMISSION_DENIED → ``AuthenticationError``, UNAVAILABLE → ``ServerUnavailableError``,
UNKNOWN / INTERNAL / RESOURCE_EXHAUSTED → ``TransientServerError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from flwr_sdk.common.message import Message
from flwr_sdk.errors import ProtocolError, ServerUnavailableError
from flwr_sdk.net.grpclib_internals import received_status
from flwr_sdk.transport.base import Connection, Connector, TransportSettings
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory
from flwr_sdk.transport.grpc_errors import map_grpc_error
from flwr_sdk.wire import bidi
from flwr_sdk.wire.base import FleetLine, Reconnect

log = logging.getLogger("flwr_sdk")

JOIN = bidi.JOIN
#: Seconds to open ``Join``: TCP connect, TLS handshake, request headers written (gRPC's
#: connection-backoff spec uses the same 20 s as its minimum connect timeout). A call
#: that is open is watched by keepalive instead (:mod:`flwr_sdk.net.grpc_tuning`).
CONNECT_TIMEOUT = 20.0


class GrpcBidiConnection(Connection):
    """One ``Join`` stream."""

    supports_error_replies = False

    def __init__(self, factory: GrpcChannelFactory) -> None:
        self._factory = factory
        self._channel = factory.create()
        self._stream: Any = None
        self._closed = False

    @property
    def node_id(self) -> int:
        """grpc-bidi has no node ids (Flower reports -1)."""
        return bidi.BIDI_NODE_ID

    async def open(self) -> None:
        """Start the ``Join`` stream (this is where the TCP/TLS connection is made).

        Raises:
            ServerUnavailableError: no connection within :data:`CONNECT_TIMEOUT` (a
                black-holed address), or the server cannot be reached.

        """
        self._stream = self._channel.request(
            JOIN.grpc_path,
            JOIN.cardinality,
            JOIN.request_type,
            JOIN.response_type,
        )
        # asyncio.wait, not wait_for: wait_for can swallow a cancellation of this task.
        opening = asyncio.ensure_future(self._start_stream())
        interrupted = False
        try:
            await asyncio.wait({opening}, timeout=CONNECT_TIMEOUT)
        except BaseException:  # this task was cancelled: stop opening, drop the channel
            interrupted = True
            raise
        finally:
            if not opening.done():
                opening.cancel()
                await asyncio.wait({opening})
            if interrupted:
                self._closed = True
                self._channel.close()
        try:
            if opening.cancelled():
                raise ServerUnavailableError(
                    f"Join failed: no connection to the server within {CONNECT_TIMEOUT:g} s"
                )
            opening.result()
        except Exception as exc:
            await self.close()
            raise self._error(exc, "Join", connecting=True) from exc

    async def _start_stream(self) -> None:
        await self._stream.__aenter__()
        await self._stream.send_request()

    def _error(self, exc: BaseException, what: str, *, connecting: bool = False) -> Exception:
        status = self._server_status()
        if status is not None:
            exc = status
        return map_grpc_error(
            exc,
            host=self._factory.target.host,
            what=what,
            tls_handshake=connecting and self._factory.uses_tls,
        )

    async def receive(self) -> Message | Reconnect | None:
        """Wait for the next ``ServerMessage``."""
        try:
            server_message = await self._stream.recv_message()
        except Exception as exc:
            raise self._error(exc, "receiving from the Join stream") from exc
        if server_message is None:
            status = self._server_status()
            if status is not None:
                raise self._error(status, "the Join stream")
            raise ServerUnavailableError("the server ended the Join stream")
        instruction = bidi.server_message_to_instruction(server_message)
        if isinstance(instruction, Reconnect):
            await self._say_goodbye()
        return instruction

    def _server_status(self) -> GRPCError | None:
        """The error status the server ended ``Join`` with, if one arrived."""
        if self._stream is None:
            return None
        received = received_status(self._stream)
        if received is None or received[0] == Status.OK.value:
            return None
        code, message = received
        try:
            return GRPCError(Status(code), message)
        except ValueError:  # grpclib's own words: a protocol error, not a server status
            return GRPCError(Status.UNKNOWN, f"Invalid grpc-status: {str(code)!r}")

    async def _say_goodbye(self) -> None:
        try:
            await self._stream.send_message(bidi.disconnect_res(), end=True)
        except Exception as exc:
            log.debug("Could not send DisconnectRes: %s", exc)

    async def send(self, reply: Message) -> None:
        """Answer the last instruction."""
        client_message = bidi.reply_to_client_message(reply)
        try:
            await self._stream.send_message(client_message)
        except ProtocolError:
            raise
        except Exception as exc:
            raise self._error(exc, "sending on the Join stream") from exc

    async def close(self) -> None:
        """Drop the stream and the channel."""
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            # Resets the HTTP/2 stream if it is still open; grpclib raises if the request
            # was never sent or the stream already ended, which is fine here.
            with contextlib.suppress(Exception):
                await self._stream.cancel()
        self._channel.close()


class GrpcBidiConnector(Connector):
    """Opens ``Join`` streams to one legacy Flower server."""

    name = "grpc-bidi"

    def __init__(self, settings: TransportSettings) -> None:
        self._factory = GrpcChannelFactory(settings)

    async def connect(self) -> Connection:
        """Open a new ``Join`` stream."""
        connection = GrpcBidiConnection(self._factory)
        await connection.open()
        return connection


def connector(settings: TransportSettings, line: FleetLine | None) -> Connector:
    """Opens ``Join`` streams; the protocol is the same on every line (``line`` unused)."""
    return GrpcBidiConnector(settings)
