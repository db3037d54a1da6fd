"""Map what grpclib, h2 and the socket layer raise onto :mod:`flwr_sdk.errors`.

Only "unavailable"-class failures (the server cannot be reached, or went away) become
:class:`~flwr_sdk.errors.ServerUnavailableError`, the one kind the reconnection policy
retries.
"""

from __future__ import annotations

import asyncio
import ssl

import h2.exceptions
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from flwr_sdk.errors import (
    AuthenticationError,
    FlwrSdkError,
    ServerUnavailableError,
    TransportError,
)
from flwr_sdk.errors import ProtocolError as SdkProtocolError
from flwr_sdk.net.tls import classify_tls_error

UNAVAILABLE_STATUSES = frozenset({Status.UNAVAILABLE})
AUTH_STATUSES = frozenset({Status.UNAUTHENTICATED, Status.PERMISSION_DENIED})
# What the socket, h2 and grpclib raise when the server cannot be reached or went away
# (OSError includes ConnectionError; TLS failures, also OSErrors, are classified first).
_UNAVAILABLE_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    StreamTerminatedError,
    h2.exceptions.ProtocolError,
)


def map_grpc_error(
    exc: BaseException, *, host: str, what: str, tls_handshake: bool = False
) -> FlwrSdkError:
    """The flwr-sdk error for a failure of ``what`` (e.g. "PullTaskIns") against ``host``.

    ``tls_handshake`` says the failure happened while a TLS connection was being set up,
    where a connection reset means the peer does not speak TLS.
    """
    if isinstance(exc, FlwrSdkError):
        return exc
    tls = classify_tls_error(exc, host=host, during_handshake=tls_handshake)
    if tls is not None:
        return tls
    if isinstance(exc, GRPCError):
        detail = f"{what} failed: {exc.status.name}" + (f": {exc.message}" if exc.message else "")
        if exc.status in UNAVAILABLE_STATUSES:
            return ServerUnavailableError(detail)
        if exc.status in AUTH_STATUSES:
            return AuthenticationError(detail)
        return TransportError(detail)
    if isinstance(exc, _UNAVAILABLE_ERRORS) and not isinstance(exc, ssl.SSLError):
        return ServerUnavailableError(f"{what} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, ProtocolError):
        return SdkProtocolError(f"{what} failed: {exc}")
    return TransportError(f"{what} failed: {type(exc).__name__}: {exc}")
