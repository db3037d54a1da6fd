"""``flwr-sdk client`` against ``flwr-sdk server``: what the person running it sees.

Real processes, no mocks: the reference server from the command line, the client from the
command line with an app of ``cli_apps.py``. On a terminal (a pty) a 64 MiB round shows
per-round lines and rich's transfer progress bar; piped, plain lines without control
codes; a client whose ``fit`` fails makes the command exit 1, and ``--fail-fast`` stops
it at the first failure.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.federation import REPO, Process, free_port, processes, sdk_env, wait_for_port

HERE = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ONE_NODE = ("--min-clients", "1")


def _env() -> dict[str, str]:
    return {**sdk_env(), "PYTHONPATH": str(HERE)}


def _server(tmp: Path, port: int, *extra: str) -> Process:
    args = [sys.executable, "-m", "flwr_sdk", "server", "--port", str(port), *extra]
    return Process(
        args, tmp / f"server-{port}.log", lambda a, **kw: subprocess.Popen(a, env=_env(), **kw)
    )


def _client(tmp: Path, port: int, app: str, *extra: str, name: str = "client") -> Process:
    args = [sys.executable, "-m", "flwr_sdk", "client", "--app", f"cli_apps:{app}"]
    args += ["--server-address", f"127.0.0.1:{port}", *extra]
    return Process(
        args, tmp / f"{name}-{port}.log", lambda a, **kw: subprocess.Popen(a, env=_env(), **kw)
    )


class PtyClient:
    """``flwr-sdk client`` with a pseudo-terminal as stdout and stderr, like a person's."""

    def __init__(self, args: list[str]) -> None:
        self._master, slave = pty.openpty()
        env = {**_env(), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO
        )
        os.close(slave)
        self._data = bytearray()

    def pump(self, timeout: float) -> None:
        """Read what the client drew for up to ``timeout`` seconds (or until it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self._master, 1 << 16)
                except OSError:  # the child closed the terminal
                    return
                if not chunk:
                    return
                self._data += chunk
            elif self.proc.poll() is not None:
                return

    @property
    def screen(self) -> str:
        return self._data.decode("utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.5)
        self.pump(0.5)
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(10)
        os.close(self._master)
        return code


def test_a_64_mib_round_on_a_terminal_shows_round_lines_and_a_progress_bar(
    tmp_path: Path,
) -> None:
    port = free_port()
    with processes() as procs:
        server = _server(tmp_path, port, "--transport", "grpc-rere", *ONE_NODE, "--rounds", "1")
        procs.append(server)
        wait_for_port("127.0.0.1", port, process=server)
        args = [sys.executable, "-m", "flwr_sdk", "client", "--app", "cli_apps:big_client_fn"]
        args += ["--server-address", f"127.0.0.1:{port}", "--transport", "grpc-rere"]
        client = PtyClient(args)
        try:
            deadline = time.monotonic() + 120
            while server.proc.poll() is None and time.monotonic() < deadline:
                client.pump(0.5)
            assert server.wait(5) == 0, server.output()
        finally:
            code = client.stop()
    screen = client.screen
    text = ANSI.sub("", screen)
    assert code == 0, text
    assert "━" in screen, text  # rich's bar
    assert re.search(r"\d+\.\d/64\.0 MiB", text), text  # …and its byte counter
    assert "receiving" in text and "sending" in text, text
    for line in (
        "connected to 127.0.0.1:",
        "round 1   train          received  64.0 MiB",
        "round 1   train          replied   64.0 MiB in ",
        "round 1   evaluate       received  64.0 MiB",
        "stopped: 3 instructions handled (1 get_parameters, 1 train, 1 evaluate), none failed",
    ):
        assert line in text, (line, text)


def test_piped_output_is_plain_lines_with_progress_per_quarter(tmp_path: Path) -> None:
    """grpc-bidi (no rounds on the wire), stdout a file: no control codes at all."""
    port = free_port()
    with processes() as procs:
        server = _server(tmp_path, port, *ONE_NODE, "--rounds", "2")
        procs.append(server)
        wait_for_port("127.0.0.1", port, process=server)
        client = _client(tmp_path, port, "big_client_fn")
        procs.append(client)
        assert server.wait(120) == 0, server.output()
        assert client.wait(30) == 0, client.output()
        text = client.output(tail=None)
    assert "\x1b" not in text, text
    lines = text.splitlines()
    assert lines[0] == f"connected to 127.0.0.1:{port} over grpc-bidi", text
    assert sum(line.startswith("train          received  64.0 MiB") for line in lines) == 2
    assert sum(line.startswith("train          replied   64.0 MiB in ") for line in lines) == 2
    for direction in ("receiving", "sending"):
        for percent in (25, 50, 75):
            pattern = rf"^  {direction} [\d.]+ MiB of 64\.0 MiB \({percent}%\)$"
            assert re.search(pattern, text, re.MULTILINE), (pattern, text)
    assert lines[-1] == (
        "stopped: 5 instructions handled (1 get_parameters, 2 train, 2 evaluate), none failed"
    )


def test_a_client_app_runs_its_mods_around_every_message(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        server = _server(tmp_path, port, *ONE_NODE, "--rounds", "2")
        procs.append(server)
        wait_for_port("127.0.0.1", port, process=server)
        client = _client(tmp_path, port, "app")
        procs.append(client)
        assert server.wait(60) == 0, server.output()
        assert client.wait(30) == 0, client.output()
        text = client.output(tail=None)
        server_text = server.output()
    mods = [line for line in text.splitlines() if line.startswith("mod: ")]
    assert sorted(mods) == sorted(
        ["mod: get_parameters round "] + ["mod: train round ", "mod: evaluate round "] * 2
    ), text
    assert "stopped: 5 instructions handled" in text, text
    assert "round 2: fit 1 ok / 0 failed" in server_text, server_text


def test_failing_instructions_make_the_command_exit_1(tmp_path: Path) -> None:
    """Fleet API: every fit fails; the node goes on, and exits 1 when stopped."""
    port = free_port()
    with processes() as procs:
        server = _server(tmp_path, port, "--transport", "grpc-rere", *ONE_NODE, "--rounds", "2")
        procs.append(server)
        wait_for_port("127.0.0.1", port, process=server)
        client = _client(tmp_path, port, "failing_client_fn", "--transport", "grpc-rere")
        procs.append(client)
        assert server.wait(60) == 0, server.output()
        client.signal(signal.SIGTERM)
        assert client.wait(30) == 1, client.output()
        text = client.output(tail=None)
        server_text = server.output()
    assert "round 1: fit 0 ok / 1 failed" in server_text, server_text
    assert text.count("round 1   train          FAILED    ValueError: bad shape") == 1, text
    assert "round 2   train          replied   error reply in " in text, text
    assert "stopped: 2 of 2 train instructions failed (first: ValueError: bad shape)" in text
    assert text.count("Traceback") == 2, text  # logged once per failure, none from the CLI


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        server = _server(tmp_path, port, *ONE_NODE, "--rounds", "2", "--round-timeout", "10")
        procs.append(server)
        wait_for_port("127.0.0.1", port, process=server)
        client = _client(tmp_path, port, "failing_client_fn", "--fail-fast")
        procs.append(client)
        assert client.wait(60) == 1, client.output()
        text = client.output(tail=None)
    assert "train          FAILED    ValueError: bad shape" in text, text
    assert "stopped: 1 of 1 train instructions failed (first: ValueError: bad shape)" in text
    assert text.splitlines()[-1] == (
        "flwr-sdk client: stopped at the first failure (--fail-fast): ValueError: bad shape"
    ), text
    # The user's frames only: where fit raised, not flwr-sdk's or asyncio's.
    traceback = text[text.index("Traceback") : text.index("flwr-sdk client: stopped")]
    assert text.count("Traceback") == 1, text
    assert 'cli_apps.py", line' in traceback and 'raise ValueError("bad shape")' in traceback
    assert "flwr_sdk" not in traceback and "asyncio" not in traceback, traceback
