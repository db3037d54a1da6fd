"""What the reference server's apps run on, independent of the transport.

A :class:`NodePool` is the set of connected nodes of one transport (grpc-bidi streams, or
Fleet API nodes over grpc-rere / REST): it sends one
:class:`~flwr_sdk.common.message.Message` to a node and awaits the reply. The typed app
API (:mod:`flwr_sdk.server.app_api`) is built on it. Also here: the results of a FedAvg
run (:class:`History`, :class:`RoundResult`) and the progress callbacks
(:class:`DriverListener`) that the FedAvg app (:mod:`flwr_sdk.server.fedavg_app`) reports
to and the demo draws.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from flwr_sdk.common.legacy_types import Metrics, Parameters
from flwr_sdk.common.message import Message
from flwr_sdk.errors import NodeUnavailableError, ReplyTimeoutError

__all__ = [
    "RESCAN_SECONDS",
    "DriverListener",
    "History",
    "NodePool",
    "NodeUnavailableError",
    "ReplyTimeoutError",
    "RoundResult",
]


RESCAN_SECONDS = 0.2
"""Shortest time between two listings of the online nodes while waiting for more."""


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

    def node_count(self) -> int:
        """At least as many as :meth:`online_nodes` returns, found cheaply.

        :meth:`wait_for` looks at the online nodes only once this reaches the count it
        waits for (default: the online nodes themselves).
        """
        return len(self.online_nodes())

    async def wait_for(self, count: int, timeout: float | None = None) -> list[int]:
        """Wait until at least ``count`` nodes are online; return them.

        Wakes up when nodes change (:meth:`_notify`), and at least every second; the
        online nodes are listed only when :meth:`node_count` reaches ``count``, and at
        most every :data:`RESCAN_SECONDS` (a pass over thousands of nodes per ping
        would cost more than the pings).

        Raises:
            TimeoutError: fewer nodes after ``timeout`` seconds.

        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            listed = self.node_count() >= count
            if listed:
                nodes = self.online_nodes()
                if len(nodes) >= count:
                    return nodes
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"only {len(self.online_nodes())} of {count} nodes connected")
            if listed:  # enough nodes, but not enough online: list them again later
                await asyncio.sleep(
                    RESCAN_SECONDS if remaining is None else min(RESCAN_SECONDS, remaining)
                )
                continue
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
