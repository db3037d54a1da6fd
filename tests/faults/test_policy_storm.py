"""The retry table against a hostile server, in process (issue 16, "done when" 2 and 4).

``start_client_async`` runs against tests/support/hostile_server.py (gRPC and REST, the
1.12 line) with transient errors queued on one role:

* "database is locked": a SuperLink that answers PullTaskIns with UNKNOWN "database is
  locked" (HTTP 500 on REST) a few times does not make the node give up; the round
  completes, after backoff waits (``max_retries=None``);
* transient errors are bounded: the same answer for ever ends the node with
  ``RetriesExhaustedError`` after 1 + TRANSIENT_RETRIES calls, even without
  ``max_retries``;
* storms at CreateNode and PullTaskIns: at most a handful of calls in any second, and
  ``max_wait_time`` ends the node with ``RetriesExhaustedError`` in time;
* UNAUTHENTICATED at CreateNode: one call, ``AuthenticationError`` at once.

Figures printed (``-s``): calls, peak calls in 1 s, how long the node took.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.hostile_frames import Frame, grpc_status, http_response
from support.hostile_server import HostileGrpcServer, HostileRestServer

from flwr_sdk import start_client_async
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.errors import AuthenticationError, RetriesExhaustedError, TransientServerError
from flwr_sdk.transport.fleet_session import FleetSession
from flwr_sdk.transport.retry import TRANSIENT_RETRIES

HANDFUL = 5
"""Most calls of a stormed role in any 1 s window."""


class Client(NumPyClient):
    def get_properties(self, config: Any) -> dict[str, Any]:
        return {"ok": True}


def _locked(transport: str) -> Any:
    if transport == "rest":
        return http_response(500, b"database is locked", content_type=b"text/plain")
    return grpc_status(2, b"database is locked")


def _server(transport: str) -> HostileGrpcServer | HostileRestServer:
    return HostileRestServer() if transport == "rest" else HostileGrpcServer()


def _address(transport: str, server: HostileGrpcServer | HostileRestServer) -> str:
    return (
        server.address
        if "//" in server.address or transport != "rest"
        else (f"http://{server.address}")
    )


async def _node(
    server: HostileGrpcServer | HostileRestServer,
    transport: str,
    *,
    until: Any,
    limit: float,
    **kwargs: Any,
) -> tuple[BaseException | None, float]:
    """Run a node until ``until()`` holds, it ends, or ``limit`` s pass; (error, seconds)."""
    started = time.monotonic()
    task = asyncio.create_task(
        start_client_async(
            server_address=_address(transport, server),
            client=Client(),
            transport=transport,
            **kwargs,
        )
    )
    while not task.done() and not until() and time.monotonic() - started < limit:
        await asyncio.sleep(0.01)
    took = time.monotonic() - started
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return None, took
    except BaseException as exc:
        return exc, took
    return None, took


_PATHS = {"pull": ("PullTaskIns", "pull-task-ins"), "push": ("PushTaskRes", "push-task-res")}


def _count(server: HostileGrpcServer | HostileRestServer, role: str) -> int:
    """Calls of ``role`` on the 1.12 line (line detection's probes of 1.15 not counted)."""
    paths = _PATHS.get(role)
    return sum(
        1 for r, path in server.calls if r == role and (paths is None or path.endswith(paths))
    )


class Stamped(list[Any]):
    """A call list that also notes when each call of one role came."""

    def __init__(self, role: str, times: list[float]) -> None:
        super().__init__()
        self.role, self.times = role, times

    def append(self, call: Any) -> None:
        paths = _PATHS.get(self.role)
        if call[0] == self.role and (paths is None or call[1].endswith(paths)):
            self.times.append(time.monotonic())
        super().append(call)


@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_database_is_locked_a_few_times_and_the_round_completes(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FleetSession, "poll_interval", 0.01)

    async def scenario() -> tuple[Any, float, int]:
        server = _server(transport)
        await server.start()
        server.use(Frame("locked", transport, "1.12"))
        server.queue("pull", *[_locked(transport)] * 3)
        try:
            error, took = await _node(
                server, transport, until=lambda: _count(server, "push") >= 1, limit=30
            )
        finally:
            await server.close()
        return error, took, _count(server, "pull")

    error, took, pulls = asyncio.run(scenario())
    print(f"\nlocked {transport}: {pulls} pulls, round answered after {took:.2f} s")
    assert error is None, error
    assert pulls >= 4  # three locked answers, then the instruction


@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_a_transient_error_for_ever_is_given_up_on(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FleetSession, "poll_interval", 0.01)
    monkeypatch.setattr("flwr_sdk.transport.retry.MAX_WAIT", 0.2)  # short waits, same count

    async def scenario() -> tuple[Any, float, int]:
        server = _server(transport)
        await server.start()
        server.use(Frame("locked", transport, "1.12"))
        server.queue("pull", *[_locked(transport)] * 100)
        try:
            error, took = await _node(server, transport, until=lambda: False, limit=30)
        finally:
            await server.close()
        return error, took, _count(server, "pull")

    error, took, pulls = asyncio.run(scenario())
    print(f"\nlocked for ever {transport}: {pulls} pulls, gave up after {took:.2f} s")
    assert isinstance(error, RetriesExhaustedError), error
    assert isinstance(error.__cause__, TransientServerError)
    assert pulls == TRANSIENT_RETRIES + 1


STORMS = {
    "rere-create-unknown": ("grpc-rere", "register", grpc_status(2, b"storm")),
    "rere-pull-internal": ("grpc-rere", "pull", grpc_status(13, b"storm")),
    "rest-create-500": ("rest", "register", http_response(500, b"x", content_type=b"text/plain")),
    "rest-pull-503": ("rest", "pull", http_response(503, b"x", content_type=b"text/plain")),
}


@pytest.mark.parametrize("name", list(STORMS))
def test_storm_calls_stay_a_handful_and_max_wait_time_ends_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, role, answer = STORMS[name]
    monkeypatch.setattr(FleetSession, "poll_interval", 0.01)
    budget = 3.0

    async def scenario() -> tuple[Any, float, list[float]]:
        server = _server(transport)
        await server.start()
        server.use(Frame("storm", transport, "1.12"))
        server.queue(role, *[answer] * 1000)
        times: list[float] = []
        server.calls = Stamped(role, times)
        try:
            error, took = await _node(
                server, transport, until=lambda: False, limit=budget + 5, max_wait_time=budget
            )
        finally:
            await server.close()
        return error, took, times

    error, took, times = asyncio.run(scenario())
    peak = max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)
    print(f"\nstorm {name}: {len(times)} {role} calls in {took:.2f} s, peak {peak} in 1 s")
    assert peak <= HANDFUL
    assert isinstance(error, RetriesExhaustedError), error
    assert took <= budget + 1.0


@pytest.mark.exclusive  # times how fast the error is raised
def test_unauthenticated_at_create_node_fails_fast() -> None:
    async def scenario() -> tuple[Any, float, int]:
        server = HostileGrpcServer()
        await server.start()
        server.use(Frame("auth", "grpc-rere", "1.12"))
        server.queue("register", *[grpc_status(16, b"Access denied")] * 10)
        try:
            error, took = await _node(server, "grpc-rere", until=lambda: False, limit=10)
        finally:
            await server.close()
        return error, took, _count(server, "register")

    error, took, calls = asyncio.run(scenario())
    assert isinstance(error, AuthenticationError), error
    assert calls == 1 and took < 2.0
