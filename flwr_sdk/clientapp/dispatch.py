"""Run a legacy client on a :class:`~flwr_sdk.common.message.Message` and build the reply.

:func:`handle_message` is what the receive → handle → reply loop calls for every
message: it asks ``client_fn`` for a client, hands it the :class:`Context`, dispatches by
``message_type`` to ``fit`` / ``evaluate`` / ``get_parameters`` / ``get_properties`` and
returns the reply. Exceptions propagate; the caller turns them into an error reply with
:func:`error_reply_for` (grpc-rere, REST) or lets them end the client (grpc-bidi).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.handlers import LEGACY_MESSAGE_TYPES, HandlersClientFn
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_records import LEGACY_KINDS_BY_TYPE
from flwr_sdk.common.message import Error, ErrorCode, Message

__all__ = [
    "LOAD_CLIENT_APP_REASON",
    "AnyClientFn",
    "ClientFn",
    "adapt_client_fn",
    "error_reply_for",
    "handle_message",
    "load_error_reply_for",
    "to_client",
]

logger = logging.getLogger("flwr_sdk")

ClientFn = Callable[[Context], Client]
"""A function that returns the client for a message, given the run's Context."""
AnyClientFn = Callable[[Context], Client | NumPyClient]
"""A ``client_fn`` that may also return a :class:`NumPyClient` (converted with a warning)."""

LOAD_CLIENT_APP_REASON = "An exception was raised when attempting to load `ClientApp`"
"""``Error.reason`` of replies with code ``LOAD_CLIENT_APP_EXCEPTION``."""


def to_client(client: object) -> Client:
    """Return ``client`` as a :class:`Client`, converting a NumPyClient with a warning.

    Raises:
        TypeError: ``client`` is neither a Client nor a NumPyClient.

    """
    if isinstance(client, Client):
        return client
    if isinstance(client, NumPyClient):
        logger.warning(
            "client_fn returned a NumPyClient (%s); it should return a Client. "
            "Converting it with NumPyClient.to_client(); call to_client() in client_fn "
            "to silence this warning.",
            type(client).__name__,
        )
        return client.to_client()
    raise TypeError(f"client_fn must return a Client or a NumPyClient, got {type(client).__name__}")


def handle_message(message: Message, context: Context, client_fn: AnyClientFn) -> Message:
    """Handle one legacy instruction and return the reply message.

    Calls ``client_fn(context)`` (a NumPyClient result is converted with a warning), sets
    the client's ``context``, dispatches by ``message_type`` (``train`` → ``fit``,
    ``evaluate``, ``get_parameters``, ``get_properties``) and returns
    ``message.create_reply(content)`` with the result stored under the fixed legacy keys.
    A ``client_fn`` made by :meth:`flwr_sdk.clientapp.handlers.MessageHandlers.client_fn`
    sends its registered message types to their typed handlers instead (without calling
    ``client_fn``); other types it does not know raise ``UnknownMessageTypeError``.

    Raises:
        ValueError: ``message`` carries an error instead of content, or its message type
            is not one of the four above ("Invalid message type: X").
        TypeError: ``client_fn`` or a client method returned the wrong type.
        Exception: whatever ``client_fn`` or the client raised.

    """
    if not message.has_content():
        raise ValueError("cannot handle a message that carries an error instead of content")
    if isinstance(client_fn, HandlersClientFn):
        if client_fn.handlers.handles(message.metadata.message_type):
            return client_fn.handlers.handle(message, context)
        if message.metadata.message_type not in LEGACY_MESSAGE_TYPES:
            raise client_fn.unknown(message.metadata.message_type)
    client = to_client(client_fn(context))
    client.context = context
    message_type = message.metadata.message_type
    kind = LEGACY_KINDS_BY_TYPE.get(message_type)
    if kind is None:
        raise ValueError(f"Invalid message type: {message_type}")
    # The instruction's tensors stay in the message; the result's move into the reply.
    ins = kind.recordset_to_ins(message.content, keep_input=True)
    res = getattr(client, kind.method)(ins)
    if not isinstance(res, kind.res_type):
        expected = kind.res_type.__name__
        raise TypeError(f"Client.{kind.method} must return {expected}, got {type(res).__name__}")
    return message.create_reply(kind.res_to_recordset(res, keep_input=False))


def error_reply_for(message: Message, exc: BaseException) -> Message:
    """Return the error reply for an exception raised by ``client_fn`` or the client.

    ``Error.code`` is ``CLIENT_APP_RAISED_EXCEPTION`` (2) and ``Error.reason`` is
    Flower's format, e.g. ``<class 'ValueError'>:<'some failure'>``.
    """
    reason = f"{type(exc)}:<'{exc}'>"
    return message.create_error_reply(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason)
    )


def load_error_reply_for(message: Message) -> Message:
    """Return the error reply for a client application that could not be loaded (code 1)."""
    return message.create_error_reply(
        Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=LOAD_CLIENT_APP_REASON)
    )


def adapt_client_fn(client_fn: Callable[..., Any]) -> AnyClientFn:
    """Accept the deprecated ``client_fn(cid: str)`` form next to ``client_fn(context)``.

    A function whose single parameter is named ``cid`` or annotated ``str`` is wrapped
    (with a warning) so that it receives ``str(node_config.get("partition-id",
    node_id))``, as Flower does. Any other callable is returned unchanged.

    Raises:
        TypeError: ``client_fn`` is not callable.

    """
    if not callable(client_fn):
        raise TypeError(f"client_fn must be callable, got {type(client_fn).__name__}")
    try:
        parameters = list(inspect.signature(client_fn).parameters.values())
    except (TypeError, ValueError):
        return client_fn
    if len(parameters) != 1 or (
        parameters[0].name != "cid" and parameters[0].annotation not in (str, "str")
    ):
        return client_fn
    logger.warning(
        "client_fn(cid: str) is deprecated; define client_fn(context: Context) and read "
        "context.node_id / context.node_config instead."
    )

    def context_client_fn(context: Context) -> Client | NumPyClient:
        cid = str(context.node_config.get("partition-id", context.node_id))
        result: Client | NumPyClient = client_fn(cid)
        return result

    return context_client_fn
