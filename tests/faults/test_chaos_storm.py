"""Issue 16, "done when" 2: error storms at Join / CreateNode / PullTaskIns.

The hostile server (``tests/support/hostile_server.py``, as ``StormGrpcServer`` /
``StormRestServer`` of ``support/chaos_run.py``) ends every call of one role with an
error status — gRPC UNKNOWN / INTERNAL, HTTP 500 / 503 — and answers the rest as a 1.12
SuperLink (or legacy server) would. Our client runs as a subprocess (``sdk_client.py``).

* the storm: over ``WINDOW`` seconds the node makes at most :data:`HANDFUL` calls of that
  role in any 1 s window (backoff), and either keeps trying or gives up with a
  ``flwr_sdk.errors`` type (never a raw traceback);
* the budget: with ``max_retries=2, max_wait_time=5`` the node gives up with
  ``RetriesExhaustedError`` within that budget (plus one call's time);
* UNAUTHENTICATED (gRPC 16) fails fast: one call, ``AuthenticationError``, in < 2 s.

Figures printed (``-s``): calls in the window, peak calls in 1 s, how the node ended.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.chaos_run import (
    ServerThread,
    StormGrpcServer,
    StormRestServer,
    pick,
    wait_until,
)
from support.federation import processes, start_sdk_client
from support.hostile_frames import grpc_status, http_response

import flwr_sdk.errors

WINDOW = pick(3.0, 10.0)
"""Seconds of storm over which calls are counted."""
HANDFUL = 5
"""Most calls of the stormed role in any 1 s window."""

STORMS = {
    # id: (transport, role the server fails, answer)
    "bidi-join-unknown": ("grpc-bidi", "join", grpc_status(2, b"storm")),
    "bidi-join-internal": ("grpc-bidi", "join", grpc_status(13, b"storm")),
    "rere-create-unknown": ("grpc-rere", "register", grpc_status(2, b"storm")),
    "rere-pull-internal": ("grpc-rere", "pull", grpc_status(13, b"storm")),
    "rest-create-500": (
        "rest",
        "register",
        http_response(500, b"Internal Server Error", content_type=b"text/plain"),
    ),
    "rest-pull-503": (
        "rest",
        "pull",
        http_response(503, b"Service Unavailable", content_type=b"text/plain"),
    ),
}

MISSING_BACKOFF: dict[str, str] = {}


def _server(transport: str, role: str, answer: object) -> ServerThread:
    if transport == "rest":
        return ServerThread(StormRestServer({role: answer}))  # type: ignore[dict-item]
    return ServerThread(StormGrpcServer({role: answer}))  # type: ignore[dict-item]


@pytest.fixture
def storm_server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    transport, role, answer = STORMS[request.param]
    thread = _server(transport, role, answer)
    try:
        yield thread
    finally:
        thread.close()


def _raised(log: str) -> tuple[str, float] | None:
    found = re.search(r"RAISED (\w+) after ([\d.]+)s", log)
    return None if found is None else (found.group(1), float(found.group(2)))


def _is_sdk_error(name: str) -> bool:
    cls = getattr(flwr_sdk.errors, name, None)
    return isinstance(cls, type) and issubclass(cls, flwr_sdk.errors.FlwrSdkError)


def _address(thread: ServerThread) -> str:
    return thread.server.address


def _params(missing: dict[str, str]) -> list[object]:
    return [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=missing[name])] if name in missing else [],
            id=name,
        )
        for name in STORMS
    ]


@pytest.mark.parametrize("storm_server", _params(MISSING_BACKOFF), indirect=True)
def test_storm_calls_per_second_stay_a_handful(
    storm_server: ServerThread, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    transport, role, _ = STORMS[name]
    server = storm_server.server
    assert isinstance(server, StormGrpcServer | StormRestServer)
    with processes() as procs:
        client = start_sdk_client(tmp_path, _address(storm_server), 0, "--transport", transport)
        procs.append(client)
        wait_until(lambda: bool(server.times.get(role)), 30, f"a first {role} call")
        first = server.times[role][0]
        deadline = first + WINDOW
        while time.monotonic() < deadline and client.proc.poll() is None:
            time.sleep(0.1)
        calls, peak = server.rate(role, first, deadline)
        code = client.proc.poll()
        log = client.output()
    raised = _raised(log)
    figures = {
        "storm": name,
        "window s": WINDOW,
        "calls": calls,
        "calls/s": round(calls / WINDOW, 1),
        "peak calls in 1 s": int(peak),
        "ended": "still retrying" if code is None else f"exit {code}, {raised}",
    }
    print(f"\nstorm {name}: {figures}")
    assert peak <= HANDFUL, figures
    assert calls >= 2 or code is not None, figures  # it retried, or it gave up
    if code is not None:
        assert raised is not None and _is_sdk_error(raised[0]), (figures, log)
        assert "Traceback" not in log, log


MISSING_BUDGET: dict[str, str] = {}


@pytest.mark.parametrize("storm_server", _params(MISSING_BUDGET), indirect=True)
def test_storm_gives_up_within_the_budget(
    storm_server: ServerThread, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    transport, role, _ = STORMS[name]
    server = storm_server.server
    assert isinstance(server, StormGrpcServer | StormRestServer)
    budget = 5.0
    with processes() as procs:
        client = start_sdk_client(
            tmp_path,
            _address(storm_server),
            0,
            "--transport",
            transport,
            "--max-retries",
            "2",
            "--max-wait-time",
            str(budget),
        )
        procs.append(client)
        started = time.monotonic()
        try:
            code: int | None = client.wait(timeout=budget + 10)
        except AssertionError:
            code = None
        took = time.monotonic() - started
        log = client.output()
    raised = _raised(log)
    calls = len(server.times.get(role, []))
    figures = {
        "storm": name,
        "exit": code,
        "raised": raised,
        "process s": round(took, 2),
        f"{role} calls": calls,
    }
    print(f"\ngive up {name}: {figures}")
    assert code == 3, (figures, log)
    assert raised is not None and raised[0] == "RetriesExhaustedError", (figures, log)
    assert raised[1] <= budget + 2.0, figures
    assert calls <= 3 + 1, figures  # max_retries=2: three attempts (one more if a pull
    # that failed after a registration counts a fresh session)


UNAUTHENTICATED = {
    "bidi-join-unauthenticated": ("grpc-bidi", "join"),
    "rere-create-unauthenticated": ("grpc-rere", "register"),
    "rere-pull-unauthenticated": ("grpc-rere", "pull"),
}
MISSING_AUTH: dict[str, str] = {}


@pytest.mark.exclusive  # times how fast the error is raised
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=[pytest.mark.xfail(strict=True, reason=MISSING_AUTH[n])]
            if n in MISSING_AUTH
            else [],
        )
        for n in UNAUTHENTICATED
    ],
)
def test_unauthenticated_fails_fast(tmp_path: Path, name: str) -> None:
    transport, role = UNAUTHENTICATED[name]
    thread = ServerThread(StormGrpcServer({role: grpc_status(16, b"not allowed")}))
    try:
        with processes() as procs:
            client = start_sdk_client(tmp_path, thread.server.address, 0, "--transport", transport)
            procs.append(client)
            started = time.monotonic()
            try:
                code: int | None = client.wait(timeout=10)
            except AssertionError:
                code = None
            took = time.monotonic() - started
            log = client.output()
        calls = len(thread.server.times.get(role, []))  # type: ignore[attr-defined]
    finally:
        thread.close()
    raised = _raised(log)
    figures = {"case": name, "exit": code, "raised": raised, "s": round(took, 2), "calls": calls}
    print(f"\nunauthenticated {name}: {figures}")
    assert code == 3, (figures, log)
    assert raised is not None and raised[0] == "AuthenticationError", (figures, log)
    assert calls == 1, figures
    assert raised[1] < 2.0, figures
