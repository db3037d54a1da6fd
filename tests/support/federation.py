"""Helpers to run a small federation on loopback: a real Flower server plus our clients."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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


# ------------------------------------------------------------------------------- ports
#
# Picking a port by binding port 0 and closing the socket is racy. Two calls can return
# the same port (the kernel picks at random among the free ones): a SuperLink once got
# driver port == fleet port, served its Driver API, then exited on "Port ... is already
# in use" for the Fleet API, after wait_for_port had seen both "ports" accept. And the
# port comes from the kernel's ephemeral range, which outgoing connections (ours, other
# tests', a concurrent benchmark's) draw from too. So ports come from below the ephemeral
# range, are never handed out twice by this process (nor by another pytest-xdist worker:
# each has its own share), and a server counts as up only once *its own* process listens
# on its ports and is still running (:func:`await_listening`).

_FALLBACK_EPHEMERAL = (32768, 60999)
# Lowest port free_port hands out; free_port picks in [_PORT_FLOOR, ephemeral low).
_PORT_FLOOR = 10000
_MIN_POOL = 1000
_ISSUED: set[int] = set()
_RANDOM = random.SystemRandom()  # unaffected by test seeding (pytest-randomly etc.)


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (inclusive)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(part) for part in text.split())
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL
    return low, high


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bindable(host: str, port: int) -> bool:
    """Whether a listening socket could bind ``host:port`` now (no SO_REUSEADDR)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _worker_slice() -> tuple[int, int]:
    """``(index, count)`` of this pytest-xdist worker (``(0, 1)`` outside xdist).

    Each worker hands out only ports ``p`` with ``p % count == index``, so two workers
    never pick the same port (``_ISSUED`` only knows this process's ports).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    except ValueError:
        return 0, 1
    return (index % count, count) if count > 1 else (0, 1)


def _port_pool() -> range | None:
    """Ports outside the ephemeral range to pick from, or None if there is no room.

    Under pytest-xdist, only this worker's share of them (see :func:`_worker_slice`).
    """
    low, high = ephemeral_port_range()
    index, count = _worker_slice()
    if low - _PORT_FLOOR >= _MIN_POOL * count:
        return range(_PORT_FLOOR + index, low, count)
    if 65535 - high >= _MIN_POOL * count:
        return range(high + 1 + index, 65536, count)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now and not yet handed out by this process.

    It is picked at random below the kernel's ephemeral range (so outgoing connections
    do not take it) and checked to be bindable; consecutive calls never return the same
    port. Another process can still take it before the server binds it: start servers
    with :func:`start_listening` / :func:`await_listening` to notice and retry.
    """
    pool = _port_pool()
    if pool is not None:
        for _ in range(500):
            port = _RANDOM.choice(pool)
            if port not in _ISSUED and _bindable(host, port):
                _ISSUED.add(port)
                return port
    for _ in range(500):  # no room outside the ephemeral range: let the kernel pick
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port
    raise RuntimeError(f"no free TCP port found on {host}")


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port (a self-connect does not count)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) != 0:
            return False
        # Connecting to a port in the ephemeral range where nothing listens can "succeed"
        # by TCP simultaneous open when the kernel picks that very port as the local one.
        return int(sock.getsockname()[1]) != port


def wait_for_port(
    host: str, port: int, timeout: float = 60.0, *, process: Process | None = None
) -> None:
    """Block until something accepts TCP connections on host:port.

    With ``process``, fail at once (with its log) if that process exits meanwhile. This
    does not tell *who* accepts; :func:`await_listening` checks that too.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _accepts(host, port):
            return
        if process is not None and process.proc.poll() is not None:
            raise AssertionError(
                f"{process.args[:3]} exited with code {process.proc.returncode} before "
                f"listening on {host}:{port}; log {process.log}:\n{process.output()}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def _listening_inodes(port: int) -> set[int] | None:
    """Socket inodes listening on TCP ``port`` (any address), or None without /proc/net."""
    inodes: set[int] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes if readable else None


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendants (from /proc/*/stat); empty if unknown."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def listens_on(process: Process, port: int) -> bool | None:
    """Whether ``process`` (or a descendant) holds a listening socket on ``port``.

    None when that cannot be told (no /proc); False also when another process listens.
    """
    listening = _listening_inodes(port)
    if listening is None:
        return None
    if not listening:
        return False
    pid = process.proc.pid
    if listening & _socket_inodes(pid):
        return True
    return any(listening & _socket_inodes(child) for child in _descendants(pid))


class ServerStartError(AssertionError):
    """A server process did not come up listening on its ports.

    ``retryable``: it exited or another process holds one of its ports, so starting it
    again on fresh ports may well work.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# What servers print when their port is taken: Flower's own check, gRPC, uvicorn/asyncio.
BIND_FAILURE_MARKERS = ("already in use", "failed to bind", "errno 98", "eaddrinuse")


def bind_failure_in(text: str) -> bool:
    """Whether a server log says that binding its port failed."""
    lowered = text.lower()
    return any(marker in lowered for marker in BIND_FAILURE_MARKERS)


def await_listening(
    process: Process,
    host: str,
    ports: Sequence[int],
    *,
    what: str,
    timeout: float = 60.0,
    settle: float = 0.5,
) -> None:
    """Block until ``process`` itself listens on every one of ``ports`` on ``host``.

    Unlike :func:`wait_for_port` a port counts only when it accepts connections *and*
    (where /proc tells) the listening socket is ``process``'s; ``process`` must then
    still be running, with no bind failure in its log, ``settle`` seconds later (a
    SuperLink serves its Driver API before it binds the Fleet API, and exits if that
    fails). Raises :class:`ServerStartError` naming the log otherwise.
    """
    if len(set(ports)) != len(ports):
        raise ServerStartError(
            f"{what} was given the same port twice: {list(ports)}; log {process.log}",
            retryable=True,
        )
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while True:
        _check_running(process, host, ports, what)
        pending = [
            port
            for port in pending
            if not (_accepts(host, port) and listens_on(process, port) is not False)
        ]
        if not pending:
            time.sleep(settle)
            _check_running(process, host, ports, what)
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    stolen = [port for port in pending if _listening_inodes(port)]
    detail = f"; another process listens on {stolen}" if stolen else ""
    raise ServerStartError(
        f"{what} did not listen on {host}:{pending} within {timeout:.0f}s{detail}; "
        f"log {process.log}:\n{process.output()}",
        retryable=bool(stolen),
    )


def _check_running(process: Process, host: str, ports: Sequence[int], what: str) -> None:
    """Raise ServerStartError (retryable) if ``process`` exited or failed to bind a port."""
    code = process.proc.poll()
    output = process.output()
    failed_bind = bind_failure_in(output)
    if code is None and not failed_bind:
        return
    cause = "its port was taken" if failed_bind else "it exited"
    state = "is still running" if code is None else f"exited with code {code}"
    raise ServerStartError(
        f"{what} {state} during startup ({cause}); ports {list(ports)} on {host}; "
        f"log {process.log}:\n{output}",
        retryable=True,
    )


def start_listening(
    launch: Callable[[int], tuple[Process, Sequence[int]]],
    host: str,
    *,
    what: str,
    attempts: int = 3,
    timeout: float = 60.0,
) -> tuple[Process, list[int]]:
    """Start a server with ``launch(attempt)`` until it listens on the ports it returns.

    ``launch`` picks its ports (fresh ones per attempt, e.g. with :func:`free_port`) and
    starts the process. A start that failed because the process exited or another
    process took a port is retried, up to ``attempts`` times in all; the last failure
    raises AssertionError with every attempt's log.
    """
    failures: list[str] = []
    for attempt in range(1, attempts + 1):
        process, ports = launch(attempt)
        try:
            await_listening(process, host, ports, what=what, timeout=timeout)
        except ServerStartError as exc:
            process.stop()
            failures.append(f"--- attempt {attempt}/{attempts}: {exc}")
            if not exc.retryable:
                break
            continue
        return process, list(ports)
    raise AssertionError(
        f"{what} did not start after {len(failures)} attempt(s):\n" + "\n".join(failures)
    )


def split_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` -> host and port."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def sdk_env() -> dict[str, str]:
    """Environment for processes running our code in this interpreter."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A child process whose output goes to a log file, killed on exit.

    It leads a process group of its own, and :meth:`stop` kills the whole group: a
    SuperLink's ``multiprocessing`` helpers (and a ServerApp it spawned) would otherwise
    outlive it.
    """

    def __init__(self, args: Sequence[str | os.PathLike[str]], log: Path, popen: Any) -> None:
        self.args = [str(a) for a in args]
        self.log = log
        self._file = log.open("wb")
        self.proc: subprocess.Popen[bytes] = popen(
            self.args,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.args[:3]} did not finish in {timeout:.0f}s; log:\n{self.output()}"
            ) from None

    def output(self, tail: int | None = 6000) -> str:
        """The log so far: its last ``tail`` characters (None: all of it)."""
        self._file.flush()
        text = self.log.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_for_output(self, text: str, timeout: float, *, occurrence: int = 1) -> str:
        """Block until the log holds ``text`` ``occurrence`` times; return the log.

        Fails at once (with the log) if the process exits first.
        """
        deadline = time.monotonic() + timeout
        while (output := self.output(tail=None)).count(text) < occurrence:
            assert self.proc.poll() is None, f"exited before {text!r}:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"no {text!r} after {timeout:.0f}s:\n{self.output()}"
            )
            time.sleep(0.2)
        return output

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
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
    wait: bool = True,
) -> tuple[Process, Path]:
    """Start ``legacy_server.py`` in ``env``; return the process and its report path.

    With ``wait`` (default) return once the server itself listens on ``address``; if it
    exits first, or another process holds the port, stop it and raise AssertionError
    with its log (the caller chose the address, so there is no retry on another port).
    """
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
    if wait:
        host, port = split_address(address)
        try:
            await_listening(proc, host, [port], what=f"legacy server {name!r}")
        except ServerStartError:
            proc.stop()
            raise
    return proc, report


def start_sdk_client(tmp: Path, address: str, index: int, *extra: str) -> Process:
    """Start ``sdk_client.py`` (our client) in this interpreter."""
    args = [sys.executable, str(SDK_CLIENT), "--address", address, "--index", str(index), *extra]
    return Process(
        args,
        tmp / f"client{index}-{time.monotonic_ns()}.log",
        lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw),
    )


def run_sdk_client(
    tmp: Path, address: str, *extra: str, timeout: float = 30.0
) -> tuple[int, str, float]:
    """Run one ``sdk_client.py`` (index 0) to its end: exit code, log, seconds it took."""
    started = time.monotonic()
    with processes() as procs:
        client = start_sdk_client(tmp, address, 0, *extra)
        procs.append(client)
        code = client.wait(timeout=timeout)
        return code, client.output(), time.monotonic() - started


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
