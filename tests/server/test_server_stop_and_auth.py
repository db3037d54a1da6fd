"""The reference server's signed-call check (cached keys) and its prompt REST stop."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_rest import PROTOBUF, RestFleetServer
from flwr_sdk.server.node_auth_v1_42 import verify_signed_call
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthRefusedError,
    SignedTimestampAuth,
    public_key_pem,
    verify_call,
)


def _outcome(check: object, metadata: dict[str, str | bytes]) -> object:
    try:
        return check(metadata)  # type: ignore[operator]
    except AuthRefusedError as exc:
        return exc.reason


def test_the_cached_check_answers_the_same_call_after_call() -> None:
    """Each case twice (the second with the key already loaded): the same, expected answer."""
    auth = SignedTimestampAuth(None)
    good = dict(auth.call_metadata(None, None))  # type: ignore[arg-type]
    other = dict(SignedTimestampAuth(None).call_metadata(None, None))  # type: ignore[arg-type]
    rsa_pem = public_key_pem(rsa.generate_private_key(65537, 2048).public_key())  # type: ignore[arg-type]
    old = (
        datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    ).isoformat()
    cases: list[dict[str, str | bytes]] = [
        good,
        {**good, SIGNATURE_HEADER: other[SIGNATURE_HEADER]},  # another key's signature
        {**good, PUBLIC_KEY_HEADER: other[PUBLIC_KEY_HEADER]},  # another key
        {**good, PUBLIC_KEY_HEADER: b"not a key"},
        {**good, PUBLIC_KEY_HEADER: rsa_pem},
        {**good, TIMESTAMP_HEADER: old},  # signed by nobody: the signature fails first
        {k: v for k, v in good.items() if k != TIMESTAMP_HEADER},
    ]
    expected = [good[PUBLIC_KEY_HEADER], *["Invalid signature"] * 5]
    expected.append("Missing authentication metadata")
    for _ in range(2):
        assert [_outcome(verify_call, case) for case in cases] == expected


def test_windows_of_both_lines() -> None:
    """A 60-s-old signed stamp: too old for 1.15 (15 s), fine for 1.42 (305 s)."""
    auth = SignedTimestampAuth(
        None,
        clock=lambda: datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60),
    )
    metadata = dict(auth.call_metadata(None, None))  # type: ignore[arg-type]
    with pytest.raises(AuthRefusedError, match="Invalid timestamp"):
        verify_call(metadata)
    assert verify_signed_call(metadata) == auth.public_key_pem
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    with pytest.raises(AuthRefusedError, match="Invalid timestamp"):
        verify_signed_call(metadata, now=ahead + datetime.timedelta(seconds=400))


async def _request(port: int, path: str, body: bytes, declared: int) -> bytes:
    """Send a POST declaring ``declared`` body bytes but sending ``body``; the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\n"
        f"Accept: {PROTOBUF}\r\nContent-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    try:
        return await reader.read(4096)
    finally:
        writer.close()


def test_rest_stop_ends_unread_bodies_and_finishes_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stalled body gets 503 at once, quietly; a reply being prepared is still sent."""
    with caplog.at_level(logging.INFO):
        asyncio.run(_stop_while_reading_and_answering())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "1 request bodies still unread answered 503" in caplog.text


async def _stop_while_reading_and_answering() -> None:
    answering = asyncio.Event()

    async def slow_ping(request: pb.PingRequest) -> pb.PingResponse:
        answering.set()
        await asyncio.sleep(0.5)
        return pb.PingResponse(success=True)

    server = RestFleetServer(
        {"/ping": FleetRoute("Ping", pb.PingRequest, slow_ping)}, max_body_size=1 << 20
    )
    port = await server.start("127.0.0.1", 0, None)
    stalled = asyncio.create_task(_request(port, "/ping", b"\x08", declared=10))
    answered = asyncio.create_task(_request(port, "/ping", b"", declared=0))
    await asyncio.wait_for(answering.wait(), 10)
    await asyncio.sleep(0.1)  # the stalled request's handler waits for its body
    started = time.monotonic()
    await server.stop()
    took = time.monotonic() - started
    assert (await stalled).startswith(b"HTTP/1.1 503 ")
    reply = await answered
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(bytes(pb.PingResponse(success=True)))
    assert took < 3.0  # aiohttp's own wait for the stalled body: 60 s
