"""Map what grpclib, h2 and the socket layer raise onto :mod:`flwr_sdk.errors`.

* :class:`~flwr_sdk.errors.ServerUnavailableError`: status ``UNAVAILABLE``; a connection
  refused, lost or reset; GOAWAY; a stalled transfer or an unanswered keepalive PING
  (:mod:`flwr_sdk.net.grpc_tuning` closes the connection then).
* :class:`~flwr_sdk.errors.TransientServerError` (a ``ServerUnavailableError``): status
  ``UNKNOWN``, ``INTERNAL`` or ``RESOURCE_EXHAUSTED`` sent by the server.
* :class:`~flwr_sdk.errors.AuthenticationError` (never retried): ``UNAUTHENTICATED``,
  ``PERMISSION_DENIED``.
* :class:`~flwr_sdk.errors.TransportError` naming the status: any other status.
* :class:`~flwr_sdk.errors.ProtocolError`: an answer gRPC does not allow (no
  ``grpc-status`` in the trailers, no or a wrong content type, a message shorter than its
  length prefix, the compressed flag without negotiated compression).

"Unavailable"-class failures (:class:`~flwr_sdk.errors.ServerUnavailableError` and its
subclass) are the kind the reconnection policy retries; how it backs off is its business.
The ``UNKNOWN`` statuses grpclib makes up itself for a malformed answer ("Missing
grpc-status header", "Invalid content-type", ...) are protocol errors, not server statuses.
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
    TransientServerError,
    TransportError,
)
from flwr_sdk.errors import ProtocolError as SdkProtocolError
from flwr_sdk.net.tls import classify_tls_error

UNAVAILABLE_STATUSES = frozenset({Status.UNAVAILABLE})
AUTH_STATUSES = frozenset({Status.UNAUTHENTICATED, Status.PERMISSION_DENIED})
TRANSIENT_STATUSES = frozenset({Status.UNKNOWN, Status.INTERNAL, Status.RESOURCE_EXHAUSTED})
# The messages of the UNKNOWN statuses grpclib 0.4.9 raises itself for a malformed answer
# (grpclib.client.Stream._raise_for_content_type / _process_grpc_status).
_LOCAL_UNKNOWN_PREFIXES = (
    "Missing grpc-status header",
    "Invalid grpc-status: ",
    "Missing content-type header",
    "Invalid content-type: ",
)
# What grpclib.stream.recv_message raises for a malformed gRPC message framing.
_MALFORMED_FRAMING = (
    (AssertionError, "Received less data than expected"),
    (NotImplementedError, "Compression not implemented"),
)
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
        if exc.status is Status.UNKNOWN and (exc.message or "").startswith(_LOCAL_UNKNOWN_PREFIXES):
            return SdkProtocolError(
                f"{what} failed: the server's answer is not gRPC: {exc.message}"
            )
        if exc.status in TRANSIENT_STATUSES:
            return TransientServerError(detail, status=exc.status.name)
        return TransportError(detail)
    for kind, text in _MALFORMED_FRAMING:
        if isinstance(exc, kind) and text in str(exc):
            return SdkProtocolError(f"{what} failed: malformed gRPC message: {exc}")
    if isinstance(exc, _UNAVAILABLE_ERRORS) and not isinstance(exc, ssl.SSLError):
        return ServerUnavailableError(f"{what} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, ProtocolError):
        return SdkProtocolError(f"{what} failed: {exc}")
    return TransportError(f"{what} failed: {type(exc).__name__}: {exc}")
