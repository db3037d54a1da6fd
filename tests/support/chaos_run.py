"""Shared pieces of the chaos scenarios (tests/faults/test_chaos_*.py).

* :data:`FULL` / :func:`pick`: the reduced (CI) or full (``FLWR_SDK_FAULTS_FULL=1``) form.
* :func:`start_chaos_app`: the round-recording ServerApp of ``apps/chaos_app`` against a
  1.12 SuperLink (every registered node gets each round; a round ends after its timeout
  even when an instruction or reply was lost).
* :func:`served_rounds`: rounds with a result, from that app's or the legacy server's
  report; :func:`wait_until`: poll with a deadline.
* :func:`log_lines` / :func:`first_after`: our client's log lines with their wall times.
* :class:`StormGrpcServer` / :class:`StormRestServer`: the hostile server answering every
  call of chosen roles with one status, recording when each call came.
* :class:`ServerThread`: a hostile server on its own loop thread, for subprocess clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from flwr_sdk_proto.v1_12.flwr import proto as pb12
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from support.chaos_proxy import LoopThread
from support.federation import Process
from support.hostile_frames import GrpcAction, GrpcAnswer, HttpAnswer, http_response
from support.hostile_server import (
    HostileGrpcServer,
    HostileRestServer,
    HostileServer,
    _read_request,
)
from support.superlink import SuperLink, _popen

SUPPORT = Path(__file__).resolve().parent
CHAOS_APP = SUPPORT / "apps" / "chaos_app"

FULL = os.environ.get("FLWR_SDK_FAULTS_FULL", "") not in ("", "0")
"""The full form of the chaos scenarios (longer faults, more repetitions)."""


def pick(reduced: Any, full: Any) -> Any:
    """``full`` under ``FLWR_SDK_FAULTS_FULL=1``, else ``reduced`` (the CI form)."""
    return full if FULL else reduced


def start_chaos_app(
    superlink: SuperLink,
    report: Path,
    *,
    rounds: int = 1000,
    round_timeout: float = 10.0,
    name: str = "chaos-serverapp",
) -> Process:
    """``flower-server-app apps/chaos_app --superlink D`` (1.12: a run without FAB)."""
    args = [
        "flower-server-app",
        str(CHAOS_APP),
        "--superlink",
        superlink.driver_address,
        *superlink.security_args(),
    ]
    extra = {
        "CHAOS_REPORT": str(report),
        "CHAOS_ROUNDS": str(rounds),
        "CHAOS_ROUND_TIMEOUT": str(round_timeout),
    }
    return Process(
        args, superlink.workdir / f"{name}.log", _popen(superlink.env, superlink.workdir, extra)
    )


def fit_rounds(report: Path) -> dict[int, dict[str, Any]]:
    """The report's fit rounds (legacy server or chaos app); empty while unreadable."""
    try:
        data = json.loads(report.read_text())
        return {int(k): v for k, v in data.get("fit", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def served_rounds(report: Path) -> int:
    """How many fit rounds aggregated at least one result."""
    return sum(1 for r in fit_rounds(report).values() if r.get("results", 0) >= 1)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    alive: tuple[Process, ...] = (),
    poll: float = 0.1,
    abort: threading.Event | None = None,
) -> float:
    """Poll ``predicate`` until true; seconds it took. Fails after ``timeout``, when one
    of ``alive`` exits, or (RuntimeError) once ``abort`` is set."""
    started = time.monotonic()
    while not predicate():
        elapsed = time.monotonic() - started
        for proc in alive:
            assert proc.proc.poll() is None, f"exited while waiting for {what}:\n{proc.output()}"
        assert elapsed < timeout, f"no {what} after {timeout:.0f} s"
        if abort is not None and abort.is_set():
            raise RuntimeError(f"aborted while waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)$")


def log_lines(text: str) -> list[tuple[float, str, str]]:
    """``(wall time, level, message)`` of each line of a ``sdk_client.py`` log."""
    lines = []
    for line in text.splitlines():
        found = _LINE.match(line)
        if found:
            stamp = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
            lines.append((stamp.timestamp(), found.group(2), found.group(4)))
    return lines


FAILURE_MARKERS = (
    "Lost the connection",
    "retrying in",
    "reconnecting",
    "failed (attempt",
    "Ping failed",
)


def first_after(
    text: str, since: float, markers: tuple[str, ...] = FAILURE_MARKERS
) -> float | None:
    """Wall time of the first log line at or after ``since`` holding one of ``markers``."""
    for stamp, _, message in log_lines(text):
        if stamp >= since - 0.001 and any(m in message for m in markers):
            return stamp
    return None


# ----------------------------------------------------------------------- storms


class _Storm:
    """What both storm servers add: per-role call times."""

    storm: dict[str, Any]
    times: dict[str, list[float]]

    def _init_storm(self, storm: dict[str, Any]) -> None:
        self.storm = dict(storm)
        self.times = {}

    def stamp(self, role: str) -> None:
        self.times.setdefault(role, []).append(time.monotonic())

    def rate(self, role: str, since: float, until: float) -> tuple[int, float]:
        """Calls of ``role`` in ``[since, until)`` and the most in any 1 s window."""
        times = [t for t in self.times.get(role, []) if since <= t < until]
        peak = 0
        for i, start in enumerate(times):
            peak = max(peak, sum(1 for t in times[i:] if t < start + 1.0))
        return len(times), float(peak)


class StormGrpcServer(_Storm, HostileGrpcServer):
    """gRPC (Fleet and Join) that ends every call of the ``storm`` roles with its answer.

    Roles as the hostile server names them (``register``, ``pull``, ``heartbeat``…,
    ``join`` for every Join stream); other calls are answered normally (line 1.12).
    """

    def __init__(self, storm: dict[str, GrpcAnswer]) -> None:
        HostileGrpcServer.__init__(self)
        self._init_storm(storm)

    def route(self, path: str, body: bytes) -> tuple[str, str | None]:
        """As the hostile server, but a pull that names no node is line detection's probe."""
        role, line = super().route(path, body)
        if role == "pull" and line == "1.12":
            with contextlib.suppress(Exception):
                node = pb12.PullTaskInsRequest.parse(body).node
                if node is None or not node.node_id:
                    return "probe", line
        return role, line

    def unary_answer(self, path: str, body: bytes) -> GrpcAnswer:
        role, line = self.route(path, body)
        if line is None:  # the other line's RPC: UNIMPLEMENTED, as a real server answers
            return super().unary_answer(path, body)
        self.stamp(role)
        if role in self.storm:
            self.calls.append((role, path))
            answer: GrpcAnswer = self.storm[role]
            return answer
        return super().unary_answer(path, body)

    def join_answer(self, step: int) -> list[GrpcAction]:
        if step == 0:
            self.stamp("join")
            if "join" in self.storm:
                return list(self.storm["join"].actions)
        return super().join_answer(step)


class StormRestServer(_Storm, HostileRestServer):
    """REST Fleet that answers every call of the ``storm`` roles with its HTTP answer."""

    def __init__(self, storm: dict[str, HttpAnswer]) -> None:
        HostileRestServer.__init__(self)
        self._init_storm(storm)

    def answer(self, path: str, body: bytes) -> HttpAnswer:
        role, _ = self.route(path, body)
        self.stamp(role)
        if role in self.storm:
            self.calls.append((role, path))
            answer: HttpAnswer = self.storm[role]
            return answer
        return super().answer(path, body)


class ServerThread:
    """A hostile (or storm) server on its own loop thread, for clients in subprocesses."""

    def __init__(self, server: HostileServer) -> None:
        self.server = server
        self.thread = LoopThread("hostile-server")
        self.thread.run(server.start())

    def close(self) -> None:
        self.thread.run(self.server.close())
        self.thread.close()


# ------------------------------------------------- protocol-aware fault proxies


class _RawCodec(CodecBase):
    """Pass gRPC messages through as bytes (no decoding in the proxy)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return bytes(data)


class _Mapping:
    def __init__(self, mapping: dict[str, Handler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


def _is_node_pull(body: bytes) -> bool:
    """Whether a 1.12 PullTaskIns request names a node (not line detection's probe)."""
    with contextlib.suppress(Exception):
        node = pb12.PullTaskInsRequest.parse(body).node
        return node is not None and bool(node.node_id)
    return False


LOCKED = "database is locked"
"""What a SuperLink with SQLite state answers a pull with under a write lock (UNKNOWN)."""


class LockedFleetProxy:
    """A gRPC proxy in front of a real 1.12 SuperLink's Fleet API (grpc-rere).

    Every Fleet call (both lines' paths) is passed through as raw bytes, except that the
    next ``lock(n)`` PullTaskIns calls that name a node are ended with UNKNOWN
    "database is locked" without reaching the SuperLink. ``locked`` counts those sent,
    ``pulls`` every node pull seen.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.locked = 0
        self.pulls = 0
        self.locked_at: list[float] = []
        self._to_lock = 0
        self._thread = LoopThread("locked-proxy")
        self._server: Server | None = None
        self._channel: Channel | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lock(self, n: int) -> None:
        """End the next ``n`` node pulls with UNKNOWN "database is locked"."""
        self._thread.call(lambda: setattr(self, "_to_lock", self._to_lock + n))

    def start(self) -> LockedFleetProxy:
        self._thread.run(self._start())
        return self

    async def _start(self) -> None:
        self._channel = Channel(*self.target, codec=_RawCodec())
        paths = {path for path in HostileGrpcServer()._paths}  # every Fleet path, both lines
        mapping = {
            path: Handler(self._handler(path), Cardinality.UNARY_UNARY, None, None)
            for path in paths
        }
        self._server = Server([_Mapping(mapping)], codec=_RawCodec())
        await self._server.start("127.0.0.1", 0)
        sockets = self._server._server.sockets if self._server._server else ()
        self.port = int(next(iter(sockets)).getsockname()[1])

    def _handler(self, path: str) -> Callable[[Stream[Any, Any]], Any]:
        async def forward(stream: Stream[Any, Any]) -> None:
            body = await stream.recv_message()
            assert body is not None
            if path.endswith("/PullTaskIns") and _is_node_pull(body):
                self.pulls += 1
                if self._to_lock > 0:
                    self._to_lock -= 1
                    self.locked += 1
                    self.locked_at.append(time.monotonic())
                    raise GRPCError(Status.UNKNOWN, LOCKED)
            assert self._channel is not None
            try:
                async with self._channel.request(
                    path, Cardinality.UNARY_UNARY, None, None, timeout=60
                ) as upstream:
                    await upstream.send_message(body, end=True)
                    reply = await upstream.recv_message()
            except GRPCError as exc:
                raise GRPCError(exc.status, exc.message) from None
            assert reply is not None
            await stream.send_message(reply)

        return forward

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 5)
            if self._channel is not None:
                self._channel.close()

        with contextlib.suppress(Exception):
            self._thread.run(close())
        self._thread.close()

    def __enter__(self) -> LockedFleetProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LockedRestProxy:
    """The REST twin of :class:`LockedFleetProxy`: an HTTP/1.1 proxy in front of a 1.12
    SuperLink's REST Fleet API whose next ``lock(n)`` node pulls get HTTP 500 (what the
    SuperLink's REST API answers when its state raises)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = f"http://{target_host}:{target_port}"
        self.port = 0
        self.locked = 0
        self.pulls = 0
        self.locked_at: list[float] = []
        self._to_lock = 0
        self._thread = LoopThread("locked-rest-proxy")
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lock(self, n: int) -> None:
        self._thread.call(lambda: setattr(self, "_to_lock", self._to_lock + n))

    def start(self) -> LockedRestProxy:
        async def start() -> None:
            self._client = httpx.AsyncClient(base_url=self.target, timeout=60)
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self.port = int(self._server.sockets[0].getsockname()[1])

        self._thread.run(start())
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                path, body = request
                writer.write(await self._answer(path, body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.transport.abort()

    async def _answer(self, path: str, body: bytes) -> bytes:
        if path.endswith("/pull-task-ins") and _is_node_pull(body):
            self.pulls += 1
            if self._to_lock > 0:
                self._to_lock -= 1
                self.locked += 1
                self.locked_at.append(time.monotonic())
                text = b"Internal Server Error"
                return http_response(500, text, content_type=b"text/plain").raw
        assert self._client is not None
        kind = "application/protobuf"
        reply = await self._client.post(
            path, content=body, headers={"Content-Type": kind, "Accept": kind}
        )
        content_type = reply.headers.get("content-type", "").encode() or None
        return http_response(reply.status_code, reply.content, content_type=content_type).raw

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            if self._client is not None:
                await self._client.aclose()

        with contextlib.suppress(Exception):
            self._thread.run(close())
        self._thread.close()

    def __enter__(self) -> LockedRestProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
