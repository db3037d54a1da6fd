"""State of the Fleet API (grpc-rere and REST): nodes, runs, TaskIns queues, TaskRes.

The rules are those of the Flower 1.12 SuperLink:

* ``CreateNode`` makes a node with a random uint64 id (routinely >= 2^63) that is online
  for ``ping_interval`` seconds; every ``Ping`` extends that window. With node
  authentication a public key is bound to one node: creating again with the same key
  returns the same id.
* ``PullTaskIns`` hands out at most one TaskIns, addressed to the caller's (non-anonymous)
  node, not yet delivered and not expired; it stamps ``delivered_at``. Unknown or
  anonymous nodes get nothing (no error).
* ``PushTaskRes`` stores a reply only if it passes the SuperLink's checks
  (:meth:`FleetState.push_task_res`); a rejected reply is silently dropped (the answer
  names the id ``"None"``), except that an ancestry entry that is not a UUID is an error.
* ``DeleteNode`` of an unknown node is an error; of node 0 / an anonymous node a no-op.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.message import Message
from flwr_sdk.server.driver import NodePool, NodeUnavailableError, ReplyTimeoutError
from flwr_sdk.wire.v1_12 import TTL_TOLERANCE, message_to_task_ins, task_res_to_message

__all__ = ["MIN_CREATED_AT", "FleetError", "FleetNodePool", "FleetState"]

log = logging.getLogger("flwr_sdk.server")

MIN_CREATED_AT = 1711497600.0
"""The SuperLink refuses replies created before 2024-03-27."""

LIVENESS_CHECK = 0.5
"""How often a waiting request checks whether its node is still online."""


class FleetError(Exception):
    """A request the SuperLink would fail with a server exception (gRPC UNKNOWN / HTTP 500)."""


def _new_id(taken: object) -> int:
    while True:
        value = secrets.randbits(64)
        if value not in taken:  # type: ignore[operator]
            return value


@dataclass
class _Node:
    node_id: int
    online_until: float
    public_key: bytes | None = None


@dataclass
class _TaskInsEntry:
    task_ins: pb.TaskIns
    node_id: int
    run_id: int
    created_at: float
    ttl: float
    future: asyncio.Future[pb.TaskRes]
    delivered: bool = False

    def expired(self, now: float) -> bool:
        return self.created_at + self.ttl <= now


@dataclass
class FleetState:
    """Everything the Fleet API remembers, in memory, owned by one event loop."""

    nodes: dict[int, _Node] = field(default_factory=dict)
    runs: dict[int, pb.Run] = field(default_factory=dict)
    key_to_node: dict[bytes, int] = field(default_factory=dict)
    _task_ins: dict[str, _TaskInsEntry] = field(default_factory=dict)
    _queues: dict[int, deque[str]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------------- runs

    def create_run(self, fab_id: str = "", fab_version: str = "") -> int:
        """Register a run; return its random uint64 id."""
        run_id = _new_id(self.runs)
        self.runs[run_id] = pb.Run(run_id=run_id, fab_id=fab_id, fab_version=fab_version)
        return run_id

    def get_run(self, run_id: int) -> pb.Run | None:
        """The run, or None if unknown."""
        return self.runs.get(run_id)

    # ------------------------------------------------------------------ nodes

    def create_node(self, ping_interval: float, public_key: bytes | None = None) -> int:
        """Register a node (or refresh the node bound to ``public_key``); return its id."""
        now = time.time()
        if public_key is not None and public_key in self.key_to_node:
            node_id = self.key_to_node[public_key]
            node = self.nodes.get(node_id)
            if node is None:
                # Flower 1.12 hands out the old id of a deleted node and leaves it dead (a
                # "ghost"); we revive it under the same id instead.
                node = _Node(node_id, now + ping_interval, public_key)
                self.nodes[node_id] = node
            node.online_until = now + ping_interval
            log.info("node %d re-registered with its key", node_id)
        else:
            node_id = _new_id(self.nodes)
            while node_id == 0:
                node_id = _new_id(self.nodes)
            self.nodes[node_id] = _Node(node_id, now + ping_interval, public_key)
            if public_key is not None:
                self.key_to_node[public_key] = node_id
            log.info("node %d registered (%d nodes)", node_id, len(self.nodes))
        self._notify()
        return node_id

    def delete_node(self, node: pb.Node | None) -> None:
        """Unregister a node. Raises FleetError for an unknown (non-anonymous) node."""
        if node is None or node.anonymous or node.node_id == 0:
            return
        if node.node_id not in self.nodes:
            raise FleetError(f"Node {node.node_id} not found")
        del self.nodes[node.node_id]
        for task_id in self._queues.pop(node.node_id, deque()):
            entry = self._task_ins.get(task_id)
            if entry is not None and not entry.future.done():
                entry.future.set_exception(NodeUnavailableError(f"node {node.node_id} left"))
        log.info("node %d unregistered (%d nodes)", node.node_id, len(self.nodes))
        self._notify()

    def ping(self, node: pb.Node | None, ping_interval: float) -> bool:
        """Extend a node's online window; False for an unknown node."""
        if node is None or node.node_id not in self.nodes:
            return False
        self.nodes[node.node_id].online_until = time.time() + ping_interval
        self._notify()
        return True

    def is_online(self, node_id: int, now: float | None = None) -> bool:
        """Whether the node exists and is inside its ping window."""
        found = self.nodes.get(node_id)
        return found is not None and found.online_until > (time.time() if now is None else now)

    def online_nodes(self) -> list[int]:
        """Ids of the nodes inside their ping window."""
        now = time.time()
        return [n for n in self.nodes if self.is_online(n, now)]

    def _notify(self) -> None:
        self.changed.set()

    # --------------------------------------------------------------- TaskIns

    def add_task_ins(self, task_ins: pb.TaskIns) -> asyncio.Future[pb.TaskRes]:
        """Queue an instruction (its ``task_id`` set); return the future of its reply."""
        task = task_ins.task
        assert task is not None and task.consumer is not None
        task.pushed_at = time.time()
        future: asyncio.Future[pb.TaskRes] = asyncio.get_running_loop().create_future()
        entry = _TaskInsEntry(
            task_ins=task_ins,
            node_id=task.consumer.node_id,
            run_id=task_ins.run_id,
            created_at=task.created_at,
            ttl=task.ttl,
            future=future,
        )
        self._task_ins[task_ins.task_id] = entry
        self._queues.setdefault(entry.node_id, deque()).append(task_ins.task_id)
        return future

    def drop_task_ins(self, task_id: str) -> None:
        """Forget an instruction (answered, timed out or abandoned)."""
        entry = self._task_ins.pop(task_id, None)
        if entry is not None:
            queue = self._queues.get(entry.node_id)
            if queue is not None and task_id in queue:
                queue.remove(task_id)

    def pull_task_ins(self, node: pb.Node | None) -> list[pb.TaskIns]:
        """At most one undelivered, unexpired TaskIns for ``node`` (stamped delivered)."""
        if node is None or node.anonymous:
            return []
        queue = self._queues.get(node.node_id)
        now = time.time()
        while queue:
            task_id = queue.popleft()
            entry = self._task_ins.get(task_id)
            if entry is None or entry.delivered or entry.expired(now):
                continue
            entry.delivered = True
            task = entry.task_ins.task
            assert task is not None
            task.delivered_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
            return [entry.task_ins]
        return []

    # --------------------------------------------------------------- TaskRes

    def push_task_res(self, task_res: pb.TaskRes) -> str | None:
        """Store a reply; return its new task id, or None when it is silently dropped.

        Raises FleetError when ``ancestry[0]`` is not a UUID (as the SuperLink does).
        """
        reason = self._reject_reason(task_res)
        if reason is not None:
            log.warning("dropped a TaskRes: %s", reason)
            return None
        task = task_res.task
        assert task is not None
        entry = self._task_ins[task.ancestry[0]]
        task_id = str(uuid.uuid4())
        task_res.task_id = task_id
        task.pushed_at = time.time()
        if not entry.future.done():
            entry.future.set_result(task_res)
        return task_id

    def _reject_reason(self, task_res: pb.TaskRes) -> str | None:
        task = task_res.task
        now = time.time()
        if task_res.task_id != "":
            return "task_id must be empty"
        if task is None:
            return "no task"
        if task.created_at < MIN_CREATED_AT:
            return "created_at is too old"
        if task.delivered_at != "":
            return "delivered_at must be empty"
        if not task.ttl > 0:
            return "ttl must be > 0"
        if task.created_at + task.ttl <= now:
            return "expired"
        producer, consumer = task.producer, task.consumer
        if producer is None or producer.anonymous or producer.node_id == 0:
            return "producer must be a non-anonymous node"
        if consumer is None:
            return "no consumer"
        if consumer.anonymous != (consumer.node_id == 0):
            return "consumer must be the anonymous node 0 or a non-anonymous node"
        if not task.task_type:
            return "empty task_type"
        if (task.recordset is None) == (task.error is None):
            return "needs exactly one of recordset and error"
        if not task.ancestry:
            return "empty ancestry"
        try:
            uuid.UUID(task.ancestry[0])
        except ValueError:
            raise FleetError("badly formed hexadecimal UUID string") from None
        entry = self._task_ins.get(task.ancestry[0])
        if entry is None:
            return f"unknown TaskIns {task.ancestry[0]}"
        if entry.expired(now):
            return "the TaskIns expired"
        if entry.node_id != producer.node_id:
            return "the TaskIns was addressed to another node"
        if task.ttl > entry.created_at + entry.ttl - task.created_at + TTL_TOLERANCE:
            return "ttl exceeds what is left of the TaskIns's"
        if task_res.run_id not in self.runs:
            return f"unknown run {task_res.run_id}"
        return None


class FleetNodePool(NodePool):
    """The Fleet API nodes as the driver sees them: online nodes, TaskIns → TaskRes."""

    def __init__(self, state: FleetState) -> None:
        super().__init__()
        self.state = state
        self._changed = state.changed

    def online_nodes(self) -> list[int]:
        """Nodes inside their ping window."""
        return self.state.online_nodes()

    async def request(self, message: Message, timeout: float | None) -> Message:
        """Queue a TaskIns for the node and wait for the TaskRes that answers it."""
        node_id = message.metadata.dst_node_id
        if not self.state.is_online(node_id):
            raise NodeUnavailableError(f"node {node_id} is not online")
        task_ins = message_to_task_ins(message)
        future = self.state.add_task_ins(task_ins)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                step = LIVENESS_CHECK
                if deadline is not None:
                    step = min(step, deadline - time.monotonic())
                    if step <= 0:
                        raise ReplyTimeoutError(f"node {node_id} did not answer within {timeout}s")
                done, _ = await asyncio.wait({future}, timeout=step)
                if done:
                    task_res = future.result()
                    return task_res_to_message(task_res, message_id=task_res.task_id)
                if not self.state.is_online(node_id):
                    raise NodeUnavailableError(f"node {node_id} went offline")
        finally:
            self.state.drop_task_ins(task_ins.task_id)
