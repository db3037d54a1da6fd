"""The Fleet API over gRPC (grpc-rere): a line's typed servicer, guarded.

A line's servicer (e.g. :class:`~flwr_sdk.server.fleet_v1_12.FleetServicerV1_12`)
implements its generated ``FleetBase``'s typed methods; :class:`GuardedFleetService`
serves that base's generated ``__mapping__`` with every handler wrapped: the handler
reads its request through a stream proxy that authenticates it (when node
authentication is on) and sends the guard's initial metadata with the answer, and
failures map to the status a Flower SuperLink sends:

* undecodable request body → ``INTERNAL "Exception deserializing request!"`` (grpcio's);
  an oversized one was already refused by the tuned server (``RESOURCE_EXHAUSTED``);
* failed node authentication → ``UNAUTHENTICATED "Access denied"``;
* a request the SuperLink fails on (:class:`~flwr_sdk.server.fleet_state.FleetError`:
  unknown node in DeleteNode, empty PushTaskRes, non-UUID ancestry, unknown FAB) →
  ``UNKNOWN "Exception calling application: …"``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import grpclib
import grpclib.const
import grpclib.server
from grpclib.const import Status

from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.server.fleet_line import FleetLineServicer
from flwr_sdk.server.fleet_state import FleetError, FleetState

__all__ = [
    "ACCESS_DENIED",
    "DESERIALIZING",
    "AccessDeniedError",
    "GuardedFleetService",
    "RequestGuard",
    "caller_public_key",
]

log = logging.getLogger("flwr_sdk.server")

DESERIALIZING = "Exception deserializing request!"
ACCESS_DENIED = "Access denied"


_caller_key: ContextVar[bytes | None] = ContextVar("flwr_sdk_fleet_caller_key", default=None)


def caller_public_key() -> bytes | None:
    """The authenticated caller's public key (PEM) inside a guarded call, else None."""
    return _caller_key.get()


class AccessDeniedError(Exception):
    """The request fails node authentication (``why`` is logged, ``message`` sent)."""

    def __init__(self, why: str, message: str = ACCESS_DENIED) -> None:
        super().__init__(message)
        self.why = why
        self.message = message


class RequestGuard(Protocol):
    """Node authentication of one scheme (e.g. Flower 1.12's ECDH + HMAC)."""

    def check(self, request: Any, metadata: Mapping[str, str | bytes], state: FleetState) -> bytes:
        """Authenticate one request; return the caller's public key or raise AccessDeniedError."""
        ...

    def initial_metadata(self, request: Any) -> Mapping[str, str] | None:
        """Metadata to send before the answer to ``request`` (None: nothing)."""
        ...


class _GuardedStream:
    """What a generated handler sees of its stream: decoding, auth, initial metadata."""

    def __init__(
        self,
        stream: grpclib.server.Stream[Any, Any],
        name: str,
        guard: RequestGuard | None,
        state: FleetState,
    ) -> None:
        self._stream = stream
        self._name = name
        self._guard = guard
        self._state = state
        self._initial: Mapping[str, str] | None = None

    async def recv_message(self) -> Any:
        try:
            request = await self._stream.recv_message()
        except (MessageTooLargeError, grpclib.GRPCError):
            raise
        except Exception as exc:
            log.warning("%s: cannot decode the request: %s", self._name, exc)
            raise grpclib.GRPCError(Status.INTERNAL, DESERIALIZING) from exc
        if request is None:
            raise grpclib.GRPCError(Status.INTERNAL, DESERIALIZING)
        if self._guard is not None:
            try:
                key = self._guard.check(request, self._stream.metadata or {}, self._state)
            except AccessDeniedError as exc:
                log.warning("%s refused: %s", self._name, exc.why)
                raise grpclib.GRPCError(Status.UNAUTHENTICATED, exc.message) from None
            _caller_key.set(key)
            self._initial = self._guard.initial_metadata(request)
        return request

    async def send_message(self, message: Any) -> None:
        if self._initial is not None:
            await self._stream.send_initial_metadata(metadata=self._initial)
        await self._stream.send_message(message)


class GuardedFleetService:
    """A line's Fleet servicer as a grpclib servable, with auth and error mapping."""

    def __init__(
        self, servicer: FleetLineServicer, state: FleetState, guard: RequestGuard | None = None
    ) -> None:
        self.servicer = servicer
        self.state = state
        self.guard = guard

    def _wrap(
        self, path: str, handler: Callable[[Any], Awaitable[None]]
    ) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        name = path.rsplit("/", 1)[-1]

        async def guarded(stream: grpclib.server.Stream[Any, Any]) -> None:
            token = _caller_key.set(None)
            try:
                await handler(_GuardedStream(stream, name, self.guard, self.state))
            except FleetError as exc:
                log.warning("%s failed: %s", name, exc)
                raise grpclib.GRPCError(
                    Status.UNKNOWN, f"Exception calling application: {exc}"
                ) from None
            finally:
                _caller_key.reset(token)

        return guarded

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        """The servicer's generated handlers, each wrapped."""
        return {
            path: grpclib.const.Handler(
                self._wrap(path, handler.func),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )
            for path, handler in self.servicer.__mapping__().items()
        }
