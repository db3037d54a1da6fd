"""``ClientApp``: the callable a node runs on every message (Flower's ``flwr.client.ClientApp``).

A node hands each received :class:`~flwr_sdk.common.message.Message` and the run's
:class:`~flwr_sdk.common.context.Context` to a :data:`MessageApp` and sends back the
message it returns. ``start_client(client_fn=…)`` / ``start_client(client=…)`` wrap the
legacy client in a :class:`ClientApp`; ``start_client(app=…)`` takes one directly.

A ``ClientApp`` answers messages in one of two ways, never both:

* ``ClientApp(client_fn=…)``: the legacy ``Client`` / ``NumPyClient`` API
  (``train`` → ``fit``, ``evaluate``, ``get_parameters``, ``get_properties``), or the
  typed handlers of :meth:`flwr_sdk.clientapp.handlers.MessageHandlers.client_fn`;
* ``ClientApp()`` with functions registered by ``@app.train()``, ``@app.evaluate()`` and
  ``@app.query()``, each called as ``fn(message, context) -> Message``.

Mods (``mods=[…]``) wrap whatever answers the message: each is called as
``mod(message, context, call_next)`` and the first one in the list runs outermost.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from flwr_sdk.clientapp.dispatch import AnyClientFn, adapt_client_fn, handle_message
from flwr_sdk.clientapp.handlers import UnknownMessageTypeError
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message, MessageType
from flwr_sdk.errors import ClientAppUsageError

__all__ = ["ClientApp", "ClientAppCallable", "MessageApp", "Mod", "make_ffn"]

ClientAppCallable = Callable[[Message, Context], Message]
"""A function that answers a message: ``(message, context) -> reply``."""
MessageApp = ClientAppCallable
"""What a node calls for every message (a :class:`ClientApp`)."""
Mod = Callable[[Message, Context, ClientAppCallable], Message]
"""A mod: ``mod(message, context, call_next) -> reply``; it calls ``call_next(message,
context)`` to run the rest of the chain (or answers without it)."""

_FUNCTION_TYPES = (MessageType.TRAIN, MessageType.EVALUATE, MessageType.QUERY)


def make_ffn(ffn: ClientAppCallable, mods: Sequence[Mod]) -> ClientAppCallable:
    """Wrap ``ffn`` in ``mods``: the first mod runs first and its ``call_next`` is the next.

    With ``mods=[a, b]`` a message goes ``a → b → ffn`` and the reply comes back
    ``ffn → b → a``. An empty list returns ``ffn`` itself.
    """
    for mod in reversed(mods):
        ffn = _link(mod, ffn)
    return ffn


def _link(mod: Mod, call_next: ClientAppCallable) -> ClientAppCallable:
    def linked(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)

    return linked


def _check_mods(mods: object) -> tuple[Mod, ...]:
    if mods is None:
        return ()
    if isinstance(mods, (str, bytes)) or not isinstance(mods, Sequence):
        raise TypeError(f"mods must be a list of callables or None, got {type(mods).__name__}")
    for index, mod in enumerate(mods):
        if not callable(mod):
            raise TypeError(
                f"mods[{index}] must be callable (message, context, call_next), "
                f"got {type(mod).__name__}"
            )
    return tuple(mods)


def _check_client_fn(client_fn: object) -> AnyClientFn:
    if not callable(client_fn):
        raise TypeError(
            f"client_fn must be callable (context: Context) -> Client, "
            f"got {type(client_fn).__name__}"
        )
    try:
        signature = inspect.signature(client_fn)
    except (TypeError, ValueError):  # builtins and some C callables have none
        signature = None
    if signature is not None:
        try:
            signature.bind(None)
        except TypeError:
            raise ClientAppUsageError(
                "client_fn must take exactly one argument, the Context: "
                f"`def client_fn(context: Context)`; got a callable with signature {signature} "
                "(import Context with `from flwr_sdk.common import Context`)"
            ) from None
    return adapt_client_fn(client_fn)


class ClientApp:
    """The application a client node runs on every message.

    Args:
        client_fn: called with the run's :class:`Context` for every legacy message; returns
            the :class:`~flwr_sdk.clientapp.client.Client` (or ``NumPyClient``) that
            handles it. The deprecated ``client_fn(cid: str)`` form is adapted with a
            warning, as in Flower. Leave it out to register functions with
            :meth:`train`, :meth:`evaluate` and :meth:`query` instead.
        mods: callables ``mod(message, context, call_next) -> Message`` run around every
            message, the first one outermost (see :mod:`flwr_sdk.clientapp.mods`).

    Raises:
        TypeError: ``client_fn`` is not callable, or ``mods`` is not a list of callables.
        flwr_sdk.errors.ClientAppUsageError: ``client_fn`` cannot be called with one
            argument.

    Example::

        app = ClientApp(client_fn=lambda context: FlowerClient().to_client(),
                        mods=[message_size_mod])

        app = ClientApp()

        @app.train()
        def train(message: Message, context: Context) -> Message:
            return message.create_reply(content=message.content)

    """

    def __init__(
        self, client_fn: AnyClientFn | None = None, mods: Sequence[Mod] | None = None
    ) -> None:
        self._mods = _check_mods(mods)
        self._client_fn: AnyClientFn | None = None
        self._legacy: ClientAppCallable | None = None
        self._functions: dict[str, ClientAppCallable] = {}
        if client_fn is not None:
            checked = _check_client_fn(client_fn)
            self._client_fn = checked

            def legacy(message: Message, context: Context) -> Message:
                return handle_message(message, context, checked)

            self._legacy = make_ffn(legacy, self._mods)

    @property
    def mods(self) -> tuple[Mod, ...]:
        """The mods run around every message, outermost first."""
        return self._mods

    @property
    def client_fn(self) -> AnyClientFn | None:
        """The ``client_fn`` this app was built with (adapted from ``cid`` form), if any."""
        return self._client_fn

    @property
    def message_types(self) -> tuple[str, ...]:
        """The message types answered by registered functions, in registration order."""
        return tuple(self._functions)

    def __call__(self, message: Message, context: Context) -> Message:
        """Answer one message (through the mods) and return the reply.

        Raises:
            flwr_sdk.clientapp.handlers.UnknownMessageTypeError: no function is registered
                for the message's type (``ClientApp`` without ``client_fn``).
            ValueError: the legacy client does not know the message type.
            TypeError: the reply is not a :class:`Message`.
            Exception: whatever ``client_fn``, the client, a function or a mod raised.

        """
        answer = self._legacy
        if answer is None:
            message_type = message.metadata.message_type
            answer = self._functions.get(message_type)
            if answer is None:
                raise UnknownMessageTypeError(message_type, self.message_types, legacy=False)
        reply = answer(message, context)
        if not isinstance(reply, Message):
            raise TypeError(
                f"the ClientApp's answer to a {message.metadata.message_type!r} message "
                f"must be a Message, got {type(reply).__name__}"
            )
        return reply

    def train(self) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Decorator: answer ``train`` messages with ``fn(message, context) -> Message``.

        Raises:
            flwr_sdk.errors.ClientAppUsageError: the app has a ``client_fn``, or a
                ``train`` function is already registered.
            TypeError: the decorated object is not callable.

        """
        return self._register(MessageType.TRAIN)

    def evaluate(self) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Decorator: answer ``evaluate`` messages with ``fn(message, context) -> Message``.

        Raises the same errors as :meth:`train`.
        """
        return self._register(MessageType.EVALUATE)

    def query(self) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Decorator: answer ``query`` messages with ``fn(message, context) -> Message``.

        Raises the same errors as :meth:`train`.
        """
        return self._register(MessageType.QUERY)

    def _register(self, message_type: str) -> Callable[[ClientAppCallable], ClientAppCallable]:
        assert message_type in _FUNCTION_TYPES

        def register(fn: ClientAppCallable) -> ClientAppCallable:
            if self._legacy is not None:
                raise ClientAppUsageError(
                    f"use either `@app.{message_type}()` or `client_fn`, not both: this "
                    "ClientApp was built with a client_fn, which answers every message. "
                    f"Build it as `ClientApp()` (optionally with mods) to register a "
                    f"{message_type} function"
                )
            if not callable(fn):
                raise TypeError(
                    f"@app.{message_type}() must decorate a function "
                    f"(message, context) -> Message, got {type(fn).__name__}"
                )
            if message_type in self._functions:
                raise ClientAppUsageError(
                    f"a {message_type} function is already registered on this ClientApp"
                )
            self._functions[message_type] = make_ffn(fn, self._mods)
            return fn

        return register
