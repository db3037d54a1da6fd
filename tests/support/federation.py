"""Helpers to run a small federation on loopback: a real Flower server plus our clients."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from support.flower_env import FlowerEnv

SUPPORT = Path(__file__).resolve().parent
REPO = SUPPORT.parents[1]
LEGACY_SERVER = SUPPORT / "legacy_server.py"
SDK_CLIENT = SUPPORT / "sdk_client.py"

# tests/support/legacy_server.py starts FedAvg from these parameters.
INITIAL = [np.zeros(3, dtype=np.float32), np.arange(4, dtype=np.float64).reshape(2, 2)]
# ShiftClient i adds i + 1 and reports 10 * (i + 1) examples: with clients 0 and 1 every
# FedAvg round adds (1 * 10 + 2 * 20) / 30 = 5/3.
STEP_TWO_CLIENTS = 5.0 / 3.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 60.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def sdk_env() -> dict[str, str]:
    """Environment for processes running our code in this interpreter."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A child process whose output goes to a log file, killed on exit."""

    def __init__(self, args: Sequence[str | os.PathLike[str]], log: Path, popen: Any) -> None:
        self.args = [str(a) for a in args]
        self.log = log
        self._file = log.open("wb")
        self.proc: subprocess.Popen[bytes] = popen(
            self.args, stdout=self._file, stderr=subprocess.STDOUT, cwd=REPO
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.args[:3]} did not finish in {timeout:.0f}s; log:\n{self.output()}"
            ) from None

    def output(self) -> str:
        self._file.flush()
        return self.log.read_text(errors="replace")[-6000:]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._file.close()


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Collect processes started in the block; kill whatever is still running at the end."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def start_legacy_server(
    env: FlowerEnv,
    tmp: Path,
    address: str,
    *,
    rounds: int = 3,
    clients: int = 2,
    extra: Sequence[str] = (),
    name: str = "server",
) -> tuple[Process, Path]:
    """Start ``legacy_server.py`` in ``env``; return the process and its report path."""
    report = tmp / f"{name}-report.json"
    args: list[str | os.PathLike[str]] = [
        env.python,
        LEGACY_SERVER,
        "--address",
        address,
        "--rounds",
        str(rounds),
        "--clients",
        str(clients),
        "--report",
        report,
        *extra,
    ]
    proc = Process(args, tmp / f"{name}.log", lambda a, **kw: env.popen(a, **kw))
    return proc, report


def start_sdk_client(tmp: Path, address: str, index: int, *extra: str) -> Process:
    """Start ``sdk_client.py`` (our client) in this interpreter."""
    args = [sys.executable, str(SDK_CLIENT), "--address", address, "--index", str(index), *extra]
    return Process(
        args,
        tmp / f"client{index}-{time.monotonic_ns()}.log",
        lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw),
    )


def read_report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def assert_fedavg_rounds(
    report: dict[str, Any], rounds: int, *, clients: int = 2, step: float = STEP_TWO_CLIENTS
) -> None:
    """Every round had ``clients`` results and no failures, with the expected parameters."""
    assert report.get("done"), report
    for rnd in range(1, rounds + 1):
        fit = report["fit"][str(rnd)]
        assert fit["results"] == clients, (rnd, fit)
        assert fit["failures"] == 0, (rnd, fit)
        assert fit["num_examples"] == [10 * (i + 1) for i in range(clients)], fit
        for metrics in fit["client_metrics"]:
            assert json.loads(metrics)["seen_round"] == rnd, fit
        for got, initial in zip(fit["parameters"], INITIAL, strict=False):
            np.testing.assert_allclose(np.asarray(got), initial + rnd * step, rtol=1e-5)
        ev = report["evaluate"][str(rnd)]
        assert ev["results"] == clients and ev["failures"] == 0, (rnd, ev)


def terminate(proc: Process) -> None:
    proc.signal(signal.SIGTERM)
