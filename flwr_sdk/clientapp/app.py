"""``ClientApp``: the callable a node runs on every message (Flower's ``flwr.client.ClientApp``).

A node hands each received :class:`~flwr_sdk.common.message.Message` and the run's
:class:`~flwr_sdk.common.context.Context` to a :data:`MessageApp` and sends back the
message it returns. ``start_client(client_fn=…)`` / ``start_client(client=…)`` wrap the
legacy client in a :class:`ClientApp`; ``start_client(app=…)`` takes one directly.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr_sdk.clientapp.dispatch import AnyClientFn, handle_message
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message

__all__ = ["ClientApp", "MessageApp"]

MessageApp = Callable[[Message, Context], Message]
"""What a node calls for every message: ``(message, context) -> reply``."""


class ClientApp:
    """The application a client node runs: a ``client_fn`` behind Flower's message API."""

    def __init__(self, client_fn: AnyClientFn) -> None:
        self._client_fn = client_fn

    def __call__(self, message: Message, context: Context) -> Message:
        """Handle one message and return the reply."""
        return handle_message(message, context, self._client_fn)
