"""Drive the SDK's client side against a hostile server, one fuzz frame at a time.

The drivers use what ``start_client`` uses: the validated configuration
(:func:`flwr_sdk.validation.validate`), the transport's connector
(:func:`flwr_sdk.transport.connector_for`, which detects the wire line, registers the
node and starts its heartbeat) and the connection's ``receive`` / ``run_info`` /
``send`` / ``close``, in the order the node loop calls them, with the user's app run as
the node loop runs it (an exception in it becomes the error reply on the Fleet API and
drops the stream on grpc-bidi). One pass of that loop per frame keeps a frame short and
free of sleeps; ``max_retries=0`` turns "unavailable" into
:class:`~flwr_sdk.errors.RetriesExhaustedError` at once.

Each frame ends in an :class:`Outcome`: ``ok`` (the flow finished), ``typed`` (a
:class:`~flwr_sdk.errors.FlwrSdkError`), ``raw`` (any other exception — a bug), or
``hang`` (the frame's time bound passed — a bug). Exceptions that end the heartbeat task
or reach the event loop's exception handler are checked the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flwr_sdk.clientapp.dispatch import error_reply_for
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import RecordSet
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.errors import FlwrSdkError
from flwr_sdk.transport import connector_for
from flwr_sdk.transport.base import Connection
from flwr_sdk.validation import ClientConfig, validate
from flwr_sdk.wire.base import Reconnect

from .hostile_frames import Frame
from .hostile_server import HostileServer

__all__ = ["FuzzClient", "LogTally", "Outcome", "client_config", "drive", "rss_bytes"]

HEARTBEAT_TASK = "flwr-sdk-heartbeat"


class FuzzClient(NumPyClient):
    """A NumPyClient that answers every legacy instruction (and loads every tensor)."""

    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        """Echo the number of config entries."""
        return {"n": len(config)}

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
        """Two zeros."""
        return [np.zeros(2)]

    def fit(
        self, parameters: list[np.ndarray[Any, Any]], config: dict[str, Any]
    ) -> tuple[list[np.ndarray[Any, Any]], int, dict[str, Any]]:
        """The parameters back, unchanged."""
        return parameters, 1, {}

    def evaluate(
        self, parameters: list[np.ndarray[Any, Any]], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        """Loss 0."""
        return 0.0, 1, {}


def client_config(transport: str, address: str) -> ClientConfig:
    """What ``start_client`` validates for a plaintext node without retries."""
    return validate(
        server_address=address,
        client_fn=None,
        client=FuzzClient(),
        grpc_max_message_length=DEFAULT_MAX_MESSAGE_LENGTH,
        root_certificates=None,
        insecure=True,
        transport=transport,
        authentication_keys=None,
        max_retries=0,
        max_wait_time=1.0,
    )


@dataclass(frozen=True)
class Outcome:
    """How one frame ended (see the module docs)."""

    kind: str
    detail: str = ""
    error: BaseException | None = field(default=None, compare=False)

    @property
    def failed(self) -> bool:
        """Whether this outcome is a bug (a raw exception or a hang)."""
        return self.kind in ("raw", "hang")


def _classify(exc: BaseException) -> Outcome:
    if isinstance(exc, FlwrSdkError):
        return Outcome("typed", f"{type(exc).__name__}: {exc}", exc)
    text = "".join(traceback.format_exception(exc))
    return Outcome("raw", f"{type(exc).__name__}: {exc}\n{text}", exc)


def _run_app(config: ClientConfig, connection: Connection, message: Message, info: Any) -> Message:
    run_config = {k: v for k, v in info.run_config.items() if not isinstance(v, bytes)}
    context = Context(connection.node_id, {}, RecordSet(), run_config, run_id=info.run_id)
    return config.app(message, context)


class _Background:
    """Collects exceptions of heartbeat tasks and of the loop's exception handler."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def watch_heartbeats(self) -> None:
        for task in asyncio.all_tasks():
            if task.get_name() == HEARTBEAT_TASK and not task.done():
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            outcome = _classify(exc)
            self.outcomes.append(Outcome(f"heartbeat-{outcome.kind}", outcome.detail, exc))

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is None or isinstance(exc, FlwrSdkError):
            return
        outcome = _classify(exc)
        self.outcomes.append(Outcome("loop-raw", f"{context.get('message')}: {outcome.detail}"))


CLOSE_BOUND = 4.0
"""Seconds a connection's close() may take (DeleteNode has a 3 s deadline)."""


def _heartbeats() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == HEARTBEAT_TASK and not t.done()]


async def _cancel_until_done(tasks: list[asyncio.Task[Any]]) -> None:
    while tasks:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.1)
        tasks = [task for task in tasks if not task.done()]


async def _close(connection: Connection, outcomes: list[Outcome]) -> None:
    """Close ``connection`` within :data:`CLOSE_BOUND`; record a close that overruns.

    A close still waiting at the bound while a heartbeat task is running is the known
    bug ``close-lost-cancel`` (see tests/faults/README.md); otherwise an overrun is a
    hang. Either way the close and any leftover heartbeat are cancelled until they end,
    so one frame never leaks into the next.
    """
    closing = asyncio.ensure_future(connection.close())
    done, _ = await asyncio.wait({closing}, timeout=CLOSE_BOUND)
    if not done:
        alive = _heartbeats()
        kind = "known:close-lost-cancel" if alive else "hang"
        outcomes.append(
            Outcome(
                kind,
                f"close() still running after {CLOSE_BOUND:g} s; {len(alive)} "
                "heartbeat task(s) running",
            )
        )
        await _cancel_until_done([closing])
    elif closing.exception() is not None:
        raise closing.exception()  # type: ignore[misc]
    leftover = _heartbeats()
    if leftover:
        outcomes.append(Outcome("known:close-lost-cancel", "a heartbeat task outlived close()"))
        await _cancel_until_done(leftover)


async def _fleet_flow(
    server: HostileServer, frame: Frame, config: ClientConfig, background: _Background
) -> None:
    connector = connector_for(config.transport, config.settings, None)
    connection = await connector.connect()
    try:
        background.watch_heartbeats()
        if "heartbeat" in frame.answers:
            # The heartbeat pings at once; let its (fuzzed) answer arrive and be read.
            await asyncio.wait_for(server.answered("heartbeat").wait(), 2.0)
            await asyncio.sleep(0.02)
        item = await connection.receive()
        if isinstance(item, Message):
            info = await connection.run_info(item.metadata.run_id)
            try:
                reply = _run_app(config, connection, item, info)
            except Exception as exc:  # the node loop answers with the error reply
                reply = error_reply_for(item, exc)
            await connection.send(reply)
    finally:
        await _close(connection, background.outcomes)


async def _bidi_flow(config: ClientConfig, background: _Background) -> None:
    connector = connector_for(config.transport, config.settings, None)
    connection = await connector.connect()
    try:
        for _ in range(4):
            item = await connection.receive()
            if isinstance(item, Reconnect) or item is None:
                return
            try:
                reply = _run_app(config, connection, item, await connection.run_info(0))
            except Exception:
                return  # the node loop drops the stream (no error reply on grpc-bidi)
            await connection.send(reply)
    finally:
        await _close(connection, background.outcomes)


def _stack_text(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits: every coroutine frame down its ``await`` chain."""
    lines = []
    coro: Any = task.get_coro()
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        code = coro.cr_frame.f_code
        lines.append(
            f'  File "{code.co_filename}", line {coro.cr_frame.f_lineno}, in {code.co_name}'
        )
        coro = coro.cr_await
    return "\n".join(lines)


async def drive(
    server: HostileServer, frame: Frame, config: ClientConfig, timeout: float
) -> list[Outcome]:
    """Serve ``frame`` and run one pass of the node loop against it.

    Returns the frame's outcome first, then any outcome of background work and of
    closing. ``timeout`` bounds the frame; a frame still running then is a ``hang``
    (its detail shows where it waited) and is cancelled until it ends.
    """
    server.use(frame)
    background = _Background()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(background.loop_handler)
    if frame.transport == "grpc-bidi":
        flow = asyncio.ensure_future(_bidi_flow(config, background))
    else:
        flow = asyncio.ensure_future(_fleet_flow(server, frame, config, background))
    try:
        done, _ = await asyncio.wait({flow}, timeout=timeout)
        if not done:
            stack = _stack_text(flow)
            await _cancel_until_done([flow])
            outcome = Outcome("hang", f"no end within {timeout:g} s; waiting at:\n{stack}")
        elif flow.exception() is None:
            outcome = Outcome("ok")
        else:
            outcome = _classify(flow.exception())  # type: ignore[arg-type]
        await asyncio.sleep(0)  # let done callbacks of cancelled tasks run
    finally:
        loop.set_exception_handler(previous)
    return [outcome, *background.outcomes]


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class LogTally(logging.Handler):
    """Counts the SDK's log records by level and keeps the last few, in fixed memory."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()
        self.last: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        """Count one record."""
        self.levels[record.levelname] += 1
        self.last.append(f"{record.levelname} {record.getMessage()[:300]}")


@contextmanager
def tallied_logs(name: str = "flwr_sdk") -> Iterator[LogTally]:
    """Route logger ``name`` to a :class:`LogTally` only (captured logs would grow RSS)."""
    logger = logging.getLogger(name)
    tally = LogTally()
    propagate, level = logger.propagate, logger.level
    logger.addHandler(tally)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield tally
    finally:
        logger.removeHandler(tally)
        logger.propagate = propagate
        logger.setLevel(level)
