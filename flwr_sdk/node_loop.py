"""The receive → handle → reply loop of a client node, across reconnections.

Transport-independent: a :class:`~flwr_sdk.transport.base.Connector` opens sessions,
each :class:`~flwr_sdk.transport.base.Connection` yields instructions as
:class:`~flwr_sdk.common.message.Message` objects, and user code answers them through
:data:`flwr_sdk.clientapp.app.MessageApp` (a ``ClientApp``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from flwr_sdk.clientapp.dispatch import error_reply_for
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import RecordSet
from flwr_sdk.errors import ServerUnavailableError
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.validation import ClientConfig
from flwr_sdk.wire.base import Reconnect

log = logging.getLogger("flwr_sdk")

T = TypeVar("T")

CLOSE_TIMEOUT = 10.0
"""Seconds a connection gets to leave the server cleanly (e.g. DeleteNode)."""


class _InstructionFailedError(Exception):
    """User code failed on a transport that cannot carry an error reply."""


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


class NodeLoop:
    """Serve one node until the server tells it to leave, or retries run out."""

    def __init__(self, config: ClientConfig, connector: Connector) -> None:
        self._config = config
        self._connector = connector
        self._contexts: dict[int, Context] = {}

    async def run(self) -> None:
        """Connect, serve, reconnect as told or when the server drops; return when done.

        Raises:
            flwr_sdk.errors.RetriesExhaustedError: the server stayed unreachable past
                ``max_retries`` / ``max_wait_time``.
            flwr_sdk.errors.TransportError: a failure that is not worth retrying
                (TLS, authentication, message size, protocol).

        """
        address = self._config.settings.server_address
        kind = self._connector.name
        while True:
            connection = await self._config.retry.run(
                self._connector.connect,
                is_retryable=lambda exc: isinstance(exc, ServerUnavailableError),
                describe=f"connecting to {address} ({kind})",
            )
            log.info("Connected to %s over %s", address, kind)
            wait: float | None = 0.0
            try:
                outcome = await self._serve(connection)
            except ServerUnavailableError as exc:
                log.warning("Lost the connection to %s: %s; reconnecting", address, exc)
            except _InstructionFailedError:
                log.warning("Dropped the stream after a failed instruction; reconnecting")
            else:
                wait = outcome.seconds if outcome.seconds else None
            finally:
                await _close_quietly(connection)
            if wait is None:
                log.info("Disconnected from %s: the server ended the session", address)
                return
            if wait > 0:
                log.info("Server asked to reconnect in %.1f s", wait)
                await asyncio.sleep(wait)

    async def _serve(self, connection: Connection) -> Reconnect:
        while True:
            item = await connection.receive()
            if item is None:
                await asyncio.sleep(connection.poll_interval)
                continue
            if isinstance(item, Reconnect):
                return item
            reply = await self._handle(connection, item)
            await connection.send(reply)

    async def _context_for(self, connection: Connection, run_id: int) -> Context:
        context = self._contexts.get(run_id)
        if context is None:
            info = await connection.run_info(run_id)
            run_config = {k: v for k, v in info.run_config.items() if not isinstance(v, bytes)}
            # A fresh state and an empty node_config (start_client has none).
            context = Context(connection.node_id, {}, RecordSet(), run_config, run_id=run_id)
            self._contexts[run_id] = context
        elif context.node_id != connection.node_id:
            # A new session may bring a new node id; the run's state stays.
            context.node_id = connection.node_id
        return context

    async def _handle(self, connection: Connection, message: Message) -> Message:
        context = await self._context_for(connection, message.metadata.run_id)
        app = self._config.app
        try:
            return await run_in_daemon_thread(lambda: app(message, context))
        except Exception as exc:
            log.error(
                "Client code raised %s while handling a %r instruction",
                type(exc).__name__,
                message.metadata.message_type,
                exc_info=exc,
            )
            if not connection.supports_error_replies:
                raise _InstructionFailedError from exc
            return error_reply_for(message, exc)


async def _close_quietly(connection: Connection) -> None:
    """Close a connection even while the surrounding task is being cancelled."""
    closing = asyncio.ensure_future(connection.close())
    try:
        await asyncio.wait_for(asyncio.shield(closing), timeout=CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        # A stop signal arrived while closing: finish closing, then stop.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(closing, timeout=CLOSE_TIMEOUT)
        raise
    except Exception as exc:
        log.debug("Closing the connection failed: %s", exc)
