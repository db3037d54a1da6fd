"""The reference server's app API: a ``main(driver, context)`` that talks to the nodes.

A server app is an ``async`` function (or any callable returning an awaitable)::

    async def main(driver: AppDriver, context: AppContext) -> None:
        nodes = await driver.wait_for_nodes(3)
        reply = await driver.request(nodes[0], ScaleRequest(factor=2.0), reply=ScaleReply)

run by ``flwr-sdk server --app module:main`` (or :meth:`ReferenceServer.run_app
<flwr_sdk.server.app.ReferenceServer.run_app>`) on the server's event loop; the server
stops when it returns. Synchronous functions are refused: they would block the loop that
serves the nodes. FedAvg (:mod:`flwr_sdk.server.fedavg_app`) is such an app, the default.

Requests are typed. A message of a package made by ``flwr-sdk codegen`` travels in the
RecordSet convention of :mod:`flwr_sdk.ext.convention` (``message_type``: its full
protobuf name unless given); the legacy instructions travel as Flower's legacy records
(``FitIns`` → ``FitRes``, ``EvaluateIns`` → ``EvaluateRes``, …). One request ends in the
decoded reply or in a :class:`~flwr_sdk.errors.NodeRequestError`:

* :class:`~flwr_sdk.errors.ReplyTimeoutError`: no reply within the timeout;
* :class:`~flwr_sdk.errors.NodeUnavailableError`: the node is not connected or left;
* :class:`~flwr_sdk.errors.NodeReplyError`: the node answered with an ``Error``, as the
  most specific of :class:`~flwr_sdk.errors.UnhandledMessageTypeError` (no handler for
  the ``message_type``), :class:`~flwr_sdk.errors.MalformedRequestError` (the request did
  not decode on the node) and :class:`~flwr_sdk.errors.NodeAppError` (the handler raised);
* :class:`~flwr_sdk.errors.InvalidReplyError`: the reply is not the type asked for;
* :class:`~flwr_sdk.errors.LegacyStatusError`: a legacy result with a status other than OK.

The fan-out forms (:meth:`AppDriver.request_many`, :meth:`AppDriver.fit_many`, …) send to
many nodes at once and return one :class:`NodeResult` per node, in the order given, each
holding the reply or the error: one failing node does not stop the others.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.legacy_types import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Scalar,
)
from flwr_sdk.common.message import ErrorCode, Message, Metadata
from flwr_sdk.common.records import RecordSet
from flwr_sdk.errors import (
    InvalidReplyError,
    LegacyStatusError,
    MalformedRequestError,
    NodeAppError,
    NodeReplyError,
    NodeRequestError,
    ProtocolError,
    UnhandledMessageTypeError,
)
from flwr_sdk.ext import codec_for, from_recordset
from flwr_sdk.server.driver import DriverListener, NodePool

__all__ = [
    "DEFAULT_TTL",
    "AppContext",
    "AppDriver",
    "NodeResult",
    "ServerAppMain",
]

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
Rep = TypeVar("Rep")
M = TypeVar("M")
Ins = TypeVar("Ins", bound="DataclassInstance")
Res = TypeVar("Res", bound="DataclassInstance")

_CODE_VALUES = frozenset(int(code) for code in Code)

DEFAULT_TTL = 3600.0
"""TTL (seconds) of a request sent without a timeout (Flower's default)."""


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Literal[_Unset.UNSET] = _Unset.UNSET
Timeout = float | None | Literal[_Unset.UNSET]
"""Seconds to wait for a reply; ``None``: no limit; not given: the driver's default."""


@dataclass(frozen=True)
class AppContext:
    """What a server app is told about its run.

    Attributes:
        run_id: the run's id (stamped on every request).
        run_config: ``--run-config KEY=VALUE`` pairs (numbers and booleans parsed).
        transport: the transport the nodes use (``grpc-bidi``, ``grpc-rere``, ``rest``).
        listener: progress callbacks shown by the caller (the demo's live view); an app
            may report its phases and rounds through it.

    """

    run_id: int
    run_config: Mapping[str, Scalar] = field(default_factory=dict)
    transport: str = ""
    listener: DriverListener = field(default_factory=DriverListener)


ServerAppMain = Callable[["AppDriver", AppContext], Awaitable[T]]
"""A server app: ``async def main(driver, context) -> T``."""


@dataclass(frozen=True)
class NodeResult(Generic[T]):
    """One node's outcome in a fan-out: its ``reply`` or its ``error`` (exactly one is set)."""

    node_id: int
    reply: T | None = None
    error: NodeRequestError | None = None

    @property
    def ok(self) -> bool:
        """Whether the node replied as asked."""
        return self.error is None

    def value(self) -> T:
        """The reply; raises the node's error instead when there is one."""
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


# ------------------------------------------------------------------- error replies

_FLOWER_REASON = re.compile(r"<class '([^']*)'>:<'(.*)'>\Z", re.DOTALL)
"""Flower's ``Error.reason`` form: ``<class 'pkg.Type'>:<'text'>``."""

_REPLY_ERROR_KINDS: tuple[tuple[Callable[[str, str], bool], type[NodeReplyError]], ...] = (
    (lambda _type, detail: detail.startswith("Invalid message type"), UnhandledMessageTypeError),
    (
        lambda error_type, _detail: error_type.endswith("RecordSetDecodeError"),
        MalformedRequestError,
    ),
)
"""(error type, detail) → the specific error, first match wins; else by ``Error.code``."""


def reply_error(node_id: int, code: int, reason: str) -> NodeReplyError:
    """The typed error for a node's ``Error`` reply (``code``, ``reason``)."""
    match = _FLOWER_REASON.match(reason)
    error_type, detail = (match.group(1), match.group(2)) if match else ("", reason)
    kind: type[NodeReplyError] = (
        NodeAppError if code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION else NodeReplyError
    )
    for test, specific in _REPLY_ERROR_KINDS:
        if test(error_type, detail):
            kind = specific
            break
    return kind(
        f"node {node_id} answered with error code {code}: {reason}",
        node_id=node_id,
        code=code,
        reason=reason,
        error_type=error_type,
        detail=detail,
    )


# ------------------------------------------------------------------------ driver


@dataclass(frozen=True)
class _Exchange(Generic[Rep]):
    """How one request travels: its message type, content and the reply's decoder."""

    message_type: str
    content: RecordSet
    decode: Callable[[RecordSet], Rep]
    legacy: bool = False
    """A legacy result: its ``status`` must be OK."""


def _typed_exchange(message: object, reply: type[Rep], message_type: str | None) -> _Exchange[Rep]:
    codec = codec_for(type(message))
    return _Exchange(
        message_type or codec.full_name,
        codec.to_recordset(message),
        lambda content: from_recordset(reply, content),
    )


def _per_node(
    requests: Mapping[int, M], exchange: Callable[[M], _Exchange[Rep]]
) -> dict[int, _Exchange[Rep]]:
    """Each node's exchange; nodes given the same request object share one.

    A fan-out that sends one instruction to every node (FedAvg's model) thus encodes its
    content once, not once per node.
    """
    made: dict[int, _Exchange[Rep]] = {}
    exchanges: dict[int, _Exchange[Rep]] = {}
    for node_id, request in requests.items():
        shared = made.get(id(request))
        if shared is None:
            shared = made[id(request)] = exchange(request)
        exchanges[node_id] = shared
    return exchanges


def _legacy_exchange(kind: lr.LegacyKind[Ins, Res], ins: Ins) -> _Exchange[Res]:
    return _Exchange(
        kind.message_type,
        kind.ins_to_recordset(ins, keep_input=True),  # the tensors are shared, not copied
        lambda content: kind.recordset_to_res(content, keep_input=False),
        legacy=True,
    )


class AppDriver:
    """Send typed requests to the connected nodes and await their typed replies.

    Args:
        pool: the connected nodes of the server's transport.
        run_id: the run id stamped on every request.
        timeout: default seconds a node gets to reply (``None``: no limit); also the
            request's TTL (:data:`DEFAULT_TTL` without a limit).
        wait_timeout: default seconds :meth:`wait_for_nodes` waits (``None``: forever).
        message_types: the message types the transport can carry (``None``: any);
            grpc-bidi carries only the legacy ones, and a request of another type raises
            ``ValueError`` before it is sent.

    """

    def __init__(
        self,
        pool: NodePool,
        *,
        run_id: int,
        timeout: float | None = None,
        wait_timeout: float | None = None,
        message_types: Collection[str] | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        self._pool = pool
        self._message_types = None if message_types is None else frozenset(message_types)
        self.run_id = run_id
        self.timeout = timeout
        self.wait_timeout = wait_timeout

    # ------------------------------------------------------------------- nodes

    def node_ids(self) -> list[int]:
        """Ids of the nodes connected now."""
        return self._pool.online_nodes()

    async def wait_for_nodes(self, count: int, timeout: Timeout = _UNSET) -> list[int]:
        """Wait until at least ``count`` nodes are connected; return all connected ids.

        ``timeout``: seconds (``None``: forever; not given: the driver's ``wait_timeout``).

        Raises:
            TimeoutError: fewer nodes after ``timeout`` seconds.

        """
        wait = self.wait_timeout if timeout is _UNSET else timeout
        return await self._pool.wait_for(count, wait)

    # --------------------------------------------------------------- requests

    async def request(
        self,
        node_id: int,
        message: object,
        *,
        reply: type[Rep],
        timeout: Timeout = _UNSET,
        message_type: str | None = None,
        group_id: str = "",
    ) -> Rep:
        """Send a generated message to one node; return its reply, decoded as ``reply``.

        ``message_type`` defaults to the message's full protobuf name; ``group_id`` is
        Flower's group (e.g. the round). Raises the request's
        :class:`~flwr_sdk.errors.NodeRequestError` (see the module docstring); a
        ``message`` that cannot be encoded raises ``RecordSetEncodeError`` before sending.
        """
        exchange = _typed_exchange(message, reply, message_type)
        return await self._exchange(node_id, exchange, timeout, group_id)

    async def request_many(
        self,
        requests: Mapping[int, object],
        *,
        reply: type[Rep],
        timeout: Timeout = _UNSET,
        message_type: str | None = None,
        group_id: str = "",
        on_result: Callable[[NodeResult[Rep]], None] | None = None,
    ) -> list[NodeResult[Rep]]:
        """:meth:`request` to many nodes at once (``{node_id: message}``).

        Returns one :class:`NodeResult` per node in the order of ``requests``;
        ``on_result`` is called with each one as it arrives.
        """
        exchanges = _per_node(
            requests, lambda message: _typed_exchange(message, reply, message_type)
        )
        return await self._fan_out(exchanges, timeout, group_id, on_result)

    async def send(
        self,
        node_id: int,
        message_type: str,
        content: RecordSet,
        *,
        timeout: Timeout = _UNSET,
        group_id: str = "",
    ) -> RecordSet:
        """Send a RecordSet as it is; return the reply's content (untyped escape hatch)."""
        exchange = _Exchange(message_type, content, lambda reply: reply)
        return await self._exchange(node_id, exchange, timeout, group_id)

    # ---------------------------------------------------------- legacy kinds

    async def fit(
        self, node_id: int, ins: FitIns, *, timeout: Timeout = _UNSET, group_id: str = ""
    ) -> FitRes:
        """Legacy ``train``: ``FitIns`` → ``FitRes`` (status OK, else LegacyStatusError)."""
        return await self._exchange(node_id, _legacy_exchange(lr.FIT_KIND, ins), timeout, group_id)

    async def evaluate(
        self, node_id: int, ins: EvaluateIns, *, timeout: Timeout = _UNSET, group_id: str = ""
    ) -> EvaluateRes:
        """Legacy ``evaluate``: ``EvaluateIns`` → ``EvaluateRes``."""
        exchange = _legacy_exchange(lr.EVALUATE_KIND, ins)
        return await self._exchange(node_id, exchange, timeout, group_id)

    async def get_parameters(
        self,
        node_id: int,
        ins: GetParametersIns | None = None,
        *,
        timeout: Timeout = _UNSET,
        group_id: str = "",
    ) -> GetParametersRes:
        """Legacy ``get_parameters`` (empty config by default)."""
        exchange = _legacy_exchange(lr.GET_PARAMETERS_KIND, ins or GetParametersIns(config={}))
        return await self._exchange(node_id, exchange, timeout, group_id)

    async def get_properties(
        self,
        node_id: int,
        ins: GetPropertiesIns | None = None,
        *,
        timeout: Timeout = _UNSET,
        group_id: str = "",
    ) -> GetPropertiesRes:
        """Legacy ``get_properties`` (empty config by default)."""
        exchange = _legacy_exchange(lr.GET_PROPERTIES_KIND, ins or GetPropertiesIns(config={}))
        return await self._exchange(node_id, exchange, timeout, group_id)

    async def fit_many(
        self,
        instructions: Mapping[int, FitIns],
        *,
        timeout: Timeout = _UNSET,
        group_id: str = "",
        on_result: Callable[[NodeResult[FitRes]], None] | None = None,
    ) -> list[NodeResult[FitRes]]:
        """:meth:`fit` on many nodes at once (``{node_id: FitIns}``), one result each."""
        exchanges = _per_node(instructions, lambda ins: _legacy_exchange(lr.FIT_KIND, ins))
        return await self._fan_out(exchanges, timeout, group_id, on_result)

    async def evaluate_many(
        self,
        instructions: Mapping[int, EvaluateIns],
        *,
        timeout: Timeout = _UNSET,
        group_id: str = "",
        on_result: Callable[[NodeResult[EvaluateRes]], None] | None = None,
    ) -> list[NodeResult[EvaluateRes]]:
        """:meth:`evaluate` on many nodes at once, one result each."""
        exchanges = _per_node(instructions, lambda ins: _legacy_exchange(lr.EVALUATE_KIND, ins))
        return await self._fan_out(exchanges, timeout, group_id, on_result)

    # ---------------------------------------------------------------- shared

    def _message(
        self, node_id: int, message_type: str, content: RecordSet, ttl: float, group_id: str
    ) -> Message:
        metadata = Metadata(
            run_id=self.run_id,
            message_id=str(uuid.uuid4()),
            src_node_id=self._pool.server_node_id,
            dst_node_id=node_id,
            reply_to_message="",
            group_id=group_id,
            ttl=ttl,
            message_type=message_type,
            created_at=time.time(),
        )
        return Message(metadata, content=content)

    async def _exchange(
        self, node_id: int, exchange: _Exchange[Rep], timeout: Timeout, group_id: str
    ) -> Rep:
        if self._message_types is not None and exchange.message_type not in self._message_types:
            raise ValueError(
                f"this transport cannot carry message type {exchange.message_type!r}; it "
                f"carries {', '.join(sorted(self._message_types))} (custom message types need "
                "grpc-rere or rest)"
            )
        wait = self.timeout if timeout is _UNSET else timeout
        ttl = DEFAULT_TTL if wait is None else wait
        message = self._message(node_id, exchange.message_type, exchange.content, ttl, group_id)
        try:
            answer = await self._pool.request(message, wait)
        except NodeRequestError as exc:
            if exc.node_id is None:
                exc.node_id = node_id
            raise
        except ProtocolError as exc:  # grpc-bidi: the answer does not fit the instruction
            raise InvalidReplyError(f"node {node_id}: {exc}", node_id=node_id) from exc
        if answer.has_error():
            raise reply_error(node_id, answer.error.code, answer.error.reason)
        try:
            decoded = exchange.decode(answer.content)
        except Exception as exc:
            raise InvalidReplyError(
                f"node {node_id}: the reply does not decode: {type(exc).__name__}: {exc}",
                node_id=node_id,
            ) from exc
        status = getattr(decoded, "status", None) if exchange.legacy else None
        if status is not None and status.code != Code.OK:
            name = Code(status.code).name if status.code in _CODE_VALUES else status.code
            raise LegacyStatusError(
                f"node {node_id}: status {name}: {status.message}",
                node_id=node_id,
                code=int(status.code),
                status_message=status.message,
            )
        return decoded

    async def _fan_out(
        self,
        exchanges: Mapping[int, _Exchange[Rep]],
        timeout: Timeout,
        group_id: str,
        on_result: Callable[[NodeResult[Rep]], None] | None,
    ) -> list[NodeResult[Rep]]:
        async def one(node_id: int, exchange: _Exchange[Rep]) -> NodeResult[Rep]:
            try:
                value = await self._exchange(node_id, exchange, timeout, group_id)
            except NodeRequestError as exc:
                result: NodeResult[Rep] = NodeResult(node_id, error=exc)
            else:
                result = NodeResult(node_id, reply=value)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(node_id, ex) for node_id, ex in exchanges.items())))
