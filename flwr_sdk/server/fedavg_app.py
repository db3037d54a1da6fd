"""FedAvg as a server app: the reference server's default ``main(driver, context)``.

Each round, on the typed app API (:class:`~flwr_sdk.server.app_api.AppDriver`): wait for
enough nodes, sample, send the legacy ``train`` instructions to every sampled node at
once (``fit_many``), aggregate the replies, evaluate centrally if the strategy can, then
the same for ``evaluate``. The instructions carry the legacy record keys
(``fitins.parameters``, ``fitres.num_examples``, …) exactly as a Flower 1.12 ServerApp
built from a legacy strategy sends them. A node's reply counts as a failure when the
request ends in any :class:`~flwr_sdk.errors.NodeRequestError`: an ``Error`` reply, a
status other than OK, a reply that does not decode, a node that leaves or does not reply
in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from flwr_sdk.common.legacy_types import Parameters
from flwr_sdk.common.ndarrays import parameters_to_ndarrays
from flwr_sdk.errors import NodeRequestError
from flwr_sdk.server.app_api import AppContext, AppDriver, NodeResult
from flwr_sdk.server.driver import DriverListener, History, RoundResult
from flwr_sdk.server.strategy import EvaluateResult, FedAvg, FitResult

__all__ = ["LOGGED_FAILURES", "FedAvgApp"]

log = logging.getLogger("flwr_sdk.server")

R = TypeVar("R")


LOGGED_FAILURES = 10
"""Failed nodes a phase logs one by one; the rest are counted in one line (all are in
the round's ``failure_reasons``)."""


def _failures(server_round: int, phase: str, results: Sequence[NodeResult[Any]]) -> list[str]:
    reasons: list[str] = []
    for result in results:
        if result.error is not None:
            error = result.error
            reason = f"{phase} on node {result.node_id}: {type(error).__name__}: {error}"
            if len(reasons) < LOGGED_FAILURES:
                log.warning("round %d: %s", server_round, reason)
            reasons.append(reason)
    if len(reasons) > LOGGED_FAILURES:
        log.warning(
            "round %d: %s failed on %d more nodes",
            server_round,
            phase,
            len(reasons) - LOGGED_FAILURES,
        )
    return reasons


async def _phase(
    listener: DriverListener,
    server_round: int,
    phase: str,
    count: int,
    fan_out: Callable[[Callable[[NodeResult[R]], None]], Awaitable[list[NodeResult[R]]]],
) -> tuple[list[tuple[int, R]], list[str]]:
    """Run one phase's fan-out; return its replies by node id and its failure reasons.

    ``fan_out`` sends the phase's instructions, given the callback that reports progress.
    """
    listener.on_phase(server_round, phase, count)
    log.info("round %d: %s on %d nodes", server_round, phase, count)

    def report(outcome: NodeResult[R]) -> None:
        listener.on_reply(server_round, phase, outcome.ok)

    results = await fan_out(report)
    replies = sorted(((r.node_id, r.value()) for r in results if r.ok), key=lambda item: item[0])
    return replies, _failures(server_round, phase, results)


class FedAvgApp:
    """FedAvg rounds over the connected nodes; ``await app(driver, context)`` → History.

    Progress goes to ``context.listener``.

    Args:
        strategy: sampling, configs and aggregation.
        num_rounds: how many rounds to run.
        record_parameters: keep each round's aggregated model in the history.

    """

    def __init__(
        self, strategy: FedAvg, *, num_rounds: int, record_parameters: bool = False
    ) -> None:
        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
            raise ValueError(f"num_rounds must be an int >= 1, got {num_rounds!r}")
        self.strategy = strategy
        self.num_rounds = num_rounds
        self.record_parameters = record_parameters

    async def __call__(self, driver: AppDriver, context: AppContext) -> History:
        """Run every round; return the history."""
        started = time.monotonic()
        history = History(run_id=context.run_id)
        parameters = await self._initial_parameters(driver, context.listener, history)
        history.central_initial = self.strategy.evaluate(0, parameters)
        for server_round in range(1, self.num_rounds + 1):
            result, parameters = await self._round(
                driver, context.listener, server_round, parameters
            )
            history.rounds.append(result)
            context.listener.on_round(result)
        history.final_parameters = parameters
        history.seconds = time.monotonic() - started
        return history

    async def _nodes(self, driver: AppDriver, listener: DriverListener) -> list[int]:
        strategy = self.strategy
        needed = max(
            strategy.min_available_clients, strategy.min_fit_clients, strategy.min_evaluate_clients
        )
        nodes = driver.node_ids()
        if len(nodes) < needed:
            listener.on_waiting(len(nodes), needed)
            log.info("waiting for %d nodes (%d connected)", needed, len(nodes))
            nodes = await driver.wait_for_nodes(needed)
        return nodes

    async def _initial_parameters(
        self, driver: AppDriver, listener: DriverListener, history: History
    ) -> Parameters:
        if self.strategy.initial_parameters is not None:
            history.initial_parameters_source = "strategy"
            return self.strategy.initial_parameters
        while True:
            node_id = (await self._nodes(driver, listener))[0]
            try:
                res = await driver.get_parameters(node_id)
            except NodeRequestError as exc:
                log.warning("get_parameters on node %d failed (%s); trying again", node_id, exc)
                await asyncio.sleep(0.5)
                continue
            history.initial_parameters_source = f"node {node_id}"
            log.info("initial parameters from node %d", node_id)
            return res.parameters

    async def _round(
        self,
        driver: AppDriver,
        listener: DriverListener,
        server_round: int,
        parameters: Parameters,
    ) -> tuple[RoundResult, Parameters]:
        round_started = time.monotonic()
        result = RoundResult(server_round=server_round)
        group = str(server_round)

        # ---- fit
        nodes = await self._nodes(driver, listener)
        fit_ins = dict(self.strategy.configure_fit(server_round, parameters, nodes))
        fit_ok, fit_failures = await _phase(
            listener,
            server_round,
            "fit",
            len(fit_ins),
            lambda report: driver.fit_many(fit_ins, group_id=group, on_result=report),
        )
        result.fit_results = len(fit_ok)
        result.fit_failures = len(fit_failures)
        result.failure_reasons.extend(fit_failures)
        result.fit_num_examples = sorted(res.num_examples for _, res in fit_ok)
        aggregated, fit_metrics = self.strategy.aggregate_fit(
            server_round, [FitResult(n, r) for n, r in fit_ok], len(fit_failures)
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
        eval_ins = dict(
            self.strategy.configure_evaluate(server_round, parameters, driver.node_ids())
        )
        if eval_ins:
            eval_ok, eval_failures = await _phase(
                listener,
                server_round,
                "evaluate",
                len(eval_ins),
                lambda report: driver.evaluate_many(eval_ins, group_id=group, on_result=report),
            )
            result.evaluate_results = len(eval_ok)
            result.evaluate_failures = len(eval_failures)
            result.failure_reasons.extend(eval_failures)
            loss, metrics = self.strategy.aggregate_evaluate(
                server_round, [EvaluateResult(n, r) for n, r in eval_ok], len(eval_failures)
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
