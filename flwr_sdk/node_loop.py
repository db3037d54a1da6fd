"""The receive → handle → reply loop of a client node, across reconnections.

Transport-independent: a :class:`~flwr_sdk.transport.base.Connector` opens sessions,
each :class:`~flwr_sdk.transport.base.Connection` yields instructions as
:class:`~flwr_sdk.common.message.Message` objects, and user code answers them through
:data:`flwr_sdk.clientapp.app.MessageApp` (a ``ClientApp``).

What the node reports (``docs/logging-and-events.md``):

* on the ``flwr_sdk.node`` logger: one INFO line per instruction received and per reply
  sent (message type, round, tensor bytes, duration); a user-code failure once, at ERROR
  with its traceback; one line when the node stops with what it handled and, at ERROR,
  how many instructions of each type failed and the first error of each;
* to ``start_client``'s ``on_event`` callback: the events of :mod:`flwr_sdk.events`, in
  order, ending with :class:`~flwr_sdk.events.Stopped` (whatever ended the node).

A user-code failure (``client_fn`` raising or returning the wrong type, ``fit`` /
``evaluate`` raising, an app returning something that is not a ``Message``) becomes an
error reply on the Fleet API transports; on grpc-bidi, which has none, the stream is
dropped (the server counts a failure) and the node joins again. With ``fail_fast`` the
node instead stops at the first failure: on the Fleet API the error reply is still sent,
then the node leaves the server (unregisters) and :meth:`NodeLoop.run` raises the user's
own exception object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flwr_sdk.clientapp.dispatch import error_reply_for
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import RecordSet
from flwr_sdk.events import (
    Connected,
    Disconnected,
    InstructionFailed,
    InstructionReceived,
    NodeEvent,
    NodeSummary,
    Registered,
    ReplySent,
    Stopped,
)
from flwr_sdk.net.framing import TRANSFER_EVENTS
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.transport.retry import Action, RetryBudget, rule_for
from flwr_sdk.validation import ClientConfig
from flwr_sdk.wire.base import Reconnect

__all__ = ["CLOSE_TIMEOUT", "STOP_CLOSE_GRACE", "NodeLoop", "run_in_daemon_thread"]

log = logging.getLogger("flwr_sdk.node")

T = TypeVar("T")

CLOSE_TIMEOUT = 10.0
"""Seconds a connection gets to leave the server cleanly (e.g. DeleteNode)."""

STOP_CLOSE_GRACE = 0.5
"""Seconds a connection still gets to leave the server once the node is stopped.

Short, so that a node honours SIGINT / SIGTERM within a second in every state; enough
for a DeleteNode on a working network.
"""

STOP_POLL = 0.05
"""Seconds between two cancellations of a close that overran its grace."""


class _StreamDroppedError(Exception):
    """User code failed on a transport that cannot carry an error reply (grpc-bidi)."""


class _FailFastError(Exception):
    """User code failed and the node stops at the first failure (``fail_fast``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Ending:
    """How one session ended."""

    reason: str
    #: Seconds to wait before connecting again; None: the node stops.
    wait: float | None
    #: The user's exception to raise once the session is closed (``fail_fast``).
    failure: Exception | None = None
    #: Whether the server asked for the wait (ReconnectIns), rather than the retry budget.
    asked: bool = False


_VERBS = {
    Action.RETRY: "reconnecting",
    Action.REGISTER_AGAIN: "registering again",
    Action.REJOIN: "joining again",
}
"""What the node does next, by the retry table's action, for the log line."""


async def run_in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run blocking user code off the event loop, in a daemon thread.

    A daemon thread (unlike ``asyncio.to_thread``'s pool) never keeps the process alive:
    a node stopped by Ctrl+C or SIGTERM in the middle of a long ``fit`` exits at once.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():  # cancelled before the thread ran
            return
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=work, name="flwr-sdk-client-code", daemon=True).start()
    # A cancelled wait leaves the running thread alone; its result is then dropped.
    return await asyncio.wrap_future(future)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in tuple("aeiou") else f"a {word}"


def _round_text(group_id: str) -> str:
    if not group_id:
        return ""
    return f" for round {group_id}" if group_id.isdigit() else f" for group {group_id!r}"


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def _tensor_bytes(message: Message) -> int:
    if not message.has_content():
        return 0
    records = message.content.parameters_records
    return sum(record.count_bytes() for record in records.values())


class NodeLoop:
    """Serve one node until the server tells it to leave, or retries run out."""

    def __init__(
        self,
        config: ClientConfig,
        connector: Connector,
        *,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """A node of ``config`` connecting through ``connector`` (nothing runs before run()).

        ``close_timeout``: the seconds a connection gets to leave the server (e.g.
        DeleteNode) when its session ends or the node is asked to :meth:`stop`.
        """
        self._close_timeout = close_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._config = config
        self._connector = connector
        self._contexts: dict[int, Context] = {}
        self._on_event = config.on_event
        self._handled: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._first_errors: dict[str, str] = {}

    def stop(self) -> None:
        """Ask the running node to leave the server and end; loop thread only.

        What the node is doing is interrupted (its task is cancelled once), its session
        closes with the full ``close_timeout`` to leave the server, and :meth:`run` then
        raises :class:`asyncio.CancelledError` without connecting again (also when the
        interrupted work ended in another error). A further
        cancellation of the node's task still cuts the close short
        (:data:`STOP_CLOSE_GRACE`).
        """
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def summary(self) -> NodeSummary:
        """What the node did so far (instructions handled and failed, by message type)."""
        return NodeSummary(dict(self._handled), dict(self._failed), dict(self._first_errors))

    def _emit(self, event: NodeEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def run(self) -> None:
        """Connect, serve, reconnect as told or when the server drops; return when done.

        Whatever ends the node, it logs its summary and reports
        :class:`~flwr_sdk.events.Stopped` last.

        Raises:
            flwr_sdk.errors.RetriesExhaustedError: the server stayed unreachable past
                ``max_retries`` / ``max_wait_time``.
            flwr_sdk.errors.TransportError: a failure that is not worth retrying
                (TLS, authentication, message size, protocol).
            Exception: with ``fail_fast``, the exception the user's code raised first
                (the original object, with its traceback), after the session was closed.

        """
        # Transfer progress is reported from the network layer through this variable.
        token = TRANSFER_EVENTS.set(self._on_event)
        error: BaseException | None = None
        self._task = asyncio.current_task()
        try:
            if self._stopping:  # stop() came before the node ran
                raise asyncio.CancelledError
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._stopping:
                # What stop() interrupted may end in another error than the cancellation
                # (a transport turns it into its own): the node was stopped, not failed.
                log.debug("The stopped node's work ended with %r", exc)
                raise asyncio.CancelledError from exc
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            TRANSFER_EVENTS.reset(token)
            self._report_stop(error)

    def _report_stop(self, error: BaseException | None) -> None:
        summary = self.summary()
        if summary.failures:
            log.error("Node stopped: %s", summary.describe())
        else:
            log.info("Node stopped: %s", summary.describe())
        self._emit(Stopped(summary, None if error is None else _error_text(error)))

    async def _run(self) -> None:
        address = self._config.settings.server_address
        kind = self._connector.name
        policy = self._config.retry
        # One streak for connecting, registering again and joining again; it starts anew
        # only once the server served the node (see _serve), so a server that accepts
        # each connection and fails it at once is retried with growing waits and given
        # up on per max_retries / max_wait_time (issue 16: no loop without a delay).
        budget = policy.budget()
        while True:
            connection = await policy.run(
                self._connect,
                describe=f"connecting to {address} ({kind})",
                budget=budget,
                reset_on_success=False,
            )
            log.info("Connected to %s over %s", address, kind)
            self._emit(Connected(address, kind, connection.line_name))
            if connection.node_id >= 0:
                self._emit(Registered(connection.node_id))
            ending = _Ending("the node was stopped", None)
            try:
                ending = await self._session(connection, budget)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                ending = _Ending(f"stopped: {_error_text(exc)}", None)
                raise
            finally:
                try:
                    await _close_quietly(connection, self._close_timeout)
                finally:
                    self._emit(Disconnected(ending.reason, ending.wait is not None))
            if self._stopping:
                # stop()'s cancellation may have been turned into another error by the
                # transport (grpclib does so when a connection dies): never reconnect.
                raise asyncio.CancelledError
            if ending.failure is not None:
                # Outside any except block: the user's exception object as it was raised.
                raise ending.failure
            if ending.wait is None:
                return
            if ending.wait > 0:
                if ending.asked:
                    log.info("Server asked to reconnect in %.1f s", ending.wait)
                await policy.sleep(ending.wait)

    async def _connect(self) -> Connection:
        """Connect, unless the node was asked to stop (its cancellation may have been lost)."""
        if self._stopping:
            raise asyncio.CancelledError
        return await self._connector.connect()

    async def _session(self, connection: Connection, budget: RetryBudget) -> _Ending:
        """Serve one session; say how it ended and how long to wait before the next.

        A failure that ends the session is looked up in the retry table: where its row
        says register again / join again / retry, the streak ``budget`` gives the wait
        (or raises :class:`~flwr_sdk.errors.RetriesExhaustedError`); otherwise it
        propagates and ends the node.
        """
        address = self._config.settings.server_address
        kind = self._connector.name
        try:
            outcome = await self._serve(connection, budget)
        except _StreamDroppedError:
            return _Ending("dropped the stream after a failed instruction", 0.0)
        except _FailFastError as stop:
            reason = f"stopping at the first failed instruction: {_error_text(stop.error)}"
            return _Ending(reason, None, stop.error)
        except Exception as exc:
            rule = rule_for(exc)
            action = None if rule is None else rule.action(kind)
            if action is None or not action.retries:
                raise
            wait = budget.failed(exc, describe=f"The session with {address} ({kind})")
            log.warning("Lost the connection to %s: %s; %s", address, exc, _VERBS[action])
            return _Ending(f"lost the connection: {exc}", wait)
        if outcome.seconds:
            return _Ending(
                f"the server asked to reconnect in {outcome.seconds:g} s",
                outcome.seconds,
                asked=True,
            )
        log.info("Disconnected from %s: the server ended the session", address)
        return _Ending("the server ended the session", None)

    async def _serve(self, connection: Connection, budget: RetryBudget) -> Reconnect:
        while True:
            item = await connection.receive()
            # The server served the node: a new failure starts a new streak.
            budget.reset()
            if item is None:
                await connection.idle()
                continue
            if isinstance(item, Reconnect):
                return item
            await self._answer(connection, item)

    async def _context_for(self, connection: Connection, run_id: int) -> Context:
        context = self._contexts.get(run_id)
        if context is None:
            info = await connection.run_info(run_id)
            run_config = {k: v for k, v in info.run_config.items() if not isinstance(v, bytes)}
            # A fresh state; the node_config start_client was given (a copy per run).
            node_config = dict(self._config.node_config)
            context = Context(
                connection.node_id, node_config, RecordSet(), run_config, run_id=run_id
            )
            self._contexts[run_id] = context
        elif context.node_id != connection.node_id:
            # A new session may bring a new node id; the run's state stays.
            context.node_id = connection.node_id
        return context

    async def _answer(self, connection: Connection, message: Message) -> None:
        """Hand one instruction to user code and send the reply; report both."""
        meta = message.metadata
        kind, group = meta.message_type, meta.group_id
        context = await self._context_for(connection, meta.run_id)
        size = _tensor_bytes(message)
        log.info("Received %s instruction%s (%s)", _a(kind), _round_text(group), _size_text(size))
        self._emit(InstructionReceived(meta.run_id, meta.message_id, kind, group, size))
        started = time.monotonic()
        self._handled[kind] = self._handled.get(kind, 0) + 1
        failure: Exception | None = None
        try:
            reply = await self._call_app(message, context)
        except Exception as exc:
            failure = exc
            self._report_failure(message, exc, connection.supports_error_replies)
            if not connection.supports_error_replies:
                if self._config.fail_fast:
                    raise _FailFastError(exc) from exc
                raise _StreamDroppedError from exc
            reply = error_reply_for(message, exc)
        await connection.send(reply)
        duration = time.monotonic() - started
        if failure is None:
            reply_size = _tensor_bytes(reply)
            log.info(
                "Sent the %s reply%s (%s) after %.2f s",
                kind,
                _round_text(group),
                _size_text(reply_size),
                duration,
            )
        else:
            reply_size = 0
            log.info("Sent an error reply to the %s instruction%s", kind, _round_text(group))
        self._emit(ReplySent(kind, group, reply_size, duration, failure is not None))
        if failure is not None and self._config.fail_fast:
            raise _FailFastError(failure)

    async def _call_app(self, message: Message, context: Context) -> Message:
        app = self._config.app
        reply = await run_in_daemon_thread(lambda: app(message, context))
        if not isinstance(reply, Message):
            raise TypeError(f"the client app must return a Message, got {type(reply).__name__}")
        return reply

    def _report_failure(self, message: Message, exc: Exception, error_replies: bool) -> None:
        """Count a user-code failure, log it once and report it."""
        kind, group = message.metadata.message_type, message.metadata.group_id
        error = _error_text(exc)
        self._failed[kind] = self._failed.get(kind, 0) + 1
        self._first_errors.setdefault(kind, error)
        where = f"{_a(kind)} instruction{_round_text(group)}"
        if self._config.fail_fast:
            # No traceback here: the exception itself reaches start_client's caller.
            log.error("Client code raised %s while handling %s; stopping (fail_fast)", error, where)
        elif error_replies:
            log.error(
                "Client code raised %s while handling %s; replying with an error",
                error,
                where,
                exc_info=exc,
            )
        else:
            log.error(
                "Client code raised %s while handling %s; dropping the stream so that the "
                "server counts a failure, then joining again",
                error,
                where,
                exc_info=exc,
            )
        self._emit(InstructionFailed(kind, group, error))


async def _close_quietly(connection: Connection, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a connection, also while the surrounding task is being cancelled.

    Normally the close gets ``timeout`` s. When the node is stopped (cancelled:
    SIGINT / SIGTERM, a cancelled task) it gets :data:`STOP_CLOSE_GRACE` from then on,
    whatever further cancellations arrive, and is then cancelled until it has ended; the
    cancellation is raised again.
    """
    closing = asyncio.ensure_future(connection.close())
    try:
        await asyncio.wait_for(asyncio.shield(closing), timeout=timeout)
    except asyncio.CancelledError:
        await _finish_within(closing, STOP_CLOSE_GRACE)
        raise
    except Exception as exc:
        log.debug("Closing the connection failed: %s", exc)
        await _finish_within(closing, 0.0)


async def _finish_within(closing: asyncio.Future[None], grace: float) -> None:
    """Let ``closing`` run for ``grace`` s more, then cancel it until it has ended.

    Cancellations of the calling task meanwhile are absorbed (the caller re-raises its
    own); whatever ``closing`` ends with is retrieved and logged at DEBUG.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not closing.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            closing.cancel()
            remaining = STOP_POLL
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({closing}, timeout=remaining)
    if not closing.cancelled() and closing.exception() is not None:
        log.debug("Closing the connection failed: %s", closing.exception())
