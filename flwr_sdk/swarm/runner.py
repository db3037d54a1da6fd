"""Run many client nodes of one app in one process, on one event loop.

A :class:`Swarm` runs ``nodes`` nodes; node ``i`` has partition id
``first_partition + i`` and gets ``Context.node_config`` ``{"partition-id": <its id>,
"num-partitions": <num_partitions>}`` (plus the config's shared ``node_config``), as
Flower's simulation gives it, so that ``client_fn`` loads its own shard. Each node is a
:class:`~flwr_sdk.node_loop.NodeLoop` task, exactly what ``start_client_async`` runs,
with its own session, node id, retry budget and (when given) authentication keys; what
the nodes share is read-only: the app, the settings, and the connection where the
transport allows it (:mod:`flwr_sdk.swarm.shared`). An idle node costs its poll and its
heartbeat timers, no thread: user code runs in a short-lived thread per instruction, as
in ``start_client``.

The swarm finds out the server's wire line once, with one probe (through the shared
connection), and every node registers on that line without a probe of its own; a node
probes again only after a session of its own was served and ended (the server may have
been replaced). Nodes start at ``start_rate`` per second (no stampede at the server),
and the swarm ends when every node has ended, when :meth:`Swarm.stop` is called, or when
``idle_exit`` seconds passed without an instruction after the first one (a run finished;
the Fleet API never tells a node that). However it ends, every node then leaves the
server: the nodes are asked to stop, and their closing calls share one swarm-wide budget
(:func:`close_budget`, e.g. 12 s for 2,000 nodes) rather than a fraction of a second
each, as a single stopped node gets.

The swarm installs no log handler (2,000 nodes' INFO lines are rarely wanted): each
record a node logs carries its partition id as ``record.swarm_node``
(:class:`NodeLogFilter`), for a handler that wants per-node logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.events import NodeEvent
from flwr_sdk.node_loop import CLOSE_TIMEOUT, NodeLoop
from flwr_sdk.swarm.shared import PollJitter, SharedConnections
from flwr_sdk.swarm.stats import NodeState, SwarmResult, SwarmSnapshot, SwarmStats
from flwr_sdk.swarm.wake import WakeUp, WakingConnector
from flwr_sdk.transport.base import Connector
from flwr_sdk.validation import ClientConfig, validate
from flwr_sdk.wire.base import FleetLine
from flwr_sdk.wire.lines import get_line

__all__ = [
    "NODE",
    "KeyPair",
    "NodeLogFilter",
    "ProgressCallback",
    "Swarm",
    "SwarmConfig",
    "SwarmEventCallback",
    "close_budget",
    "run_swarm",
]

log = logging.getLogger("flwr_sdk.swarm")

KeyPair = tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]
SwarmApp = ClientApp | Callable[[Context], Client | NumPyClient]
SwarmEventCallback = Callable[[int, NodeEvent], None]
"""Called with ``(partition id, event)`` for every event of every node."""
ProgressCallback = Callable[[SwarmSnapshot], None]
"""Called with the swarm's counters every ``progress_interval`` seconds, and at the end."""

NODE: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "flwr_sdk_swarm_node", default=None
)
"""The partition id of the swarm node whose task is running (None outside a swarm)."""

START_BATCH = 10
"""Nodes started together; batches are spaced to keep ``start_rate``."""

IDLE_CHECK = 0.5
"""Seconds between two checks of ``idle_exit``."""


class NodeLogFilter(logging.Filter):
    """Adds ``swarm_node`` (the partition id, or ``-``) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record; never drops it."""
        node = NODE.get()
        record.swarm_node = "-" if node is None else node
        return True


@dataclass(frozen=True)
class SwarmConfig:
    """What a swarm runs and how.

    Attributes:
        server_address: as ``start_client`` takes it (``http(s)://…`` for ``rest``).
        nodes: how many nodes this swarm runs.
        app: a :class:`~flwr_sdk.client.ClientApp` or a ``client_fn(context)``.
        transport: ``"grpc-rere"`` (default), ``"rest"`` or ``"grpc-bidi"``.
        first_partition: partition id of the first node (a Ray actor's offset).
        num_partitions: ``num-partitions`` every node gets; default ``nodes``.
        node_config: more ``Context.node_config`` entries for every node.
        start_rate: nodes started per second.
        poll_interval: seconds between two polls of an idle node, each node's drawn
            once with ±10 % jitter; None: the line's (Flower's 3 s), with the jitter.
        heartbeat_interval: seconds between two heartbeats each node promises and keeps
            (grpc-rere / rest); None: the line's (30 s). Longer: fewer calls per idle
            node, and the server notices a vanished node later. Checked against the
            line's accepted range once the line is known (1.42: 10 to 1800 s).
        wake: when one node receives an instruction, the other idle nodes poll within
            a second instead of at their next poll (:mod:`flwr_sdk.swarm.wake`): with a
            long ``poll_interval`` a round still starts at once, for one extra poll per
            idle node per burst of work.
        share_connections: one connection (pool) for all nodes on grpc-rere / rest.
        idle_exit: end the swarm once this many seconds passed without an instruction
            after the first one; while calls wait at the shared connection (saturated),
            also not before as many polls found no work as nodes are polling (polls
            that wait for a slot have not asked yet); None: run until stopped or every
            node ended.
        authentication_keys: a node's key pair by its partition id (a callable), or
            one pair per node (a sequence, node ``i`` gets item ``i``); grpc-rere.
        seed: seed of the poll jitter.
        root_certificates, insecure, max_retries, max_wait_time, wire, fail_fast,
            grpc_max_message_length: as ``start_client`` takes them, for every node
            (``max_retries`` / ``max_wait_time`` are each node's own budget).

    """

    server_address: str
    nodes: int
    app: SwarmApp
    transport: str = "grpc-rere"
    first_partition: int = 0
    num_partitions: int | None = None
    node_config: Mapping[str, bool | int | float | str] = field(default_factory=dict)
    start_rate: float = 250.0
    poll_interval: float | None = None
    heartbeat_interval: float | None = None
    wake: bool = True
    share_connections: bool = True
    idle_exit: float | None = None
    authentication_keys: Callable[[int], KeyPair] | Sequence[KeyPair] | None = None
    seed: int = 0
    root_certificates: bytes | str | None = None
    insecure: bool | None = None
    max_retries: int | None = None
    max_wait_time: float | None = None
    wire: str | None = None
    fail_fast: bool = False
    grpc_max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH

    def __post_init__(self) -> None:
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"nodes must be an int >= 1, got {self.nodes!r}")
        if self.first_partition < 0:
            raise ValueError(f"first_partition must be >= 0, got {self.first_partition}")
        if self.num_partitions is not None and self.num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        if not self.start_rate > 0:
            raise ValueError(f"start_rate must be > 0 nodes per second, got {self.start_rate}")
        for name in ("poll_interval", "heartbeat_interval", "idle_exit"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {value}")

    @property
    def partitions(self) -> int:
        """``num-partitions`` as every node gets it."""
        return self.num_partitions if self.num_partitions is not None else self.nodes

    def partition_ids(self) -> list[int]:
        """The partition id of each node of this swarm, in start order."""
        return list(range(self.first_partition, self.first_partition + self.nodes))

    def keys_for(self, partition_id: int) -> KeyPair | None:
        """The node's authentication keys, or None."""
        keys = self.authentication_keys
        if keys is None:
            return None
        if callable(keys):
            return keys(partition_id)
        return keys[partition_id - self.first_partition]

    def node_client_config(
        self, partition_id: int, on_event: Callable[[NodeEvent], None] | None
    ) -> ClientConfig:
        """The validated ``start_client`` configuration of one node.

        Raises:
            TypeError, ValueError: an argument is invalid (as ``start_client`` says).

        """
        app = self.app
        is_app = isinstance(app, ClientApp)
        return validate(
            server_address=self.server_address,
            client_fn=None if is_app else app,
            client=None,
            app=app if is_app else None,
            grpc_max_message_length=self.grpc_max_message_length,
            root_certificates=self.root_certificates,
            insecure=self.insecure,
            transport=self.transport,
            authentication_keys=self.keys_for(partition_id),
            max_retries=self.max_retries,
            max_wait_time=self.max_wait_time,
            wire=self.wire,
            fail_fast=self.fail_fast,
            on_event=on_event,
            node_config={
                **self.node_config,
                "partition-id": partition_id,
                "num-partitions": self.partitions,
            },
        )


class Swarm:
    """Runs the nodes of a :class:`SwarmConfig` on the running event loop.

    ``on_event`` (optional) gets ``(partition id, event)`` for every node event, on the
    loop, after :attr:`stats` counted it; ``progress`` (optional) a
    :class:`~flwr_sdk.swarm.stats.SwarmSnapshot` every ``progress_interval`` seconds and
    once at the end. Both run on the loop and must return quickly.
    """

    def __init__(
        self,
        config: SwarmConfig,
        on_event: SwarmEventCallback | None = None,
        *,
        progress: ProgressCallback | None = None,
        progress_interval: float = 0.5,
    ) -> None:
        """A swarm of ``config``; nothing starts before :meth:`run`."""
        self.config = config
        self.stats = SwarmStats(config.partition_ids())
        self._on_event = on_event
        self._progress = progress
        self._progress_interval = progress_interval
        self._stop = asyncio.Event()
        self._nodes: list[NodeLoop] = []
        self._started = 0.0
        self._wake = WakeUp(rng=random.Random(config.seed + 1), enabled=config.wake)

    def stop(self) -> None:
        """Stop every node and end :meth:`run`; loop thread only.

        Every node is asked to stop and leave the server (DeleteNode, or DeactivateNode /
        UnregisterNode); together they get :func:`close_budget` seconds for that before
        the ones still closing are cancelled.
        """
        self._stop.set()

    def _callback(self, index: int, partition_id: int) -> Callable[[NodeEvent], None]:
        record = self.stats.record
        user = self._on_event

        def on_event(event: NodeEvent) -> None:
            record(index, event)
            if user is not None:
                user(partition_id, event)

        return on_event

    async def run(self) -> SwarmResult:
        """Start the nodes (staggered), wait until the swarm ends, return what they did.

        Raises:
            TypeError, ValueError: an argument is invalid (before any node starts;
                ``heartbeat_interval`` outside the detected line's range included).
            flwr_sdk.errors.WireLineError: the server speaks no supported line (or not
                ``wire``): found out by the swarm's one probe, before any node starts.
            flwr_sdk.errors.RetriesExhaustedError: the server stayed unreachable for
                that probe past ``max_retries`` / ``max_wait_time``.

        """
        config = self.config
        ids = config.partition_ids()
        # Invalid arguments fail here, before anything connects.
        first = config.node_client_config(ids[0], None)
        line = get_line(config.wire) if config.wire is not None else None
        shared = SharedConnections(first.transport, first.settings, share=config.share_connections)
        rng = random.Random(config.seed)
        tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        watcher = asyncio.create_task(self._watch_idle(shared), name="flwr-sdk-swarm-idle")
        reporter = asyncio.create_task(self._report(), name="flwr-sdk-swarm-progress")
        try:
            starting = asyncio.create_task(self._start_all(ids, shared, line, rng, tasks))
            stopped = asyncio.create_task(self._stop.wait())
            everything = asyncio.create_task(self._all_done(starting, tasks))
            await asyncio.wait({stopped, everything}, return_when=asyncio.FIRST_COMPLETED)
            for helper in (starting, stopped, everything):
                helper.cancel()
            await asyncio.gather(starting, stopped, everything, return_exceptions=True)
            failure = None if starting.cancelled() else starting.exception()
            if failure is not None:
                raise failure  # the swarm's probe of the line failed: no node started
        finally:
            watcher.cancel()
            reporter.cancel()
            await _leave_all(self._nodes, tasks, close_budget(len(ids)))
            await shared.aclose()
        if self._progress is not None:
            self._progress(self.stats.snapshot())
        return self.stats.result(time.monotonic() - self._started)

    async def _report(self) -> None:
        if self._progress is None:
            return
        while True:
            self._progress(self.stats.snapshot())
            await asyncio.sleep(self._progress_interval)

    async def _start_all(
        self,
        ids: list[int],
        shared: SharedConnections,
        line: FleetLine | None,
        rng: random.Random,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        first = self.config.node_client_config(ids[0], None)
        # One probe for the whole swarm: each node trusts its answer (until a session of
        # its own was served and ended, see FleetConnector), so N nodes cost no N probes.
        detected = await shared.detect(first.settings, line, first.retry)
        heartbeat = self.config.heartbeat_interval
        if detected is not None:
            log.info("The server speaks the %s", detected.title)
            if heartbeat is not None:
                detected.check_heartbeat_interval(heartbeat)  # ValueError: no node starts
        budget = close_budget(len(ids))
        gap = START_BATCH / self.config.start_rate
        loop = asyncio.get_running_loop()
        next_batch = loop.time()
        for index, partition_id in enumerate(ids):
            if index and index % START_BATCH == 0:
                next_batch += gap
                delay = next_batch - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            node_config = self.config.node_client_config(
                partition_id, self._callback(index, partition_id)
            )
            connector: Connector = PollJitter(
                shared.connector(
                    node_config.settings,
                    line,
                    detected_line=detected,
                    heartbeat_interval=heartbeat,
                ),
                self.config.poll_interval,
                rng,
            )
            connector = WakingConnector(connector, self._wake)
            node = NodeLoop(node_config, connector, close_timeout=budget)
            self._nodes.append(node)
            tasks.append(
                asyncio.create_task(
                    self._node(index, partition_id, node),
                    name=f"flwr-sdk-swarm-node-{partition_id}",
                )
            )

    @staticmethod
    async def _all_done(starting: asyncio.Task[None], tasks: list[asyncio.Task[None]]) -> None:
        await starting
        if tasks:
            await asyncio.wait(tasks)

    async def _node(self, index: int, partition_id: int, node: NodeLoop) -> None:
        NODE.set(partition_id)
        self.stats.started(index)
        try:
            await node.run()
        except asyncio.CancelledError:
            self.stats.ended(index, None)
            raise
        except Exception as exc:
            log.debug("Node %d ended with %r", partition_id, exc)
            self.stats.ended(index, exc)
        else:
            self.stats.ended(index, None)

    async def _watch_idle(self, shared: SharedConnections) -> None:
        idle_exit = self.config.idle_exit
        if idle_exit is None:
            return
        stats, wake = self.stats, self._wake
        seen = 0
        since = time.monotonic()
        polls = wake.empty_polls
        while True:
            await asyncio.sleep(IDLE_CHECK)
            now = time.monotonic()
            if stats.instructions != seen or stats.count(NodeState.WORKING):
                seen, since, polls = stats.instructions, now, wake.empty_polls
            elif (
                seen
                and now - since >= idle_exit
                # While calls queue at the shared connection, polls may wait longer than
                # idle_exit: idle only once every polling node found no work since.
                and (
                    not shared.backlog
                    or wake.empty_polls - polls >= stats.count(NodeState.REGISTERED)
                )
            ):
                log.info("No instruction for %.0f s: stopping the swarm", now - since)
                self.stop()
                return


STOP_RECANCEL = 0.2
"""Seconds between two cancellations of the nodes that are still running at the end."""

CLOSE_BUDGET_PER_NODE = 0.001
"""Seconds the swarm's leaving budget grows by per node (see :func:`close_budget`)."""


def close_budget(nodes: int) -> float:
    """Seconds a stopping swarm of ``nodes`` nodes gives them all to leave the server.

    :data:`~flwr_sdk.node_loop.CLOSE_TIMEOUT` plus 1 ms per node (2,000 nodes: 12 s;
    10,000: 20 s): every node's closing calls share the connection's gate, where
    leaving calls go first, so the budget is the swarm's, not each node's.
    """
    return CLOSE_TIMEOUT + nodes * CLOSE_BUDGET_PER_NODE


async def _leave_all(
    nodes: Sequence[NodeLoop], tasks: list[asyncio.Task[None]], budget: float
) -> None:
    """Ask every node to stop, wait up to ``budget`` s for them to leave, then cancel.

    A stopped node closes its session with the whole budget for its closing calls
    (DeleteNode, or DeactivateNode / UnregisterNode); the nodes still running after the
    budget are cancelled until they end (:func:`_cancel_all`; a close then gets
    :data:`~flwr_sdk.node_loop.STOP_CLOSE_GRACE` more).
    """
    for node in nodes:
        node.stop()
    pending = [task for task in tasks if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=budget)
    await _cancel_all(tasks)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the nodes until every one has ended.

    Again and again, as ``start_client`` does after a signal: grpclib may turn a
    cancellation that lands while a connection dies into another error, and the node
    would then go on.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=STOP_RECANCEL)


def run_swarm(
    config: SwarmConfig,
    on_event: SwarmEventCallback | None = None,
    *,
    progress: ProgressCallback | None = None,
    progress_interval: float = 0.5,
) -> SwarmResult:
    """Run a swarm in a new event loop until it ends; SIGINT / SIGTERM stop it cleanly.

    Every node leaves the server (unregisters) on the way out. See :class:`Swarm` for
    the callbacks.
    """

    async def main() -> SwarmResult:
        swarm = Swarm(config, on_event, progress=progress, progress_interval=progress_interval)
        loop = asyncio.get_running_loop()
        install = threading.current_thread() is threading.main_thread()
        handled = (signal.SIGINT, signal.SIGTERM)
        if install:
            for sig in handled:
                loop.add_signal_handler(sig, swarm.stop)
        try:
            return await swarm.run()
        finally:
            if install:
                for sig in handled:
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())
