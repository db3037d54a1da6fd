"""``start_client`` and ``start_client_async``: run a Flower client node."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.node_loop import NodeLoop
from flwr_sdk.transport import connector_for
from flwr_sdk.transport.base import Connector
from flwr_sdk.validation import ClientConfig, validate
from flwr_sdk.wire.lines import get_line

log = logging.getLogger("flwr_sdk")


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
) -> None:
    """Run a client node inside an already running event loop.

    Same arguments and behaviour as :func:`start_client`, except that it installs no
    signal handlers: cancel the task to stop the node (its connection is closed and,
    on the Fleet API transports, the node unregistered before the cancellation
    propagates).
    """
    # The arguments, exactly as given: validate() checks each by name.
    config = validate(**locals())
    await NodeLoop(config, _connector(config)).run()


async def _run_until_signal(config: ClientConfig) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[str] = []

    def stop(name: str) -> None:
        if not received:
            log.info("Received %s: leaving the server and stopping", name)
            received.append(name)
            task.cancel()

    handled = (signal.SIGINT, signal.SIGTERM)
    install = threading.current_thread() is threading.main_thread()
    if install:
        for sig in handled:
            loop.add_signal_handler(sig, stop, sig.name)
    try:
        await NodeLoop(config, _connector(config)).run()
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        if install:
            for sig in handled:
                loop.remove_signal_handler(sig)


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
            (request-response Fleet API over gRPC) or ``"rest"`` (Fleet API over HTTP).
        authentication_keys: ``(private_key, public_key)`` EC key pair for node
            authentication (``grpc-rere`` only).
        max_retries: how many times to retry connecting when the server is unavailable
            before giving up; ``None`` retries without limit. At most
            ``max_retries + 1`` connection attempts are made.
        max_wait_time: how many seconds in total to keep trying to reach an unavailable
            server; ``None`` means no limit.
        wire: the Flower wire line of the Fleet API (``"1.12"``, ``"1.15"``); ``None``
            (default) detects it before each registration and logs it. Not one of
            Flower's arguments; only for ``grpc-rere`` and ``rest`` (grpc-bidi is the
            same on every line).
        app: a :class:`~flwr_sdk.client.ClientApp` (with its mods and handlers) to run
            instead of ``client_fn`` / ``client``. Not one of Flower's arguments.

    Raises:
        TypeError, ValueError: an argument is invalid (raised before connecting).
        flwr_sdk.errors.RetriesExhaustedError: the server stayed unavailable past
            ``max_retries`` / ``max_wait_time``.
        flwr_sdk.errors.TLSError: TLS could not be established (says why).
        flwr_sdk.errors.AuthenticationError: the server refused the node's keys.
        flwr_sdk.errors.WireLineError: the server speaks no supported Flower line, or
            not the one ``wire`` names.
        flwr_sdk.errors.TransportError: another connection failure that is not retried.

    Ctrl+C (SIGINT) or SIGTERM stops the node cleanly: the connection is closed (and
    the node unregistered on the Fleet API transports) and ``start_client`` returns.

    """
    # The arguments, exactly as given: validate() checks each by name.
    config = validate(**locals())
    asyncio.run(_run_until_signal(config))
