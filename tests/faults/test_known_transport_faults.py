"""Faults of transport code that the fault suite found, each reproduced on its own.

A new fault gets an ``xfail(strict=True)`` test here: it states the behaviour we want,
fails because of the file and function its reason names, and starts *passing* — which
then fails the suite — once that code is fixed, so whoever fixes it removes the marker
(and, for faults the seeded fuzz meets, the entry in ``KNOWN`` of test_hostile_frames.py).
tests/faults/README.md lists them with the fix each needs. Every fault listed there is
fixed now; these tests keep it so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from support.hostile_client import client_config
from support.hostile_frames import (
    RESPONSE_HEADERS,
    Close,
    Data,
    Frame,
    GrpcAnswer,
    Headers,
    grpc_frame,
    grpc_ok,
    grpc_status,
)
from support.hostile_server import HostileGrpcServer

from flwr_sdk.errors import FlwrSdkError, ProtocolError, TransientServerError
from flwr_sdk.transport import connector_for
from flwr_sdk.transport.fleet_session import FleetSession

HOLD = GrpcAnswer("no answer at all", ())
"""Leave the call unanswered (the stream stays open)."""


def with_server(
    answers: dict[str, GrpcAnswer],
    body: Callable[[HostileGrpcServer, list[BaseException]], Awaitable[Any]],
    line: str = "1.12",
) -> list[BaseException]:
    """Run ``body`` against a hostile gRPC server serving ``answers`` once each.

    Returns what reached the event loop's exception handler.
    """
    handled: list[BaseException] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: handled.append(ctx["exception"]))
        server = HostileGrpcServer()
        await server.start()
        server.use(Frame("known", "grpc-rere", line, dict(answers)))
        try:
            await body(server, handled)
        finally:
            await server.close()

    asyncio.run(main())
    return handled


async def open_session(server: HostileGrpcServer) -> FleetSession:
    connector = connector_for(
        "grpc-rere", client_config("grpc-rere", server.address).settings, None
    )
    session = await connector.connect()
    assert isinstance(session, FleetSession)
    return session


def test_response_without_trailers_fails_at_once() -> None:
    """CreateNode answered with a message and END_STREAM but no grpc-status."""
    answer = GrpcAnswer(
        "no trailers",
        (Headers(RESPONSE_HEADERS), Data(grpc_frame(b"\x0a\x02\x08\x05"), end_stream=True)),
    )

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        with pytest.raises(FlwrSdkError):
            await asyncio.wait_for(open_session(server), 3)

    with_server({"register": answer}, body)


def test_non_ascii_status_message_keeps_the_status() -> None:
    """CreateNode refused with INTERNAL and a grpc-message that is not ASCII."""
    answer = grpc_status(13, bytes(range(0x80, 0x90)))
    failures: list[BaseException] = []

    async def body(server: HostileGrpcServer, handled: list[BaseException]) -> None:
        try:
            await asyncio.wait_for(open_session(server), 3)
        except FlwrSdkError as exc:
            failures.append(exc)
        await asyncio.sleep(0.05)

    handled = with_server({"register": answer}, body)
    assert not handled, handled  # nothing reaches asyncio's "Fatal error" path
    # The server's status, not "Connection lost": INTERNAL is a transient server error.
    assert failures and isinstance(failures[0], TransientServerError), failures
    assert failures[0].status == "INTERNAL"
    assert "INTERNAL" in str(failures[0]) and "\\x80" in str(failures[0])


def test_close_after_the_connection_died_under_a_ping_is_prompt() -> None:
    """Ping unanswered, the pull's answer cut off mid-frame: close() right away."""
    cut = GrpcAnswer("cut", (Headers(RESPONSE_HEADERS), Data(b"\x00\x00\x00"), Close()))

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        session = await open_session(server)
        with pytest.raises(FlwrSdkError):
            await session.receive()  # at once, as the node loop does: the Ping goes second
        # Close at once, in the same task, as a caller's finally: block does; a
        # watchdog cancels this task after 2 s (close() swallows that, see above).
        task = asyncio.current_task()
        assert task is not None
        watchdog = asyncio.get_running_loop().call_later(2, task.cancel)
        started = time.monotonic()
        try:
            await session.close()
        finally:
            watchdog.cancel()
        overran = time.monotonic() - started >= 2
        alive = [
            t for t in asyncio.all_tasks() if t.get_name() == "flwr-sdk-heartbeat" and not t.done()
        ]
        for task in alive:
            task.cancel()
        if alive:
            await asyncio.wait(alive, timeout=2)
        assert not overran and not alive

    with_server({"heartbeat": HOLD, "pull": cut}, body)


def test_undecodable_create_node_answer_is_a_protocol_error() -> None:
    """``0d 01 00 00 00`` as a CreateNodeResponse."""

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(open_session(server), 3)

    with_server({"register": grpc_ok(b"\x0d\x01\x00\x00\x00")}, body)


def test_truncated_grpc_message_is_a_protocol_error() -> None:
    """The prefix declares 100 bytes, 4 come, then trailers with status 0."""
    answer = GrpcAnswer(
        "short",
        (
            Headers(RESPONSE_HEADERS),
            Data(grpc_frame(b"\x0a\x02\x08\x05", declared=100)),
            Headers(((b"grpc-status", b"0"),), end_stream=True),
        ),
    )

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(open_session(server), 3)

    with_server({"register": answer}, body)


def test_compressed_flag_is_a_protocol_error() -> None:
    """CreateNode's answer flagged as compressed."""
    answer = GrpcAnswer(
        "compressed",
        (
            Headers(RESPONSE_HEADERS),
            Data(grpc_frame(b"\x0a\x02\x08\x05", compressed=1)),
            Headers(((b"grpc-status", b"0"),), end_stream=True),
        ),
    )

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(open_session(server), 3)

    with_server({"register": answer}, body)


def test_malformed_ping_answer_does_not_end_the_heartbeat() -> None:
    """The first Ping answered with ``success`` as a list; a second Ping must follow."""
    malformed = grpc_ok(b"\x0a\x02\x08\x01")  # field 1 length-delimited: success=[True, True]

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        session = await open_session(server)
        try:
            await asyncio.wait_for(server.answered("heartbeat").wait(), 2)
            await asyncio.sleep(1.5)  # the first backoff wait is at most 1 s
            pings = [call for call in server.calls if call[0] == "heartbeat"]
            assert len(pings) >= 2, server.calls
        finally:
            await session.close()

    with_server({"heartbeat": malformed}, body)


def test_malformed_get_run_answer_means_an_empty_run_config() -> None:
    """GetRun answered with a Run whose override_config holds an empty Scalar."""
    run = pb12.Run(run_id=5, override_config={"lr": pb12.Scalar()})
    malformed = grpc_ok(bytes(pb12.GetRunResponse(run=run)))

    async def body(server: HostileGrpcServer, _: list[BaseException]) -> None:
        session = await open_session(server)
        try:
            info = await session.run_info(5)
            assert dict(info.run_config) == {}
        finally:
            await session.close()

    with_server({"get_run": malformed}, body)
