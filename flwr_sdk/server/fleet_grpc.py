"""The Fleet API over gRPC (grpc-rere): a line's typed servicer, guarded.

A line's servicer (e.g. :class:`~flwr_sdk.server.fleet_v1_12.FleetServicerV1_12`)
implements its generated ``FleetBase``'s typed methods; :class:`GuardedFleetService`
serves that base's generated ``__mapping__`` with every handler wrapped. Node
authentication (a :class:`RequestGuard`, one per line's scheme) runs in two steps, as a
SuperLink's interceptor does: :meth:`RequestGuard.admit` judges the call from its method
and metadata alone, before the request is read; the check it returns judges the decoded
request (e.g. that it is about the caller's own node). The answer carries the guard's
initial metadata. Failures map to the status a Flower SuperLink sends:

* undecodable request body → ``INTERNAL "Exception deserializing request!"`` (grpcio's);
  an oversized one was already refused by the tuned server (``RESOURCE_EXHAUSTED``);
* failed node authentication → ``UNAUTHENTICATED`` with the scheme's text (1.12:
  ``"Access denied"``; 1.15: ``"Missing authentication metadata"``, ``"Invalid node
  ID"``, …);
* a request the SuperLink fails on (:class:`~flwr_sdk.server.fleet_state.FleetError`:
  unknown node in DeleteNode, empty push, non-UUID reply reference, unknown FAB) →
  ``UNKNOWN "Exception calling application: …"``;
* a coded refusal (:class:`~flwr_sdk.server.fleet_state.FleetRefusedError`, Flower 1.42)
  → the gRPC status of its HTTP status (:data:`REFUSAL_STATUS`: 400 ``INVALID_ARGUMENT``,
  403 ``PERMISSION_DENIED``, 412 ``FAILED_PRECONDITION``) with the details JSON
  ``{"code": …, "public_message": …, "public_details": null}``.

The Fleet methods of the other wire lines, which this line lacks, are answered
``UNIMPLEMENTED "Method not found!"`` as grpcio does (with a ``content-type``, unlike
grpclib's own answer for an unknown path, which a grpclib client reads as ``UNKNOWN``),
except under a guard whose scheme intercepts every ``/flwr.proto.Fleet/*`` call before
the method is looked up (:attr:`RequestGuard.answers_every_fleet_method`, Flower 1.15):
there such a call is refused as any other, and once admitted answered ``UNKNOWN "Error
in service handler!"`` (what grpcio answers when the 1.15 interceptor finds no method).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import grpclib
import grpclib.const
import grpclib.server
from grpclib.const import Status

from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.server.fleet_line import FleetLineServicer
from flwr_sdk.server.fleet_state import FleetError, FleetRefusedError, FleetState
from flwr_sdk.wire.base import Rpc
from flwr_sdk.wire.lines import all_lines

__all__ = [
    "ACCESS_DENIED",
    "DESERIALIZING",
    "METHOD_NOT_FOUND",
    "NO_SERVICE_HANDLER",
    "REFUSAL_STATUS",
    "AccessDeniedError",
    "GuardedFleetService",
    "RequestCheck",
    "RequestGuard",
    "caller_public_key",
    "calling_as",
    "refusal_to_grpc",
]

log = logging.getLogger("flwr_sdk.server")

DESERIALIZING = "Exception deserializing request!"
ACCESS_DENIED = "Access denied"
NO_SERVICE_HANDLER = "Error in service handler!"
METHOD_NOT_FOUND = "Method not found!"


_caller_key: ContextVar[bytes | None] = ContextVar("flwr_sdk_fleet_caller_key", default=None)


def caller_public_key() -> bytes | None:
    """The authenticated caller's public key (PEM) inside a guarded call, else None."""
    return _caller_key.get()


@contextlib.contextmanager
def calling_as(public_key: bytes | None) -> Iterator[None]:
    """Make ``public_key`` the caller's key for the calls inside (other front ends)."""
    token = _caller_key.set(public_key)
    try:
        yield
    finally:
        _caller_key.reset(token)


REFUSAL_STATUS: Mapping[int, Status] = {
    400: Status.INVALID_ARGUMENT,
    403: Status.PERMISSION_DENIED,
    412: Status.FAILED_PRECONDITION,
}
"""HTTP status of a coded refusal → the gRPC status the SuperLink sends instead."""


def refusal_to_grpc(exc: FleetRefusedError) -> grpclib.GRPCError:
    """A coded refusal as the SuperLink's gRPC error (details: a JSON object)."""
    details = json.dumps({"code": exc.code, "public_message": exc.detail, "public_details": None})
    return grpclib.GRPCError(REFUSAL_STATUS.get(exc.status, Status.UNKNOWN), details)


class AccessDeniedError(Exception):
    """The request fails node authentication (``why`` is logged, ``message`` sent).

    ``expected``: a refusal that well-behaved clients provoke on purpose (a line-detection
    probe without credentials), logged at DEBUG instead of as a warning.
    """

    def __init__(self, why: str, message: str = ACCESS_DENIED, *, expected: bool = False) -> None:
        super().__init__(message)
        self.why = why
        self.message = message
        self.expected = expected


RequestCheck = Callable[[Any], bytes]
"""The second step of a guard: judge the decoded request; return the caller's public key
(PEM) or raise :class:`AccessDeniedError`."""


class RequestGuard(Protocol):
    """Node authentication of one scheme (e.g. Flower 1.12's ECDH + HMAC)."""

    answers_every_fleet_method: bool
    """Whether the scheme also guards Fleet methods the line does not have."""

    def admit(
        self, method: str, metadata: Mapping[str, str | bytes], state: FleetState
    ) -> RequestCheck:
        """Judge a call of ``method`` (e.g. ``CreateNode``) before its request is read.

        Raises:
            AccessDeniedError: the call is refused.

        """
        ...

    def initial_metadata(self, request: Any) -> Mapping[str, str] | None:
        """Metadata to send before the answer to ``request`` (None: nothing)."""
        ...


def _refused(name: str, exc: AccessDeniedError) -> grpclib.GRPCError:
    log.log(logging.DEBUG if exc.expected else logging.WARNING, "%s refused: %s", name, exc.why)
    return grpclib.GRPCError(Status.UNAUTHENTICATED, exc.message)


class _GuardedStream:
    """What a generated handler sees of its stream: decoding, auth, initial metadata."""

    def __init__(
        self,
        stream: grpclib.server.Stream[Any, Any],
        name: str,
        guard: RequestGuard | None,
        check: RequestCheck | None,
    ) -> None:
        self._stream = stream
        self._name = name
        self._guard = guard
        self._check = check
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
        if self._guard is not None and self._check is not None:
            try:
                key = self._check(request)
            except AccessDeniedError as exc:
                raise _refused(self._name, exc) from None
            _caller_key.set(key)
            self._initial = self._guard.initial_metadata(request)
        return request

    async def send_message(self, message: Any) -> None:
        if self._initial is not None:
            await self._stream.send_initial_metadata(metadata=self._initial)
        await self._stream.send_message(message)


def _fleet_rpcs_of_every_line() -> dict[str, Rpc]:
    """GRPC path → RPC, for the Fleet RPCs of every supported wire line."""
    return {
        rpc.grpc_path: rpc
        for line in all_lines()
        for rpc in (getattr(line.rpcs, f.name) for f in dataclasses.fields(line.rpcs))
        if rpc is not None  # a role the line does not have
    }


class GuardedFleetService:
    """A line's Fleet servicer as a grpclib servable, with auth and error mapping."""

    def __init__(
        self, servicer: FleetLineServicer, state: FleetState, guard: RequestGuard | None = None
    ) -> None:
        self.servicer = servicer
        self.state = state
        self.guard = guard

    def _admit(self, name: str, stream: grpclib.server.Stream[Any, Any]) -> RequestCheck | None:
        """The guard's first step for this call (None without a guard)."""
        if self.guard is None:
            return None
        try:
            return self.guard.admit(name, stream.metadata or {}, self.state)
        except AccessDeniedError as exc:
            raise _refused(name, exc) from None

    def _wrap(
        self, path: str, handler: Callable[[Any], Awaitable[None]]
    ) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        name = path.rsplit("/", 1)[-1]

        async def guarded(stream: grpclib.server.Stream[Any, Any]) -> None:
            token = _caller_key.set(None)
            try:
                check = self._admit(name, stream)
                await handler(_GuardedStream(stream, name, self.guard, check))
            except FleetRefusedError as exc:
                log.info("%s refused: %s", name, exc)
                raise refusal_to_grpc(exc) from None
            except FleetError as exc:
                log.warning("%s failed: %s", name, exc)
                raise grpclib.GRPCError(
                    Status.UNKNOWN, f"Exception calling application: {exc}"
                ) from None
            finally:
                _caller_key.reset(token)

        return guarded

    def _absent(self, name: str) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        guarded = self.guard is not None and self.guard.answers_every_fleet_method

        async def absent(stream: grpclib.server.Stream[Any, Any]) -> None:
            if not guarded:
                raise grpclib.GRPCError(Status.UNIMPLEMENTED, METHOD_NOT_FOUND)
            self._admit(name, stream)
            log.warning("%s: not a method of this line", name)
            raise grpclib.GRPCError(Status.UNKNOWN, NO_SERVICE_HANDLER)

        return absent

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        """The servicer's generated handlers, each wrapped (plus guarded absent methods)."""
        mapping = {
            path: grpclib.const.Handler(
                self._wrap(path, handler.func),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )
            for path, handler in self.servicer.__mapping__().items()
        }
        for path, rpc in _fleet_rpcs_of_every_line().items():
            mapping.setdefault(
                path,
                grpclib.const.Handler(
                    self._absent(rpc.name), rpc.cardinality, rpc.request_type, rpc.response_type
                ),
            )
        return mapping
