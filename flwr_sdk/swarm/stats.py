"""What a swarm's nodes are doing, counted from their progress events.

:class:`SwarmStats` is fed every node's :mod:`flwr_sdk.events` (on the swarm's event
loop, so no lock) and keeps a few integers per node and a few totals for the swarm;
:meth:`SwarmStats.snapshot` returns a :class:`SwarmSnapshot` (picklable, mergeable: a
Ray actor's snapshots are summed into one view) and :meth:`SwarmStats.result` the
per-node outcome (:class:`NodeResult`) once the nodes have stopped.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from flwr_sdk.events import (
    Connected,
    Disconnected,
    InstructionFailed,
    InstructionReceived,
    NodeEvent,
    Registered,
    ReplySent,
    Retrying,
    Stopped,
)

__all__ = ["NodeResult", "NodeState", "SwarmResult", "SwarmSnapshot", "SwarmStats"]

SLOWEST = 5
"""How many of the slowest nodes a snapshot names."""


class NodeState(IntEnum):
    """Where one node of the swarm is."""

    PENDING = 0  # not started yet (staggered start)
    CONNECTING = 1  # started, not connected (or reconnecting)
    REGISTERED = 2  # connected and registered; polling for work
    WORKING = 3  # handling an instruction (user code or sending the reply)
    STOPPED = 4  # ended without an error
    FAILED = 5  # ended with an error


_STATE_NAMES = tuple(state.name.lower() for state in NodeState)


@dataclass(frozen=True)
class SwarmSnapshot:
    """Counters of a swarm (or of several, summed) at one moment."""

    nodes: int = 0
    #: Nodes per state, by :class:`NodeState` name in lower case.
    states: dict[str, int] = field(default_factory=dict)
    #: Nodes that connected / registered at least once.
    ever_connected: int = 0
    ever_registered: int = 0
    instructions: int = 0
    replies: int = 0
    failed_instructions: int = 0
    retries: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    #: ``(seconds, partition id)`` of the slowest replies of the nodes' last instruction.
    slowest: tuple[tuple[float, int], ...] = ()
    taken_at: float = 0.0

    @property
    def failed(self) -> int:
        """Nodes that ended with an error."""
        return self.states.get("failed", 0)

    @staticmethod
    def merge(parts: Iterable[SwarmSnapshot]) -> SwarmSnapshot:
        """The snapshot of all ``parts`` together (e.g. one per Ray actor)."""
        items = list(parts)
        states: dict[str, int] = dict.fromkeys(_STATE_NAMES, 0)
        for part in items:
            for name, count in part.states.items():
                states[name] = states.get(name, 0) + count
        totals = {
            name: sum(getattr(part, name) for part in items)
            for name in (
                "nodes",
                "ever_connected",
                "ever_registered",
                "instructions",
                "replies",
                "failed_instructions",
                "retries",
                "bytes_received",
                "bytes_sent",
            )
        }
        slowest = heapq.nlargest(SLOWEST, (s for part in items for s in part.slowest))
        taken = max((part.taken_at for part in items), default=0.0)
        return SwarmSnapshot(states=states, slowest=tuple(slowest), taken_at=taken, **totals)


@dataclass
class NodeResult:
    """How one node of the swarm ended."""

    partition_id: int
    #: The node id the server gave it last (-1: never registered).
    node_id: int = -1
    #: Instructions handled / failed, by message type (``"train"``, …).
    handled: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    #: Seconds spent answering instructions (receive → reply sent), in all.
    busy_seconds: float = 0.0
    registrations: int = 0
    #: Why the node stopped with an error; None when it ended cleanly.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dataclasses.asdict(self)


@dataclass
class SwarmResult:
    """What a finished swarm did: one :class:`NodeResult` per node, and the totals."""

    nodes: list[NodeResult]
    totals: SwarmSnapshot
    seconds: float

    @property
    def failed_nodes(self) -> list[NodeResult]:
        """The nodes that ended with an error."""
        return [node for node in self.nodes if node.error is not None]

    @staticmethod
    def merge(parts: Iterable[SwarmResult]) -> SwarmResult:
        """One result of several swarms (e.g. Ray actors), nodes ordered by partition."""
        items = list(parts)
        nodes = sorted((n for part in items for n in part.nodes), key=lambda n: n.partition_id)
        totals = SwarmSnapshot.merge(part.totals for part in items)
        return SwarmResult(nodes, totals, max((p.seconds for p in items), default=0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the ``--summary`` file of ``flwr-sdk swarm``)."""
        handled: dict[str, int] = {}
        for node in self.nodes:
            for kind, count in node.handled.items():
                handled[kind] = handled.get(kind, 0) + count
        totals = dataclasses.asdict(self.totals)
        totals["slowest"] = [
            {"seconds": seconds, "partition_id": pid} for seconds, pid in self.totals.slowest
        ]
        return {
            "nodes": len(self.nodes),
            "failed_nodes": len(self.failed_nodes),
            "seconds": self.seconds,
            "handled": handled,
            "totals": totals,
            "per_node": [node.to_dict() for node in self.nodes],
        }


class SwarmStats:
    """Counts the events of ``len(partition_ids)`` nodes; see the module docs.

    Node ``i`` of the swarm reports through :meth:`record` ``(i, event)``; per node only
    its state, the start of its current instruction and its :class:`NodeResult` are
    kept.
    """

    def __init__(self, partition_ids: list[int]) -> None:
        self._states = [NodeState.PENDING] * len(partition_ids)
        self._counts = [0] * len(NodeState)
        self._counts[NodeState.PENDING] = len(partition_ids)
        self._results = [NodeResult(pid) for pid in partition_ids]
        self._started_work = [0.0] * len(partition_ids)
        self._last_reply = [0.0] * len(partition_ids)
        self._connected = [False] * len(partition_ids)
        self.instructions = 0
        self.replies = 0
        self.failed_instructions = 0
        self.retries = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.ever_connected = 0
        self.ever_registered = 0

    def _move(self, index: int, state: NodeState) -> None:
        old = self._states[index]
        if old in (NodeState.STOPPED, NodeState.FAILED):
            return
        self._counts[old] -= 1
        self._counts[state] += 1
        self._states[index] = state

    def started(self, index: int) -> None:
        """Node ``index`` starts (its staggered start came)."""
        self._move(index, NodeState.CONNECTING)

    def ended(self, index: int, error: BaseException | None) -> None:
        """Node ``index`` ended (``error``: what ended it, None for a clean end)."""
        if error is not None:
            text = str(error)
            self._results[index].error = (
                f"{type(error).__name__}: {text}" if text else type(error).__name__
            )
        self._move(index, NodeState.STOPPED if error is None else NodeState.FAILED)

    def count(self, state: NodeState) -> int:
        """How many nodes are in ``state``."""
        return self._counts[state]

    def state(self, index: int) -> NodeState:
        """Where node ``index`` is."""
        return self._states[index]

    def record(self, index: int, event: NodeEvent) -> None:
        """Count one event of node ``index``."""
        result = self._results[index]
        if isinstance(event, Connected):
            if not self._connected[index]:
                self._connected[index] = True
                self.ever_connected += 1
        elif isinstance(event, Registered):
            result.node_id = event.node_id
            result.registrations += 1
            if result.registrations == 1:
                self.ever_registered += 1
            self._move(index, NodeState.REGISTERED)
        elif isinstance(event, InstructionReceived):
            self.instructions += 1
            self.bytes_received += event.size
            self._started_work[index] = time.monotonic()
            self._move(index, NodeState.WORKING)
        elif isinstance(event, ReplySent):
            self.replies += 1
            self.bytes_sent += event.size
            result.busy_seconds += event.duration
            self._last_reply[index] = event.duration
            self._move(index, NodeState.REGISTERED)
        elif isinstance(event, InstructionFailed):
            self.failed_instructions += 1
        elif isinstance(event, Retrying):
            self.retries += 1
        elif isinstance(event, Disconnected):
            if event.will_reconnect:
                self._move(index, NodeState.CONNECTING)
        elif isinstance(event, Stopped):
            result.handled = dict(event.summary.handled)
            result.failed = dict(event.summary.failed)

    def snapshot(self) -> SwarmSnapshot:
        """The counters now (the slowest nodes: by their last reply's duration)."""
        now = time.monotonic()
        candidates = (
            (now - started if state is NodeState.WORKING else last, self._results[i].partition_id)
            for i, (state, started, last) in enumerate(
                zip(self._states, self._started_work, self._last_reply, strict=True)
            )
        )
        slowest = heapq.nlargest(SLOWEST, candidates)
        return SwarmSnapshot(
            nodes=len(self._states),
            states={state.name.lower(): self._counts[state] for state in NodeState},
            ever_connected=self.ever_connected,
            ever_registered=self.ever_registered,
            instructions=self.instructions,
            replies=self.replies,
            failed_instructions=self.failed_instructions,
            retries=self.retries,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            slowest=tuple((round(s, 3), pid) for s, pid in slowest if s > 0),
            taken_at=time.time(),
        )

    def result(self, seconds: float) -> SwarmResult:
        """Every node's outcome so far, with the totals."""
        return SwarmResult(list(self._results), self.snapshot(), seconds)
