"""``start_client`` and ``start_client_async``: run a Flower client node.

Console output: when logging is not configured, both show flwr-sdk's INFO lines on
stderr while the node runs (:class:`ConsoleLogging`); the root logger is never touched.
See ``docs/logging-and-events.md``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.events import EventCallback
from flwr_sdk.node_loop import NodeLoop
from flwr_sdk.transport import connector_for
from flwr_sdk.transport.base import Connector
from flwr_sdk.validation import ClientConfig, validate
from flwr_sdk.wire.lines import get_line

log = logging.getLogger("flwr_sdk")

CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Format of the console lines :class:`ConsoleLogging` shows."""


class ConsoleLogging:
    """flwr-sdk's console output while nodes run, when logging is not configured.

    The rule: when a node starts and ``logging.getLogger("flwr_sdk").hasHandlers()`` is
    false (no handler on the ``flwr_sdk`` logger nor on the root logger, i.e. logging
    was not configured), a ``StreamHandler`` on stderr (format :data:`CONSOLE_FORMAT`)
    is added to the ``flwr_sdk`` logger, and that logger's level is set to INFO if it
    was unset (``NOTSET``). When the last running node stops, both are undone. Any
    handler configured beforehand (``logging.basicConfig``, a handler on ``flwr_sdk``,
    even a ``NullHandler``) means nothing is added; a level set on ``flwr_sdk`` is kept.
    The root logger is never changed.
    """

    _lock = threading.Lock()
    _users = 0
    _handler: logging.Handler | None = None
    _set_level = False

    @classmethod
    def acquire(cls) -> None:
        """A node starts: install the console handler if the rule above says so."""
        logger = logging.getLogger("flwr_sdk")
        with cls._lock:
            if cls._users == 0 and not logger.hasHandlers():
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
                logger.addHandler(handler)
                cls._handler = handler
                cls._set_level = logger.level == logging.NOTSET
                if cls._set_level:
                    logger.setLevel(logging.INFO)
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        """A node stopped: remove what :meth:`acquire` installed once no node runs."""
        logger = logging.getLogger("flwr_sdk")
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._handler is None:
                return
            logger.removeHandler(cls._handler)
            cls._handler.close()
            cls._handler = None
            if cls._set_level and logger.level == logging.INFO:
                logger.setLevel(logging.NOTSET)
            cls._set_level = False


async def _run_node(config: ClientConfig) -> None:
    ConsoleLogging.acquire()
    try:
        await NodeLoop(config, _connector(config)).run()
    finally:
        ConsoleLogging.release()


def _connector(config: ClientConfig) -> Connector:
    line = get_line(config.wire) if config.wire is not None else None
    return connector_for(config.transport, config.settings, line)


async def start_client_async(
    *,
    server_address: str,
    client_fn: Callable[[Context], Client | NumPyClient] | None = None,
    client: Client | NumPyClient | None = None,
    grpc_max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
    authentication_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey] | None = None,
    max_retries: int | None = None,
    max_wait_time: float | None = None,
    wire: str | None = None,
    app: ClientApp | None = None,
    fail_fast: bool = False,
    on_event: EventCallback | None = None,
    node_config: Mapping[str, bool | int | float | str] | None = None,
) -> None:
    """Run a client node inside an already running event loop.

    Same arguments and behaviour as :func:`start_client`, except that it installs no
    signal handlers: cancel the task to stop the node (its connection is closed and,
    on the Fleet API transports, the node unregistered before the cancellation
    propagates).
    """
    # The arguments, exactly as given: validate() checks each by name.
    config = validate(**locals())
    await _run_node(config)


STOP_RECANCEL = 0.2
"""Seconds between two cancellations of a node that a signal stopped and that still runs."""


async def _run_until_signal(config: ClientConfig) -> None:
    """Run the node as a task of its own; SIGINT / SIGTERM cancel it, until it has ended.

    One ``cancel()`` is not always enough: grpclib turns a cancellation that lands while
    its connection dies into a StreamTerminatedError (which would look like a lost
    connection and a re-join), so after a signal the node is cancelled again every
    :data:`STOP_RECANCEL` s until it has stopped. Its close gets a short grace for
    DeleteNode (:data:`flwr_sdk.node_loop.STOP_CLOSE_GRACE`), so the process exits within
    a second of the signal in every state.
    """
    loop = asyncio.get_running_loop()
    node = asyncio.create_task(_run_node(config), name="flwr-sdk-node")
    received: list[str] = []

    def cancel_until_done() -> None:
        if not node.done():
            node.cancel()
            loop.call_later(STOP_RECANCEL, cancel_until_done)

    def stop(name: str) -> None:
        if not received:
            log.info("Received %s: leaving the server and stopping", name)
            received.append(name)
            cancel_until_done()

    handled = (signal.SIGINT, signal.SIGTERM)
    install = threading.current_thread() is threading.main_thread()
    if install:
        for sig in handled:
            loop.add_signal_handler(sig, stop, sig.name)
    try:
        try:
            await asyncio.wait({node})
        except asyncio.CancelledError:
            # Our own task was cancelled (not by a signal): stop the node, then go.
            while not node.done():
                node.cancel()
                await asyncio.wait({node}, timeout=STOP_RECANCEL)
            raise
    finally:
        if install:
            for sig in handled:
                loop.remove_signal_handler(sig)
    if node.cancelled():
        if received:
            return
        raise asyncio.CancelledError
    node.result()


def start_client(
    *,
    server_address: str,
    client_fn: Callable[[Context], Client | NumPyClient] | None = None,
    client: Client | NumPyClient | None = None,
    grpc_max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
    authentication_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey] | None = None,
    max_retries: int | None = None,
    max_wait_time: float | None = None,
    wire: str | None = None,
    app: ClientApp | None = None,
    fail_fast: bool = False,
    on_event: EventCallback | None = None,
    node_config: Mapping[str, bool | int | float | str] | None = None,
) -> None:
    """Start a Flower client node that connects to a Flower server; block until done.

    Args:
        server_address: ``host:port`` of the server: an IPv4 address, a bracketed IPv6
            address (``[::1]:8080``) or a host name. For ``transport="rest"`` a base URL,
            ``http://host:port`` or ``https://host:port``.
        client_fn: called with the node's :class:`Context` for every instruction; returns
            the :class:`Client` (or :class:`NumPyClient`) that handles it. Give exactly
            one of ``client_fn``, ``client`` and ``app``.
        client: one client instance used for every instruction.
        grpc_max_message_length: largest gRPC message, in bytes, the node sends or
            accepts (default 512 MiB). Larger messages are refused before they are read.
            The server must allow the same size.
        root_certificates: PEM root certificates, as bytes or as a path to a file. When
            given, the connection uses TLS and trusts exactly these roots.
        insecure: ``True`` for a plaintext connection; ``False`` for TLS, verified
            against ``root_certificates`` or, when none are given, the system trust
            store. Default: plaintext unless ``root_certificates`` are given.
        transport: ``"grpc-bidi"`` (default; bidirectional stream), ``"grpc-rere"``
            (request-response Fleet API over gRPC; on a Flower 1.42 SuperLink its gRPC
            Fleet service) or ``"rest"`` (Fleet API over HTTP; on 1.42 the SuperLink's
            ``/v1/fleet/`` API). Which name reaches which endpoint on each Flower line:
            ``docs/lines.md``.
        authentication_keys: ``(private_key, public_key)`` EC key pair for node
            authentication (``grpc-rere``; also ``rest`` on Flower 1.42, where it must be
            a key the operator registered with ``flwr supernode register``; without
            it a 1.42 node signs with a fresh key per session and registers itself).
        max_retries: how many times to retry when the server is unavailable or answers
            with a transient error (connecting, registering again, re-joining, and each
            pull, push, GetRun, GetFab) before giving up; ``None`` retries without limit
            (a transient server error at most 4 times). At most ``max_retries + 1``
            attempts are made in a row. See ``docs/reliability.md``.
        max_wait_time: how many seconds in total to keep trying in a row; ``None``
            means no limit.
        wire: the Flower wire line of the Fleet API (``"1.12"``, ``"1.15"``, ``"1.42"``); ``None``
            (default) detects it before each registration and logs it. Not one of
            Flower's arguments; only for ``grpc-rere`` and ``rest`` (grpc-bidi is the
            same on every line).
        app: a :class:`~flwr_sdk.client.ClientApp` (with its mods and handlers) to run
            instead of ``client_fn`` / ``client``. Not one of Flower's arguments.
        fail_fast: ``True`` stops the node at the first failure of user code
            (``client_fn`` raising or returning the wrong type, ``fit`` / ``evaluate``
            raising): on ``grpc-rere`` / ``rest`` the error reply is still sent, the node
            leaves the server (unregisters) and ``start_client`` raises the user's own
            exception. ``False`` (default, Flower's behaviour): the failure is logged
            with its traceback, the server gets an error reply (on grpc-bidi: the
            stream is dropped and joined again) and the node goes on; the failures are
            counted and summarised when the node stops. Not one of Flower's arguments.
        on_event: called with each typed progress event of :mod:`flwr_sdk.events`
            (connected, registered, retrying, bytes moving, instruction received /
            failed, reply sent, disconnected, stopped), in order, on the node's event
            loop thread; it must return quickly. An exception it raises is logged at
            DEBUG and otherwise ignored. Not one of Flower's arguments.
        node_config: ``Context.node_config`` for every run the node serves (e.g.
            ``{"partition-id": 0, "num-partitions": 2}``), as ``flower-supernode
            --node-config`` gives it; default empty, as Flower's ``start_client`` has
            it. Not one of Flower's arguments.

    Raises:
        TypeError, ValueError: an argument is invalid (raised before connecting).
        flwr_sdk.errors.RetriesExhaustedError: the server stayed unavailable past
            ``max_retries`` / ``max_wait_time``.
        flwr_sdk.errors.TLSError: TLS could not be established (says why).
        flwr_sdk.errors.AuthenticationError: the server refused the node's keys.
        flwr_sdk.errors.WireLineError: the server speaks no supported Flower line, or
            not the one ``wire`` names.
        flwr_sdk.errors.TransportError: another connection failure that is not retried.
        Exception: with ``fail_fast=True``, the exception user code raised first (the
            original object, with its traceback).

    Logging: one INFO line per instruction received and per reply sent, a user-code
    failure once with its traceback, and a summary when the node stops (at ERROR when
    instructions failed, e.g. ``"3 of 3 train instructions failed (first: ValueError:
    …)"``), on the ``flwr_sdk`` loggers. When logging is not configured at all, these
    lines go to stderr while the node runs (:class:`ConsoleLogging`); the root logger
    is never changed. See ``docs/logging-and-events.md``.

    Ctrl+C (SIGINT) or SIGTERM stops the node cleanly within a second, whatever it is
    doing: the connection is closed (and the node unregistered on the Fleet API
    transports, given 0.5 s) and ``start_client`` returns.

    """
    # The arguments, exactly as given: validate() checks each by name.
    config = validate(**locals())
    asyncio.run(_run_until_signal(config))
