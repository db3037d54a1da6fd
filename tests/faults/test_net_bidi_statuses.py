"""grpc-bidi: a status the server ends ``Join`` with is never lost (issue 16, "error storm").

A real grpclib server in this process ends ``Join`` with a gRPC status — at once (a
trailers-only answer) or after one instruction (trailers after the message) — and, since
the client has not ended its side, then resets the stream (RST_STREAM), as grpc-core
servers do too. The node must report that status through the typed error the retry
policy decides from (:mod:`flwr_sdk.transport.grpc_errors`), not "Stream reset by remote
party".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from support.hostile_client import client_config

from flwr_sdk.errors import (
    AuthenticationError,
    FlwrSdkError,
    ServerUnavailableError,
    TransientServerError,
)
from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.grpclib_internals import bound_port
from flwr_sdk.transport import connector_for
from flwr_sdk.wire import bidi
from flwr_sdk.wire.base import Reconnect

JOIN = bidi.JOIN

EXPECTED: dict[Status, type[FlwrSdkError]] = {
    Status.UNKNOWN: TransientServerError,
    Status.INTERNAL: TransientServerError,
    Status.RESOURCE_EXHAUSTED: TransientServerError,
    Status.UNAUTHENTICATED: AuthenticationError,
    Status.PERMISSION_DENIED: AuthenticationError,
    Status.UNAVAILABLE: ServerUnavailableError,
}


class JoinEndsWith:
    """A FlowerService servicer whose ``Join`` ends with ``status``.

    With ``after_a_message`` it sends an empty ``ServerMessage`` first (the node answers
    it as an instruction it cannot read, or the status arrives while it reads it).
    """

    def __init__(self, status: Status, *, after_a_message: bool) -> None:
        self.status = status
        self.after_a_message = after_a_message
        self.joins = 0

    async def join(self, stream: Any) -> None:
        self.joins += 1
        if self.after_a_message:
            await stream.send_message(JOIN.response_type())  # an empty ServerMessage
        raise GRPCError(self.status, f"Join refused: {self.status.name} ünïcode")

    def __mapping__(self) -> dict[str, Handler]:
        return {
            JOIN.grpc_path: Handler(
                self.join, Cardinality.STREAM_STREAM, JOIN.request_type, JOIN.response_type
            )
        }


@asynccontextmanager
async def serving(servicer: JoinEndsWith) -> AsyncIterator[str]:
    server = Server([servicer], codec=FastProtoCodec())
    await server.start("127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{bound_port(server)}"
    finally:
        server.close()
        await server.wait_closed()


async def _join_until_error(address: str) -> FlwrSdkError:
    connector = connector_for("grpc-bidi", client_config("grpc-bidi", address).settings, None)
    try:
        connection = await asyncio.wait_for(connector.connect(), 3)
    except FlwrSdkError as exc:
        return exc
    try:
        for _ in range(3):
            instruction = await asyncio.wait_for(connection.receive(), 3)
            assert not isinstance(instruction, Reconnect)
    except FlwrSdkError as exc:
        return exc
    finally:
        await connection.close()
    raise AssertionError("Join never failed")


@pytest.mark.parametrize("after_a_message", [False, True], ids=["trailers-only", "after-message"])
@pytest.mark.parametrize("status", list(EXPECTED), ids=lambda status: status.name)
def test_join_status_survives_the_reset(status: Status, after_a_message: bool) -> None:
    """The error names the status and has the type the retry policy decides from."""

    async def main() -> FlwrSdkError:
        servicer = JoinEndsWith(status, after_a_message=after_a_message)
        async with serving(servicer) as address:
            return await _join_until_error(address)

    error = asyncio.run(main())
    assert type(error) is EXPECTED[status], repr(error)
    assert status.name in str(error), str(error)
    assert "reset" not in str(error).lower(), str(error)
    if isinstance(error, TransientServerError):
        assert error.status == status.name
