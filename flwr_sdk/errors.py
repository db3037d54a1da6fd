"""Exception types raised by flwr-sdk.

Every error the SDK raises on purpose derives from :class:`FlwrSdkError`, so callers can
catch the whole family with one clause. Argument validation raises the built-in
``ValueError`` / ``TypeError`` (as Python APIs do), with messages that name the argument.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientAppError",
    "ConnectionClosedError",
    "FlwrSdkError",
    "MessageTooLargeError",
    "ProtocolError",
    "RetriesExhaustedError",
    "ServerUnavailableError",
    "TLSError",
    "TransportError",
    "WireLineError",
]


class FlwrSdkError(Exception):
    """Base class of every exception raised on purpose by flwr-sdk."""


class TransportError(FlwrSdkError):
    """A transport could not move a message to or from the server."""


class ServerUnavailableError(TransportError):
    """The server could not be reached or dropped the connection.

    This is the "unavailable" class of failures: the only kind that the reconnection
    policy (``max_retries`` / ``max_wait_time``) retries.
    """


class ConnectionClosedError(TransportError):
    """The server closed the stream or connection in an orderly way."""


class TLSError(TransportError):
    """Transport security could not be established.

    ``reason`` says which check failed, e.g. ``"unknown certificate authority"``,
    ``"hostname mismatch"`` or ``"server does not speak TLS"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationError(TransportError):
    """The server refused this node's credentials (never retried)."""


class MessageTooLargeError(TransportError):
    """A message exceeds the configured maximum size.

    Raised before the oversized body is read or allocated (receive side) or before it
    is written (send side). ``size`` is the message's size in bytes and ``limit`` the
    configured maximum.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ProtocolError(TransportError):
    """The peer sent something the wire protocol does not allow."""


class WireLineError(TransportError):
    """The server speaks no supported Flower wire line, or not the one asked for.

    The message names what the server answered and which lines are supported (never
    retried).
    """


class RetriesExhaustedError(FlwrSdkError):
    """Reconnection gave up: ``max_retries`` or ``max_wait_time`` was reached.

    ``attempts`` is the number of connection attempts made, ``elapsed`` the seconds spent,
    and ``__cause__`` holds the last failure.
    """

    def __init__(self, message: str, *, attempts: int, elapsed: float) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed = elapsed


class ClientAppError(FlwrSdkError):
    """User code (``client_fn`` or a ``Client`` method) raised an exception."""
