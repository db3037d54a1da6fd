"""REST transport against a real (tiny, scripted) HTTP/1.1 server on 127.0.0.1.

Checks what goes on the wire (method, single-slash path, headers, body) and how every
kind of answer maps onto flwr_sdk.errors. The real 1.12 SuperLink is in
tests/interop/test_fleet_rest.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb
from support.federation import free_port

from flwr_sdk.errors import (
    MessageTooLargeError,
    ProtocolError,
    ServerUnavailableError,
    TransientServerError,
    TransportError,
)
from flwr_sdk.transport.address import parse_rest_address
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.rest import RestCaller
from flwr_sdk.wire.base import NoNodeAuth

Answer = tuple[int, str, bytes]


async def http_server(answer: Answer, seen: list[dict[str, Any]]) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        seen.append({"method": method, "path": path, "headers": headers, "body": body})
        status, content_type, payload = answer
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, port


def session_for(port: int, max_len: int = 1 << 20) -> RestCaller:
    settings = TransportSettings(
        server_address=f"http://127.0.0.1:{port}",
        max_message_length=max_len,
        root_certificates=None,
        insecure=True,
        authentication_keys=None,
    )
    return RestCaller(parse_rest_address(settings.server_address), settings, NoNodeAuth())


def call(
    answer: Answer, rpc: fleet_api.Rpc, request: Any, max_len: int = 1 << 20
) -> tuple[Any, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def scenario() -> Any:
        server, port = await http_server(answer, seen)
        session = session_for(port, max_len)
        try:
            return await session.call(rpc, request, 5.0)
        finally:
            await session.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario()), seen


REQUEST = pb.PullTaskInsRequest(node=pb.Node(node_id=2**63 + 1))


def test_request_on_the_wire_and_success() -> None:
    reply = pb.GetRunResponse(run=pb.Run(run_id=7, fab_id="a/b"))
    response, seen = call(
        (200, "application/protobuf", bytes(reply)),
        fleet_api.FLEET_GET_RUN,
        pb.GetRunRequest(run_id=7),
    )
    assert response == reply
    (request,) = seen
    assert request["method"] == "POST"
    assert request["path"] == "/api/v0/fleet/get-run"
    assert request["headers"]["content-type"] == "application/protobuf"
    assert request["headers"]["accept"] == "application/protobuf"
    assert request["body"] == bytes(pb.GetRunRequest(run_id=7))


def test_empty_body_is_the_default_message() -> None:
    response, _ = call((200, "application/protobuf", b""), fleet_api.FLEET_PULL_TASK_INS, REQUEST)
    assert response == pb.PullTaskInsResponse()


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ((500, "text/plain", b"Internal Server Error"), TransientServerError, "HTTP 500"),
        ((404, "text/plain", b"Not Found"), TransportError, "HTTP 404"),
        ((503, "text/plain", b"busy"), ServerUnavailableError, "HTTP 503"),
        ((200, "text/plain", b"hello"), ProtocolError, "content-type"),
        ((200, "application/protobuf", b"\x12\x03\x0a"), ProtocolError, "cannot parse"),
        ((200, "application/protobuf", b"\0" * 2000), MessageTooLargeError, "exceeds"),
    ],
)
def test_error_mapping(answer: Answer, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text) as caught:
        call(answer, fleet_api.FLEET_PULL_TASK_INS, REQUEST, max_len=1000)
    if error is TransportError:
        assert not isinstance(caught.value, ServerUnavailableError)


def test_connection_refused_is_unavailable() -> None:
    async def scenario() -> None:
        session = session_for(free_port())
        try:
            await session.call(fleet_api.FLEET_PULL_TASK_INS, REQUEST, 5.0)
        finally:
            await session.close()

    with pytest.raises(ServerUnavailableError):
        asyncio.run(scenario())


def test_oversized_request_is_refused_before_sending() -> None:
    big = pb.GetFabRequest(hash_str="x" * 5000)

    async def scenario() -> None:
        session = session_for(free_port(), max_len=1000)  # nothing listens: never sent
        try:
            await session.call(fleet_api.FLEET_GET_FAB, big, 5.0)
        finally:
            await session.close()

    with pytest.raises(MessageTooLargeError, match="request of"):
        asyncio.run(scenario())
