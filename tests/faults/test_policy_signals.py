"""SIGTERM within 1 s in every state of the retry policy, against in-process servers only.

The same states as test_chaos_signals.py (which uses real Flower servers, marked
``interop``), here against the hostile / storm servers of tests/support so that they run
with the fast fault suite: our client (``sdk_client.py``) runs as a subprocess, is
brought into one state, gets SIGTERM, and the time until the process has exited is
measured (code 0: a stop signal is a normal end).

* ``backoff``: nothing listens; the node sleeps between connection attempts;
* ``connecting``: a socket that accepts and never answers (TCP up, no HTTP/2, no HTTP);
* ``storm``: every Join / PullTaskIns ends with UNKNOWN or INTERNAL (the node backs off);
* ``fit``: inside a 30 s ``fit``;
* ``closing``: inside a 30 s ``fit`` while DeleteNode will get no answer (the close
  runs into its grace).

Figures printed (``-s``): seconds from SIGTERM to exit per state and transport.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chaos_run import ServerThread, StormGrpcServer, StormRestServer, wait_until
from support.federation import Process, free_port, processes, start_sdk_client
from support.hostile_frames import GrpcAnswer, grpc_ok, grpc_status, http_response, instruction

pytestmark = pytest.mark.exclusive  # times the exit after SIGTERM

BOUND = 1.0
"""Seconds from SIGTERM to the process's exit, at most."""
HOLD = GrpcAnswer("no answer at all", ())
TRANSPORTS = ("grpc-bidi", "grpc-rere", "rest")


def _address(transport: str, hostport: str) -> str:
    return f"http://{hostport}" if transport == "rest" and "//" not in hostport else hostport


def _train_pull(server: StormGrpcServer | StormRestServer) -> bytes:
    normal = server.normal
    return bytes(normal.pull_response([normal.wire_instruction(instruction("train"))]))


class TrainingRestServer(StormRestServer):
    """A REST 1.12 Fleet whose node pulls get a train instruction."""

    def answer(self, path: str, body: bytes) -> Any:
        if path.endswith("/pull-task-ins") and body:
            self.stamp("pull")
            return http_response(200, _train_pull(self))
        return super().answer(path, body)


def _training(server: StormGrpcServer | StormRestServer) -> StormGrpcServer | StormRestServer:
    """``server``, with every node pull answered by a train instruction."""
    if isinstance(server, StormGrpcServer):
        server.storm.setdefault("pull", grpc_ok(_train_pull(server)))
    return server


def _sigterm(client: Process, state: str, transport: str) -> float:
    """SIGTERM ``client``; seconds until it exited. Asserts a clean, prompt exit."""
    assert client.proc.poll() is None, client.output()
    started = time.monotonic()
    client.signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        client.proc.wait(timeout=BOUND + 9)
    took = time.monotonic() - started
    code = client.proc.poll()
    print(f"\nSIGTERM {state} {transport}: exit {code} after {took:.2f} s")
    log = client.output()
    assert code is not None, f"still running {took:.1f} s after SIGTERM:\n{log}"
    assert took <= BOUND, f"exited {took:.2f} s after SIGTERM (bound {BOUND} s):\n{log}"
    assert code == 0, log
    return took


@contextlib.contextmanager
def _server(server: StormGrpcServer | StormRestServer) -> Iterator[str]:
    thread = ServerThread(server)
    try:
        yield server.address
    finally:
        thread.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_in_backoff(tmp_path: Path, transport: str) -> None:
    with processes() as procs:
        client = start_sdk_client(
            tmp_path, _address(transport, f"127.0.0.1:{free_port()}"), 0, "--transport", transport
        )
        procs.append(client)
        client.wait_for_output("retrying in", 30)
        time.sleep(0.2)
        _sigterm(client, "backoff", transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_while_connecting_to_a_silent_socket(tmp_path: Path, transport: str) -> None:
    with socket.socket() as silent, processes() as procs:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever answers
        port = silent.getsockname()[1]
        client = start_sdk_client(
            tmp_path, _address(transport, f"127.0.0.1:{port}"), 0, "--transport", transport
        )
        procs.append(client)
        time.sleep(1.5)
        _sigterm(client, "connecting", transport)


STORMS = {
    "grpc-bidi": ("join", grpc_status(2, b"storm")),
    "grpc-rere": ("pull", grpc_status(13, b"storm")),
    "rest": ("pull", http_response(500, b"storm", content_type=b"text/plain")),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_during_a_storm(tmp_path: Path, transport: str) -> None:
    role, answer = STORMS[transport]
    server: StormGrpcServer | StormRestServer = (
        StormRestServer({role: answer})  # type: ignore[dict-item]
        if transport == "rest"
        else StormGrpcServer({role: answer})  # type: ignore[dict-item]
    )
    with _server(server) as address, processes() as procs:
        client = start_sdk_client(
            tmp_path, _address(transport, address), 0, "--transport", transport
        )
        procs.append(client)
        wait_until(
            lambda: len(server.times.get(role, [])) >= 2, 30, f"the {role} storm", alive=(client,)
        )
        time.sleep(0.3)
        calls, peak = server.rate(role, 0.0, time.monotonic())
        print(f"\nstorm {transport}: {calls} {role} calls, peak {peak:g} in 1 s")
        assert peak <= 5
        _sigterm(client, "storm", transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_in_fit(tmp_path: Path, transport: str) -> None:
    server = _training(TrainingRestServer({}) if transport == "rest" else StormGrpcServer({}))
    with _server(server) as address, processes() as procs:
        client = start_sdk_client(
            tmp_path, _address(transport, address), 0, "--transport", transport, "--fit-delay", "30"
        )
        procs.append(client)
        client.wait_for_output("FIT round", 30)
        time.sleep(0.5)
        _sigterm(client, "fit", transport)


def test_sigterm_while_delete_node_gets_no_answer(tmp_path: Path) -> None:
    server = _training(StormGrpcServer({"unregister": HOLD}))
    with _server(server) as address, processes() as procs:
        client = start_sdk_client(
            tmp_path, address, 0, "--transport", "grpc-rere", "--fit-delay", "30"
        )
        procs.append(client)
        client.wait_for_output("FIT round", 30)
        time.sleep(0.3)
        _sigterm(client, "closing", "grpc-rere")
        assert "unregister" in server.times, server.times  # DeleteNode was tried
