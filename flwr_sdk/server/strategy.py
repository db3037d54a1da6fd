"""FedAvg for the reference server: sampling, per-round configs and weighted averaging.

Works on the legacy instruction/result types (:class:`FitIns`, :class:`FitRes`, …), like
Flower's legacy strategies, so that the same strategy drives every transport.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from flwr_sdk.common.legacy_types import (
    Config,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Metrics,
    Parameters,
    Scalar,
)
from flwr_sdk.common.ndarrays import (
    NDArrays,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

__all__ = ["FedAvg", "FitResult", "EvaluateResult", "weighted_metrics"]

log = logging.getLogger("flwr_sdk.server")

ConfigFn = Callable[[int], Mapping[str, Scalar]]
"""Round number (1-based) → the config sent with that round's instructions."""

EvaluateFn = Callable[[int, NDArrays], "tuple[float, Metrics] | None"]
"""Server-side evaluation: (round, model weights) → (loss, metrics)."""


@dataclass(frozen=True)
class FitResult:
    """One node's successful ``fit`` answer."""

    node_id: int
    res: FitRes


@dataclass(frozen=True)
class EvaluateResult:
    """One node's successful ``evaluate`` answer."""

    node_id: int
    res: EvaluateRes


def weighted_metrics(pairs: Sequence[tuple[int, Mapping[str, Scalar]]]) -> Metrics:
    """Average every numeric metric over the results that report it, weighted by examples.

    Booleans, strings and bytes are not averaged and are left out.
    """
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for num_examples, metrics in pairs:
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            sums[key] = sums.get(key, 0.0) + float(value) * num_examples
            weights[key] = weights.get(key, 0) + num_examples
    return {key: sums[key] / weights[key] for key in sums if weights[key] > 0}


@dataclass
class FedAvg:
    """Federated averaging weighted by ``num_examples``.

    Attributes:
        min_fit_clients: nodes sampled for training each round (at least).
        min_evaluate_clients: nodes sampled for federated evaluation (0 disables it).
        min_available_clients: nodes that must be connected before a round starts.
        fraction_fit: fraction of the connected nodes to sample for training (the
            sample is never smaller than ``min_fit_clients``).
        fraction_evaluate: the same for evaluation.
        on_fit_config: round → config of that round's ``FitIns`` (e.g. learning rate).
        on_evaluate_config: round → config of that round's ``EvaluateIns``.
        initial_parameters: the starting model; ``None`` asks one node for its
            parameters (``get_parameters``).
        evaluate_fn: optional server-side evaluation of the aggregated model.
        accept_failures: aggregate a round that had failures (otherwise keep the old
            model for that round).
        seed: seed of the node sampler (deterministic tests).

    """

    min_fit_clients: int = 2
    min_evaluate_clients: int = 2
    min_available_clients: int = 2
    fraction_fit: float = 1.0
    fraction_evaluate: float = 1.0
    on_fit_config: ConfigFn | None = None
    on_evaluate_config: ConfigFn | None = None
    initial_parameters: Parameters | None = None
    evaluate_fn: EvaluateFn | None = None
    accept_failures: bool = True
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("min_fit_clients", "min_evaluate_clients", "min_available_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.min_fit_clients < 1:
            raise ValueError("min_fit_clients must be >= 1")
        for name in ("fraction_fit", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self._rng = random.Random(self.seed)

    # -------------------------------------------------------------------- sampling

    def _sample(self, nodes: Sequence[int], fraction: float, minimum: int) -> list[int]:
        count = max(int(len(nodes) * fraction), minimum)
        count = min(count, len(nodes))
        return sorted(self._rng.sample(list(nodes), count))

    def configure_fit(
        self, server_round: int, parameters: Parameters, nodes: Sequence[int]
    ) -> list[tuple[int, FitIns]]:
        """The nodes to train this round and their instruction.

        Every sampled node gets the same ``FitIns`` object (read-only), so the driver
        encodes it once for all of them.
        """
        config: Config = dict(self.on_fit_config(server_round)) if self.on_fit_config else {}
        sample = self._sample(nodes, self.fraction_fit, self.min_fit_clients)
        ins = FitIns(parameters=_share(parameters), config=config)
        return [(node_id, ins) for node_id in sample]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, nodes: Sequence[int]
    ) -> list[tuple[int, EvaluateIns]]:
        """The nodes to evaluate this round (none if federated evaluation is off).

        As for :meth:`configure_fit`, every node gets the same ``EvaluateIns`` object.
        """
        if self.min_evaluate_clients == 0 or self.fraction_evaluate == 0.0:
            return []
        config: Config = (
            dict(self.on_evaluate_config(server_round)) if self.on_evaluate_config else {}
        )
        sample = self._sample(nodes, self.fraction_evaluate, self.min_evaluate_clients)
        ins = EvaluateIns(parameters=_share(parameters), config=config)
        return [(node_id, ins) for node_id in sample]

    # ------------------------------------------------------------------ aggregation

    def aggregate_fit(
        self, server_round: int, results: Sequence[FitResult], failures: int
    ) -> tuple[Parameters | None, Metrics]:
        """FedAvg of the results' parameters weighted by ``num_examples``.

        Returns ``(None, {})`` when there is nothing to aggregate (no results, every
        result reported zero examples, or failures with ``accept_failures=False``).
        """
        if not results or (failures and not self.accept_failures):
            return None, {}
        total = sum(r.res.num_examples for r in results)
        if total <= 0:
            log.warning("round %d: results report no examples; model unchanged", server_round)
            return None, {}
        averaged: NDArrays | None = None
        for result in results:
            weight = result.res.num_examples / total
            arrays = parameters_to_ndarrays(result.res.parameters)
            if averaged is None:
                averaged = [np.asarray(a, dtype=np.float64) * weight for a in arrays]
                dtypes = [a.dtype for a in arrays]
                shapes = [a.shape for a in arrays]
                continue
            if [a.shape for a in arrays] != shapes:
                raise ValueError(
                    f"round {server_round}: node {result.node_id} sent arrays of shapes "
                    f"{[a.shape for a in arrays]}, expected {shapes}"
                )
            for acc, array in zip(averaged, arrays, strict=True):
                acc += np.asarray(array, dtype=np.float64) * weight
        assert averaged is not None
        merged = [a.astype(dtype) for a, dtype in zip(averaged, dtypes, strict=True)]
        metrics = weighted_metrics([(r.res.num_examples, r.res.metrics) for r in results])
        return ndarrays_to_parameters(merged), metrics

    def aggregate_evaluate(
        self, server_round: int, results: Sequence[EvaluateResult], failures: int
    ) -> tuple[float | None, Metrics]:
        """Loss and metrics averaged over the results, weighted by ``num_examples``."""
        if not results or (failures and not self.accept_failures):
            return None, {}
        total = sum(r.res.num_examples for r in results)
        if total <= 0:
            return None, {}
        loss = sum(r.res.loss * r.res.num_examples for r in results) / total
        metrics = weighted_metrics([(r.res.num_examples, r.res.metrics) for r in results])
        return float(loss), metrics

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, Metrics] | None:
        """Server-side evaluation of ``parameters`` (``None`` without ``evaluate_fn``)."""
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, parameters_to_ndarrays(parameters))


def _share(parameters: Parameters) -> Parameters:
    """A Parameters object of the round's instructions that shares the tensor bytes."""
    return Parameters(tensors=list(parameters.tensors), tensor_type=parameters.tensor_type)
