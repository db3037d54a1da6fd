"""State of the Fleet API, independent of the wire line: nodes, runs, instructions, replies.

Holds the SDK's own :class:`~flwr_sdk.common.message.Message` objects; a wire line's
servicer (e.g. :mod:`~flwr_sdk.server.fleet_v1_12`) converts its requests to these calls
and the answers back to its wire. The rules are those of the Flower SuperLink:

* :meth:`FleetState.create_node` makes a node with a random uint64 id (routinely
  >= 2^63) that is online for ``ping_interval`` seconds; every :meth:`~FleetState.ping`
  extends that window. With node authentication a public key is bound to one node:
  creating again with the same key returns the same id (a line that refuses a key
  already in use checks :attr:`FleetState.key_to_node` first).
* :meth:`FleetState.pull_instruction` hands out at most one instruction addressed to the
  node, not yet delivered and not expired, and stamps its delivery time.
* :meth:`FleetState.push_reply` stores a reply only if it passes the SuperLink's checks;
  a rejected reply is silently dropped (no id), except that a ``reply_to_message`` that is
  not a UUID is an error.
* :meth:`FleetState.delete_node` of an unknown node is an error.

The lifecycle of lines with separate registration and activation (Flower 1.42):
:meth:`~FleetState.register_node` binds a key to a new node that is *offline* until
:meth:`~FleetState.activate_node` (or a heartbeat, :meth:`~FleetState.ping`) puts it
online for a window (the line's ``2 * heartbeat_interval``);
:meth:`~FleetState.deactivate_node` takes an online node offline at once (an awaited
reply then fails with :class:`~flwr_sdk.server.driver.NodeUnavailableError`) and
:meth:`~FleetState.unregister_node` removes it for good: its key stays bound to the
removed id, so it can neither register again nor act as that node. Only online nodes
are sampled (:meth:`~FleetState.online_nodes`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr_sdk.common.fab import fab_hash
from flwr_sdk.common.message import Message
from flwr_sdk.server.driver import NodePool, NodeUnavailableError, ReplyTimeoutError
from flwr_sdk.server.node_log import NodeEventLog

__all__ = [
    "MIN_CREATED_AT",
    "FleetError",
    "FleetNodePool",
    "FleetRefusedError",
    "FleetState",
    "Instruction",
    "Run",
]

log = logging.getLogger("flwr_sdk.server")

MIN_CREATED_AT = 1711497600.0
"""The SuperLink refuses replies created before 2024-03-27."""

LIVENESS_CHECK = 0.5
"""How often a waiting request checks whether its node is still online."""


class FleetError(Exception):
    """A request the SuperLink would fail with a server exception (gRPC UNKNOWN / HTTP 500)."""


class FleetRefusedError(FleetError):
    """A request the SuperLink refuses with a coded error (Flower 1.42's Fleet API).

    ``status`` is the HTTP status it answers with (the gRPC front end maps it to a gRPC
    status), ``code`` its numeric error code and ``detail`` the public message.
    """

    def __init__(self, status: int, code: int, detail: str) -> None:
        super().__init__(f"{status} code {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def _new_id(taken: object) -> int:
    while True:
        value = secrets.randbits(64)
        if value not in taken:  # type: ignore[operator]
            return value


@dataclass(frozen=True)
class Run:
    """What the Fleet API tells nodes about a run."""

    run_id: int
    fab_id: str = ""
    fab_version: str = ""
    fab_hash: str = ""


@dataclass
class _Node:
    node_id: int
    online_until: float
    public_key: bytes | None = None


@dataclass
class Instruction:
    """A queued instruction: the message, when it was queued and when it was delivered."""

    message: Message
    future: asyncio.Future[Message]
    pushed_at: float
    delivered_at: float | None = None

    @property
    def node_id(self) -> int:
        """The node it is addressed to."""
        return self.message.metadata.dst_node_id

    def expired(self, now: float) -> bool:
        """Whether its TTL has run out."""
        md = self.message.metadata
        return md.created_at + md.ttl <= now


@dataclass
class FleetState:
    """Everything the Fleet API remembers, in memory, owned by one event loop."""

    nodes: dict[int, _Node] = field(default_factory=dict)
    runs: dict[int, Run] = field(default_factory=dict)
    key_to_node: dict[bytes, int] = field(default_factory=dict)
    fabs: dict[str, bytes] = field(default_factory=dict)
    _instructions: dict[str, Instruction] = field(default_factory=dict)
    _queues: dict[int, deque[str]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    events: NodeEventLog = field(init=False, repr=False)
    """Node lifecycle events, logged (per node at DEBUG, coalesced at INFO)."""

    def __post_init__(self) -> None:
        self.events = NodeEventLog(log, lambda: len(self.nodes))

    # ------------------------------------------------------------------- runs

    def create_run(self, fab_id: str = "", fab_version: str = "", fab: bytes | None = None) -> int:
        """Register a run (with the FAB it names, if any); return its random uint64 id."""
        run_id = _new_id(self.runs)
        hash_str = "" if fab is None else fab_hash(fab)
        if fab is not None:
            self.fabs[hash_str] = fab
        self.runs[run_id] = Run(run_id, fab_id, fab_version, hash_str)
        return run_id

    def get_fab(self, hash_str: str) -> bytes | None:
        """The FAB (ZIP bytes) with that hash, or None."""
        return self.fabs.get(hash_str)

    def get_run(self, run_id: int) -> Run | None:
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
            self.events.event(node_id, "re-registered with its key")
        else:
            node_id = _new_id(self.nodes)
            while node_id == 0:
                node_id = _new_id(self.nodes)
            self.nodes[node_id] = _Node(node_id, now + ping_interval, public_key)
            if public_key is not None:
                self.key_to_node[public_key] = node_id
            self.events.event(node_id, "registered")
        self._notify()
        return node_id

    def delete_node(self, node_id: int, *, release_key: bool = False) -> None:
        """Unregister a node. Raises FleetError for an unknown node.

        ``release_key``: also forget which public key the node was bound to (Flower 1.15;
        1.12 keeps the binding and hands the dead id out again to the same key).
        """
        if node_id not in self.nodes:
            raise FleetError(f"Node {node_id} not found")
        node = self.nodes.pop(node_id)
        if release_key and node.public_key is not None:
            self.key_to_node.pop(node.public_key, None)
        for message_id in self._queues.pop(node_id, deque()):
            entry = self._instructions.get(message_id)
            if entry is not None and not entry.future.done():
                entry.future.set_exception(NodeUnavailableError(f"node {node_id} left"))
        self.events.event(node_id, "unregistered")
        self._notify()

    def register_node(self, public_key: bytes) -> int | None:
        """Bind ``public_key`` to a new, offline node; None when the key was ever bound."""
        if public_key in self.key_to_node:
            return None
        node_id = _new_id(self.nodes)
        while node_id in (0, 1):
            node_id = _new_id(self.nodes)
        self.nodes[node_id] = _Node(node_id, 0.0, public_key)
        self.key_to_node[public_key] = node_id
        self.events.event(node_id, "registered, offline until activated")
        return node_id

    def node_of_key(self, public_key: bytes) -> int | None:
        """The registered (not unregistered) node bound to ``public_key``, or None."""
        node_id = self.key_to_node.get(public_key)
        return node_id if node_id is not None and node_id in self.nodes else None

    def activate_node(self, public_key: bytes, window: float) -> int | None:
        """Put the key's offline node online for ``window`` seconds; return its id.

        None when the key has no registered node or its node is already online.
        """
        node_id = self.node_of_key(public_key)
        if node_id is None or self.is_online(node_id):
            return None
        self.ping(node_id, window)
        self.events.event(node_id, "activated")
        return node_id

    def deactivate_node(self, node_id: int) -> bool:
        """Take an online node offline now; False when it is not online."""
        if not self.is_online(node_id):
            return False
        self.nodes[node_id].online_until = time.time()
        self.events.event(node_id, "deactivated")
        self._notify()
        return True

    def unregister_node(self, node_id: int) -> bool:
        """Remove a node for good (its key stays bound); False when it is unknown."""
        if node_id not in self.nodes:
            return False
        self.delete_node(node_id)
        return True

    def ping(self, node_id: int, ping_interval: float) -> bool:
        """Extend a node's online window; False for an unknown node."""
        if node_id not in self.nodes:
            return False
        self.nodes[node_id].online_until = time.time() + ping_interval
        self._notify()
        return True

    def is_online(self, node_id: int, now: float | None = None) -> bool:
        """Whether the node exists and is inside its ping window."""
        found = self.nodes.get(node_id)
        return found is not None and found.online_until > (time.time() if now is None else now)

    def online_nodes(self) -> list[int]:
        """Ids of the nodes inside their ping window (one pass over every node)."""
        now = time.time()
        return [node_id for node_id, node in self.nodes.items() if node.online_until > now]

    def node_count(self) -> int:
        """How many nodes are registered, online or not (an upper bound of the online)."""
        return len(self.nodes)

    def offline_among(self, node_ids: Iterable[int]) -> list[int]:
        """Those of ``node_ids`` that are not online now (unknown ones included)."""
        now = time.time()
        nodes = self.nodes
        return [n for n in node_ids if (node := nodes.get(n)) is None or node.online_until <= now]

    def _notify(self) -> None:
        self.changed.set()

    # ----------------------------------------------------------- instructions

    def add_instruction(self, message: Message) -> asyncio.Future[Message]:
        """Queue an instruction (its ``message_id`` set); return the future of its reply."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        entry = Instruction(message=message, future=future, pushed_at=time.time())
        message_id = message.metadata.message_id
        self._instructions[message_id] = entry
        self._queues.setdefault(entry.node_id, deque()).append(message_id)
        return future

    def drop_instruction(self, message_id: str) -> None:
        """Forget an instruction (answered, timed out or abandoned)."""
        entry = self._instructions.pop(message_id, None)
        if entry is not None:
            queue = self._queues.get(entry.node_id)
            if queue is not None and message_id in queue:
                queue.remove(message_id)

    def pull_instruction(self, node_id: int) -> Instruction | None:
        """The next undelivered, unexpired instruction for the node (stamped delivered)."""
        queue = self._queues.get(node_id)
        now = time.time()
        while queue:
            entry = self._instructions.get(queue.popleft())
            if entry is None or entry.delivered_at is not None or entry.expired(now):
                continue
            entry.delivered_at = time.time()
            return entry
        return None

    # ---------------------------------------------------------------- replies

    def push_reply(self, reply: Message, ttl_tolerance: float = 0.0) -> str | None:
        """Store a reply; return its new message id, or None when it is silently dropped.

        ``ttl_tolerance``: how far (seconds) the reply's TTL may exceed what is left of
        the instruction's (the line's rounding allowance). Raises FleetError when
        ``reply_to_message`` is not a UUID (as the SuperLink does).
        """
        reason = self._reject_reason(reply, ttl_tolerance)
        if reason is not None:
            log.warning("dropped a reply: %s", reason)
            return None
        entry = self._instructions[reply.metadata.reply_to_message]
        message_id = str(uuid.uuid4())
        reply.metadata.message_id = message_id
        if not entry.future.done():
            entry.future.set_result(reply)
        return message_id

    def reply_reject_reason(self, reply: Message, ttl_tolerance: float = 0.0) -> str | None:
        """Why :meth:`push_reply` would drop ``reply`` now; None when it would be stored.

        Also refuses a reply to an instruction that is already answered. For lines that
        accept a reply's envelope before its content arrives. Raises FleetError as
        :meth:`push_reply` does.
        """
        reason = self._reject_reason(reply, ttl_tolerance)
        if reason is None and self._instructions[reply.metadata.reply_to_message].future.done():
            return "the instruction was already answered"
        return reason

    def _reject_reason(self, reply: Message, ttl_tolerance: float) -> str | None:
        md = reply.metadata
        now = time.time()
        if md.created_at < MIN_CREATED_AT:
            return "created_at is too old"
        if not md.ttl > 0:
            return "ttl must be > 0"
        if md.created_at + md.ttl <= now:
            return "expired"
        if md.src_node_id == 0:
            return "the sender must be a non-anonymous node"
        if not md.message_type:
            return "empty message_type"
        try:
            uuid.UUID(md.reply_to_message)
        except ValueError:
            raise FleetError("badly formed hexadecimal UUID string") from None
        entry = self._instructions.get(md.reply_to_message)
        if entry is None:
            return f"unknown instruction {md.reply_to_message}"
        if entry.expired(now):
            return "the instruction expired"
        if entry.node_id != md.src_node_id:
            return "the instruction was addressed to another node"
        ins = entry.message.metadata
        if md.ttl > ins.created_at + ins.ttl - md.created_at + ttl_tolerance:
            return "ttl exceeds what is left of the instruction's"
        if md.run_id not in self.runs:
            return f"unknown run {md.run_id}"
        return None


class FleetNodePool(NodePool):
    """The Fleet API nodes as the driver sees them: online nodes, instruction → reply.

    While replies are awaited, one watcher task checks every :data:`LIVENESS_CHECK`
    seconds that their nodes are still online and fails the replies of those that are
    not (:class:`~flwr_sdk.server.driver.NodeUnavailableError`): one pass over the
    awaited nodes per check, not a timer per request.
    """

    def __init__(self, state: FleetState, server_node_id: int) -> None:
        super().__init__(server_node_id)
        self.state = state
        self._changed = state.changed
        self._awaited: dict[int, set[asyncio.Future[Message]]] = {}
        """Node → the futures of its replies that requests await."""
        self._watcher: asyncio.Task[None] | None = None

    def online_nodes(self) -> list[int]:
        """Nodes inside their ping window."""
        return self.state.online_nodes()

    def node_count(self) -> int:
        """Registered nodes, online or not: a bound found without a pass over them."""
        return self.state.node_count()

    async def request(self, message: Message, timeout: float | None) -> Message:
        """Queue the instruction for the node and wait for the reply that answers it."""
        node_id = message.metadata.dst_node_id
        if not self.state.is_online(node_id):
            raise NodeUnavailableError(f"node {node_id} is not online")
        future = self.state.add_instruction(message)
        self._awaited.setdefault(node_id, set()).add(future)
        self._watch()
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done:
                raise ReplyTimeoutError(f"node {node_id} did not answer within {timeout}s")
            return future.result()
        finally:
            awaited = self._awaited.get(node_id)
            if awaited is not None:
                awaited.discard(future)
                if not awaited:
                    del self._awaited[node_id]
            if not self._awaited and self._watcher is not None:
                # Nothing left to watch: the watcher must not sleep on (a server that
                # stops would leave it pending on a closing event loop).
                self._watcher.cancel()
                self._watcher = None
            self.state.drop_instruction(message.metadata.message_id)

    def _watch(self) -> None:
        """Start the liveness watcher unless it runs."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_liveness())

    async def _watch_liveness(self) -> None:
        """Fail the awaited replies of nodes that went offline, until none is awaited."""
        while self._awaited:
            await asyncio.sleep(LIVENESS_CHECK)
            for node_id in self.state.offline_among(self._awaited):
                for future in self._awaited.pop(node_id, ()):
                    if not future.done():
                        future.set_exception(NodeUnavailableError(f"node {node_id} went offline"))
