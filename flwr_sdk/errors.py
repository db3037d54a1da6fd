"""Exception types raised by flwr-sdk.

Every error the SDK raises on purpose derives from :class:`FlwrSdkError`, so callers can
catch the whole family with one clause. Argument validation raises the built-in
``ValueError`` / ``TypeError`` (as Python APIs do), with messages that name the argument.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientAppError",
    "ClientAppUsageError",
    "ConnectionClosedError",
    "FlwrSdkError",
    "InvalidReplyError",
    "LegacyStatusError",
    "MalformedMessageError",
    "MalformedRequestError",
    "MessageTooLargeError",
    "ModInputError",
    "NodeAppError",
    "NodeReplyError",
    "NodeRequestError",
    "NodeUnavailableError",
    "ObjectIntegrityError",
    "ProtocolError",
    "ReplyRuleError",
    "ReplyTimeoutError",
    "RetriesExhaustedError",
    "ServerUnavailableError",
    "TLSError",
    "TransientServerError",
    "TransportError",
    "UnhandledMessageTypeError",
    "UnsupportedFeatureError",
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


class TransientServerError(ServerUnavailableError):
    """The server answered with a status that says "try again later".

    gRPC ``UNKNOWN``, ``INTERNAL`` or ``RESOURCE_EXHAUSTED`` sent by the server (for
    example a SuperLink whose SQLite state answers UNKNOWN "database is locked", or a
    legacy server ending ``Join`` with INTERNAL). An "unavailable"-class error, so it is
    retried, but a retry policy may back off from it differently. ``status`` is the gRPC
    status name (e.g. ``"UNKNOWN"``), or ``None`` when not known.
    """

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


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


class MalformedMessageError(ProtocolError):
    """A message from the peer has the wrong shape, so it cannot be read.

    A field holds a value its declared type forbids (what a valid protobuf of another
    message type decodes to), an integer out of its type's range, an enum value the
    protocol does not define, or a value the reading code could not use. ``what`` names
    the message (e.g. ``"CreateNode response"``) and ``field`` the offending field's path
    (e.g. ``"node.node_id"``), or ``""`` when no single field is to blame.
    """

    def __init__(self, message: str, *, what: str, field: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.field = field


class ObjectIntegrityError(MalformedMessageError):
    """A content-addressed object (Flower 1.42 line) is not the object its id names.

    Its SHA-256 differs from its id, or it is not the object the message's object tree
    says belongs there. ``object_id`` is the id that was asked for; the object is refused
    and never reaches user code.
    """

    def __init__(self, message: str, *, object_id: str, what: str = "object") -> None:
        super().__init__(message, what=what, field="object_id")
        self.object_id = object_id


class ReplyRuleError(ProtocolError):
    """A reply does not answer its instruction by the line's reply rules.

    ``rules`` names every rule broken (``"run_id"``, ``"created_at"``, …). The server
    would drop or refuse such a reply, so it is never sent.
    """

    def __init__(self, message: str, *, rules: tuple[str, ...]) -> None:
        super().__init__(message)
        self.rules = rules


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


class ClientAppUsageError(FlwrSdkError, ValueError):
    """A ``ClientApp`` is set up wrongly (raised while it is built, never per message).

    For example a ``client_fn`` that cannot be called with one argument (the Context),
    a ``client_fn`` together with ``@app.train()``-style functions, or one message type
    registered twice. A ``ValueError``, as in Flower.
    """


class ModInputError(FlwrSdkError, KeyError, ValueError):
    """A mod cannot work on this message; the text says which value is missing or wrong.

    For example a clipping mod whose instruction lacks the server's ``clipping_norm``, or
    whose reply carries different arrays than the instruction. Both a ``KeyError`` and a
    ``ValueError``, the two types Flower raises in these places.
    """

    def __str__(self) -> str:
        """The message itself (``KeyError`` would show its repr)."""
        return str(self.args[0]) if self.args else ""


class UnsupportedFeatureError(FlwrSdkError, ImportError):
    """A Flower name that flwr-sdk leaves out on purpose; the text says why and what to use.

    Raised when the name is imported, e.g. ``from flwr_sdk.client.mod import secagg_mod``.
    """


# ----------------------------------------------------------------------------------------
# The reference server: what one server → node request can end in


class NodeRequestError(FlwrSdkError):
    """A request the reference server sent to one node did not produce a usable reply.

    ``node_id`` is the node asked (``None`` when not known where it was raised).
    """

    def __init__(self, message: str, *, node_id: int | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


class NodeUnavailableError(NodeRequestError):
    """The node is not connected, or left (stream closed, deleted, missed pings) first."""


class ReplyTimeoutError(NodeRequestError, TimeoutError):
    """The node did not reply within the request's timeout."""


class InvalidReplyError(NodeRequestError):
    """The node replied, but its content is not the reply type asked for.

    ``__cause__`` holds the decoding error (e.g. a ``RecordSetDecodeError``).
    """


class LegacyStatusError(NodeRequestError):
    """A legacy result (``FitRes``, ``EvaluateRes``, …) reports a status other than OK.

    ``code`` is the status code number, ``status_message`` its message.
    """

    def __init__(self, message: str, *, node_id: int, code: int, status_message: str) -> None:
        super().__init__(message, node_id=node_id)
        self.code = code
        self.status_message = status_message


class NodeReplyError(NodeRequestError):
    """The node answered with an ``Error`` instead of content.

    ``code`` is ``Error.code`` (1: the node could not load its app, 2: the app raised),
    ``reason`` the full ``Error.reason``. For the Flower form
    ``<class 'pkg.ErrorType'>:<'text'>``, ``error_type`` is ``"pkg.ErrorType"`` and
    ``detail`` is ``"text"``; otherwise ``error_type`` is ``""`` and ``detail`` the reason.
    The reference server raises the most specific subclass that fits.
    """

    def __init__(
        self,
        message: str,
        *,
        node_id: int,
        code: int,
        reason: str,
        error_type: str,
        detail: str,
    ) -> None:
        super().__init__(message, node_id=node_id)
        self.code = code
        self.reason = reason
        self.error_type = error_type
        self.detail = detail


class UnhandledMessageTypeError(NodeReplyError):
    """The node has no handler for the request's ``message_type`` (``Invalid message type``)."""


class MalformedRequestError(NodeReplyError):
    """The node could not decode the request's content (a ``RecordSetDecodeError``)."""


class NodeAppError(NodeReplyError):
    """The node's handler or client code raised an exception while answering."""
