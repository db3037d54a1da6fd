"""The round loop of the reference server, independent of the transport.

The driver talks to a :class:`NodePool` — the set of connected nodes of one transport
(grpc-bidi streams, or Fleet API nodes over grpc-rere / REST) — in terms of
:class:`~flwr_sdk.common.message.Message` objects carrying the legacy record keys
(``fitins.parameters``, ``fitres.num_examples``, …), exactly as a Flower 1.12 ServerApp
built from a legacy strategy does. Each round: wait for enough nodes, sample, send
``train`` instructions, wait for the replies (with a timeout), aggregate, then the same
for ``evaluate``. A reply counts as a failure when it carries an :class:`Error`, when its
legacy status is not OK, when it cannot be decoded, when the node leaves or when it does
not arrive in time.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.legacy_types import Code, GetParametersIns, Metrics, Parameters, Status
from flwr_sdk.common.message import Message, MessageType, Metadata
from flwr_sdk.common.ndarrays import parameters_to_ndarrays
from flwr_sdk.common.records import RecordSet
from flwr_sdk.server.strategy import EvaluateResult, FedAvg, FitResult

__all__ = [
    "Driver",
    "DriverListener",
    "History",
    "NodePool",
    "NodeUnavailableError",
    "ReplyTimeoutError",
    "RoundResult",
]

log = logging.getLogger("flwr_sdk.server")


class _LegacyRes(Protocol):
    """A decoded legacy result (``FitRes``, ``EvaluateRes``, ``GetParametersRes``)."""

    @property
    def status(self) -> Status: ...


I = TypeVar("I")  # noqa: E741 - a legacy instruction type
R = TypeVar("R", bound=_LegacyRes)
T = TypeVar("T")


class NodeUnavailableError(Exception):
    """The node left (stream closed, DeleteNode, missed pings) before it replied."""


class ReplyTimeoutError(Exception):
    """The node did not reply within the round timeout."""


class NodePool(abc.ABC):
    """The connected nodes of one transport, as the driver sees them.

    ``server_node_id``: the node id the server's instructions come from on this
    transport's wire line.
    """

    def __init__(self, server_node_id: int) -> None:
        self.server_node_id = server_node_id
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        """Wake up :meth:`wait_for` (call when nodes join)."""
        self._changed.set()

    @abc.abstractmethod
    def online_nodes(self) -> list[int]:
        """Ids of the nodes that can be sampled now."""

    @abc.abstractmethod
    async def request(self, message: Message, timeout: float | None) -> Message:
        """Send an instruction to ``message.metadata.dst_node_id``; return its reply.

        Raises:
            NodeUnavailableError: the node is gone (or left while working).
            ReplyTimeoutError: no reply within ``timeout`` seconds.

        """

    async def wait_for(self, count: int, timeout: float | None = None) -> list[int]:
        """Wait until at least ``count`` nodes are online; return them.

        Raises:
            TimeoutError: fewer nodes after ``timeout`` seconds.

        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            nodes = self.online_nodes()
            if len(nodes) >= count:
                return nodes
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"only {len(nodes)} of {count} nodes connected")
            wait = 1.0 if remaining is None else min(1.0, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def finish(self) -> None:  # noqa: B027 - optional hook
        """Tell the nodes the run is over (grpc-bidi: ReconnectIns); default: nothing."""


@dataclass
class RoundResult:
    """What happened in one round."""

    server_round: int
    fit_results: int = 0
    fit_failures: int = 0
    fit_num_examples: list[int] = field(default_factory=list)
    fit_metrics: Metrics = field(default_factory=dict)
    evaluate_results: int = 0
    evaluate_failures: int = 0
    evaluate_loss: float | None = None
    evaluate_metrics: Metrics = field(default_factory=dict)
    central_loss: float | None = None
    central_metrics: Metrics = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)
    parameters: list[list[Any]] | None = None
    """The aggregated model after this round, as nested lists (only if recorded)."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dict(self.__dict__)


@dataclass
class History:
    """Results of a whole run."""

    run_id: int
    rounds: list[RoundResult] = field(default_factory=list)
    initial_parameters_source: str = ""
    central_initial: tuple[float, Metrics] | None = None
    final_parameters: Parameters | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (without the final parameters)."""
        return {
            "run_id": self.run_id,
            "initial_parameters_source": self.initial_parameters_source,
            "central_initial": list(self.central_initial) if self.central_initial else None,
            "rounds": {str(r.server_round): r.to_dict() for r in self.rounds},
            "seconds": self.seconds,
            "done": True,
        }


class DriverListener:
    """Progress callbacks (the demo's live view); every method is optional."""

    def on_waiting(self, connected: int, needed: int) -> None:
        """Waiting for nodes to connect."""

    def on_phase(self, server_round: int, phase: str, nodes: int) -> None:
        """A phase (``fit`` / ``evaluate``) of a round starts on ``nodes`` nodes."""

    def on_reply(self, server_round: int, phase: str, ok: bool) -> None:
        """One node answered (or failed) in a phase."""

    def on_round(self, result: RoundResult) -> None:
        """A round is complete."""


class Driver:
    """Run FedAvg rounds over a :class:`NodePool`.

    Args:
        pool: the connected nodes.
        strategy: sampling, configs and aggregation.
        num_rounds: how many rounds to run.
        round_timeout: seconds each node gets to answer an instruction (also the TTL of
            the instructions); ``None`` waits without limit (TTL 3600 s, like Flower).
        run_id: the run id stamped on every instruction.
        wait_timeout: seconds to wait for ``min_available_clients`` nodes before a
            round; ``None`` waits forever.
        record_parameters: keep each round's aggregated model in the history.
        listener: progress callbacks.

    """

    def __init__(
        self,
        pool: NodePool,
        strategy: FedAvg,
        *,
        num_rounds: int,
        run_id: int,
        round_timeout: float | None = None,
        wait_timeout: float | None = None,
        record_parameters: bool = False,
        listener: DriverListener | None = None,
    ) -> None:
        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
            raise ValueError(f"num_rounds must be an int >= 1, got {num_rounds!r}")
        if round_timeout is not None and not round_timeout > 0:
            raise ValueError(f"round_timeout must be > 0 or None, got {round_timeout!r}")
        self.pool = pool
        self.strategy = strategy
        self.num_rounds = num_rounds
        self.run_id = run_id
        self.round_timeout = round_timeout
        self.wait_timeout = wait_timeout
        self.record_parameters = record_parameters
        self.listener = listener or DriverListener()
        self.ttl = round_timeout if round_timeout is not None else 3600.0

    # --------------------------------------------------------------- messages

    def _instruction(
        self, node_id: int, message_type: str, content: RecordSet, group_id: str
    ) -> Message:
        metadata = Metadata(
            run_id=self.run_id,
            message_id=str(uuid.uuid4()),
            src_node_id=self.pool.server_node_id,
            dst_node_id=node_id,
            reply_to_message="",
            group_id=group_id,
            ttl=self.ttl,
            message_type=message_type,
            created_at=time.time(),
        )
        return Message(metadata, content=content)

    async def _ask(self, message: Message, decode: Callable[[RecordSet], R]) -> R:
        reply = await self.pool.request(message, self.round_timeout)
        if reply.has_error():
            err = reply.error
            raise RuntimeError(f"error reply (code {err.code}): {err.reason}")
        result = decode(reply.content)
        code = result.status.code
        if code != Code.OK:
            raise RuntimeError(f"status {Code(code).name}")
        return result

    async def _gather(
        self, server_round: int, phase: str, calls: Sequence[tuple[int, Awaitable[T]]]
    ) -> tuple[list[tuple[int, T]], list[str]]:
        results: list[tuple[int, T]] = []
        failures: list[str] = []

        async def one(node_id: int, call: Awaitable[T]) -> None:
            try:
                value = await call
            except Exception as exc:
                reason = f"{phase} on node {node_id}: {type(exc).__name__}: {exc}"
                log.warning("round %d: %s", server_round, reason)
                failures.append(reason)
                self.listener.on_reply(server_round, phase, False)
            else:
                results.append((node_id, value))
                self.listener.on_reply(server_round, phase, True)

        await asyncio.gather(*(one(node_id, call) for node_id, call in calls))
        results.sort(key=lambda item: item[0])
        return results, failures

    async def _phase(
        self,
        server_round: int,
        phase: str,
        message_type: str,
        instructions: Sequence[tuple[int, I]],
        encode: Callable[[I], RecordSet],
        decode: Callable[[RecordSet], R],
    ) -> tuple[list[tuple[int, R]], list[str]]:
        """Send one instruction per node, gather the decoded results and the failures."""
        self.listener.on_phase(server_round, phase, len(instructions))
        log.info("round %d: %s on %d nodes", server_round, phase, len(instructions))
        group = str(server_round)
        calls = [
            (
                node_id,
                self._ask(self._instruction(node_id, message_type, encode(ins), group), decode),
            )
            for node_id, ins in instructions
        ]
        return await self._gather(server_round, phase, calls)

    # ------------------------------------------------------------------ rounds

    async def _nodes(self) -> list[int]:
        needed = max(
            self.strategy.min_available_clients,
            self.strategy.min_fit_clients,
            self.strategy.min_evaluate_clients,
        )
        nodes = self.pool.online_nodes()
        if len(nodes) < needed:
            self.listener.on_waiting(len(nodes), needed)
            log.info("waiting for %d nodes (%d connected)", needed, len(nodes))
            nodes = await self.pool.wait_for(needed, self.wait_timeout)
        return nodes

    async def _initial_parameters(self, history: History) -> Parameters:
        if self.strategy.initial_parameters is not None:
            history.initial_parameters_source = "strategy"
            return self.strategy.initial_parameters
        while True:
            nodes = await self._nodes()
            node_id = nodes[0]
            content = lr.getparametersins_to_recordset(GetParametersIns(config={}))
            message = self._instruction(node_id, MessageType.GET_PARAMETERS, content, "")
            try:
                res = await self._ask(
                    message, lambda rs: lr.recordset_to_getparametersres(rs, keep_input=False)
                )
            except Exception as exc:
                log.warning("get_parameters on node %d failed (%s); trying again", node_id, exc)
                await asyncio.sleep(0.5)
                continue
            history.initial_parameters_source = f"node {node_id}"
            log.info("initial parameters from node %d", node_id)
            return res.parameters

    async def run(self) -> History:
        """Run every round; return the history (the pool is told to finish at the end)."""
        started = time.monotonic()
        history = History(run_id=self.run_id)
        try:
            parameters = await self._initial_parameters(history)
            central = self.strategy.evaluate(0, parameters)
            history.central_initial = central
            for server_round in range(1, self.num_rounds + 1):
                result, parameters = await self._round(server_round, parameters)
                history.rounds.append(result)
                self.listener.on_round(result)
            history.final_parameters = parameters
        finally:
            await self.pool.finish()
        history.seconds = time.monotonic() - started
        return history

    async def _round(
        self, server_round: int, parameters: Parameters
    ) -> tuple[RoundResult, Parameters]:
        round_started = time.monotonic()
        result = RoundResult(server_round=server_round)

        # ---- fit
        nodes = await self._nodes()
        fit_replies, fit_failures = await self._phase(
            server_round,
            "fit",
            MessageType.TRAIN,
            self.strategy.configure_fit(server_round, parameters, nodes),
            lambda ins: lr.fitins_to_recordset(ins, keep_input=True),
            lambda rs: lr.recordset_to_fitres(rs, keep_input=False),
        )
        result.fit_results = len(fit_replies)
        result.fit_failures = len(fit_failures)
        result.failure_reasons.extend(fit_failures)
        result.fit_num_examples = sorted(res.num_examples for _, res in fit_replies)
        aggregated, fit_metrics = self.strategy.aggregate_fit(
            server_round, [FitResult(n, r) for n, r in fit_replies], len(fit_failures)
        )
        result.fit_metrics = fit_metrics
        if aggregated is not None:
            parameters = aggregated
        if self.record_parameters:
            result.parameters = [a.tolist() for a in parameters_to_ndarrays(parameters)]

        # ---- server-side evaluation
        central = self.strategy.evaluate(server_round, parameters)
        if central is not None:
            result.central_loss, result.central_metrics = central

        # ---- federated evaluation
        nodes = self.pool.online_nodes()
        eval_ins = self.strategy.configure_evaluate(server_round, parameters, nodes)
        if eval_ins:
            eval_replies, eval_failures = await self._phase(
                server_round,
                "evaluate",
                MessageType.EVALUATE,
                eval_ins,
                lambda ins: lr.evaluateins_to_recordset(ins, keep_input=True),
                lr.recordset_to_evaluateres,
            )
            result.evaluate_results = len(eval_replies)
            result.evaluate_failures = len(eval_failures)
            result.failure_reasons.extend(eval_failures)
            loss, metrics = self.strategy.aggregate_evaluate(
                server_round, [EvaluateResult(n, r) for n, r in eval_replies], len(eval_failures)
            )
            result.evaluate_loss = loss
            result.evaluate_metrics = metrics
        result.seconds = time.monotonic() - round_started
        log.info(
            "round %d done in %.1fs: fit %d ok / %d failed, evaluate %d ok / %d failed, loss %s",
            server_round,
            result.seconds,
            result.fit_results,
            result.fit_failures,
            result.evaluate_results,
            result.evaluate_failures,
            result.evaluate_loss,
        )
        return result, parameters
