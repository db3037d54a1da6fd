"""The Flower 1.12 Fleet API session, shared by the grpc-rere and rest transports.

One :class:`FleetSession` is one registered node. The flow (Flower's, with its gaps
closed):

1. ``CreateNode(ping_interval=30)`` → the node (:meth:`FleetSession.open`). Not retried
   here: the node loop retries the whole :meth:`FleetConnector.connect` under the retry
   policy. A session that fails while opening is closed (DeleteNode if a node was
   created, channel closed) before the error propagates.
2. Heartbeat: an asyncio task sends ``Ping(ping_interval=30)`` at once and then every
   ``(30 - 5) * U(0.7, 0.9)`` s (17.5 to 22.5 s), each with a 5 s deadline. A failing ping
   is retried with the policy's backoff (never giving up on its own: the main calls
   decide when the server is gone). ``Ping -> success=false`` means the SuperLink no
   longer knows the node (it was restarted): the session is marked lost, and the next
   :meth:`~FleetSession.receive` raises :class:`~flwr_sdk.errors.ServerUnavailableError`,
   so the node loop closes the session and registers a new node. (Flower 1.12 silently
   ends its ping thread and polls forever as a node nobody samples.)
3. ``PullTaskIns`` (:meth:`~FleetSession.receive`); no work → the node loop polls again
   after 3 s (:attr:`~FleetSession.poll_interval`).
4. ``GetRun`` once per run (:meth:`~FleetSession.run_info`, cached), and ``GetFab``
   once per run when the run names a FAB; ``run_config`` = the FAB's
   ``[tool.flwr.app.config]`` overlaid with ``Run.override_config``
   (:mod:`flwr_sdk.common.fab`). A failing GetFab, or a FAB that is not usable, means "no FAB"
   and the run config is then ``Run.override_config`` alone. (Flower fetches the FAB for
   every message; a FAB is named by its hash, so once per run is enough.)
5. The node loop handles the message; ``PushTaskRes`` (:meth:`~FleetSession.send`).
6. :meth:`~FleetSession.close`, on every way out: heartbeat cancelled, ``DeleteNode`` (one
   try, :data:`DELETE_NODE_TIMEOUT` deadline, failures only logged), transport closed.

Failures mid-session: PullTaskIns, PushTaskRes, GetRun and GetFab are each retried under
the ``max_retries`` / ``max_wait_time`` policy when they fail with an "unavailable"-class
error (:class:`~flwr_sdk.errors.ServerUnavailableError`), keeping the node, its
registration and a computed reply; when the policy gives up,
:class:`~flwr_sdk.errors.RetriesExhaustedError` ends ``start_client``. After a call
succeeded only on a retry, the heartbeat pings at once to find out whether the node
survived the outage. Every other failure (authentication, protocol, message size) is
raised at once and never retried.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import random
from typing import Any

import betterproto2
from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.fab import FabError, run_config_from_fab
from flwr_sdk.common.message import Message
from flwr_sdk.errors import FlwrSdkError, ServerUnavailableError, TransportError
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire import v1_12
from flwr_sdk.wire.base import RunInfo

__all__ = [
    "CALL_TIMEOUT",
    "DATA_CALL_TIMEOUT",
    "DELETE_NODE_TIMEOUT",
    "PING_TIMEOUT",
    "POLL_INTERVAL",
    "FleetConnector",
    "FleetSession",
    "NodeLostError",
]

log = logging.getLogger("flwr_sdk")

POLL_INTERVAL = 3.0
"""Seconds between two PullTaskIns while there is no work (Flower's fixed interval)."""

PING_TIMEOUT = 5.0
"""Deadline of one Ping, and the margin the heartbeat keeps before ``ping_interval``."""

CALL_TIMEOUT = 30.0
"""Deadline of the small calls: CreateNode, GetRun."""

DATA_CALL_TIMEOUT = 600.0
"""Deadline of the calls that may carry a model: PullTaskIns, PushTaskRes, GetFab."""

DELETE_NODE_TIMEOUT = 3.0
"""Deadline of the single DeleteNode sent when a session closes."""

_TIMEOUTS: dict[str, float] = {
    fleet_api.FLEET_CREATE_NODE.name: CALL_TIMEOUT,
    fleet_api.FLEET_GET_RUN.name: CALL_TIMEOUT,
    fleet_api.FLEET_PING.name: PING_TIMEOUT,
    fleet_api.FLEET_DELETE_NODE.name: DELETE_NODE_TIMEOUT,
    fleet_api.FLEET_PULL_TASK_INS.name: DATA_CALL_TIMEOUT,
    fleet_api.FLEET_PUSH_TASK_RES.name: DATA_CALL_TIMEOUT,
    fleet_api.FLEET_GET_FAB.name: DATA_CALL_TIMEOUT,
}


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, ServerUnavailableError)


class NodeLostError(ServerUnavailableError):
    """The SuperLink no longer knows this node (e.g. it restarted); register again."""


class FleetSession(Connection):
    """One registered node on a Flower 1.12 Fleet API; transports add :meth:`_call`.

    Subclasses implement :meth:`_call` (one unary Fleet RPC, mapping every failure onto
    :mod:`flwr_sdk.errors`) and :meth:`_close_transport`, and may extend
    :meth:`_create_node` (e.g. to read response metadata).
    """

    poll_interval = POLL_INTERVAL
    supports_error_replies = True

    def __init__(
        self,
        *,
        retry: RetryPolicy | None,
        ping_interval: float = v1_12.PING_INTERVAL,
        rng: random.Random | None = None,
    ) -> None:
        self._retry = retry if retry is not None else RetryPolicy(None, None)
        self._ping_interval = ping_interval
        self._rng = rng if rng is not None else random.Random()
        self._node: pb.Node | None = None
        self._instruction: Message | None = None
        self._runs: dict[int, RunInfo] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._ping_now = asyncio.Event()
        self._lost = False
        self._closed = False

    # ----------------------------------------------------------------- transport hooks

    @abc.abstractmethod
    async def _call(self, rpc: fleet_api.Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """Make one Fleet call and return its response (of ``rpc.response_type``).

        Raises:
            flwr_sdk.errors.ServerUnavailableError: unreachable / unavailable (retryable).
            flwr_sdk.errors.AuthenticationError: the server refused the node's credentials.
            flwr_sdk.errors.TransportError: any other failure.

        """

    @abc.abstractmethod
    async def _close_transport(self) -> None:
        """Close the channel or HTTP client (never raises)."""

    async def _create_node(self, request: pb.CreateNodeRequest) -> pb.CreateNodeResponse:
        """Send CreateNode; transports with node authentication extend this."""
        response: pb.CreateNodeResponse = await self._call(
            fleet_api.FLEET_CREATE_NODE, request, _TIMEOUTS[fleet_api.FLEET_CREATE_NODE.name]
        )
        return response

    async def _after_create_node(self) -> None:
        """Check the registration (e.g. that the server sent its key); raise to undo it."""

    # ------------------------------------------------------------------------ flow

    @property
    def node_id(self) -> int:
        """The id CreateNode gave this node."""
        if self._node is None:
            raise RuntimeError("the session has no node yet (open() was not called)")
        return self._node.node_id

    @property
    def lost(self) -> bool:
        """Whether the SuperLink said it no longer knows this node."""
        return self._lost

    async def open(self) -> None:
        """Register the node and start the heartbeat; on failure, undo and close.

        Raises:
            flwr_sdk.errors.TransportError: as :meth:`_call` does, or as
                :meth:`_after_create_node` decides.

        """
        try:
            response = await self._create_node(v1_12.create_node_request(self._ping_interval))
            self._node = v1_12.node_from_create_node(response)
            log.info("Registered with the SuperLink as node %d", self._node.node_id)
            await self._after_create_node()
        except BaseException:
            await self.close()
            raise
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="flwr-sdk-heartbeat")

    async def _retrying(self, rpc: fleet_api.Rpc, request: betterproto2.Message) -> Any:
        """Make a call, retrying "unavailable" failures under the session's policy."""
        failures = 0

        async def attempt() -> Any:
            nonlocal failures
            try:
                result = await self._call(rpc, request, _TIMEOUTS[rpc.name])
            except ServerUnavailableError:
                failures += 1
                raise
            return result

        response = await self._retry.run(
            attempt, is_retryable=_unavailable, describe=f"{rpc.name} (node {self.node_id})"
        )
        if failures:
            # The server was away: find out at once whether it still knows this node.
            self._ping_now.set()
        return response

    async def receive(self) -> Message | None:
        """Pull the next instruction; None when there is none (poll again later).

        Raises:
            NodeLostError: the SuperLink no longer knows this node; reconnect.

        """
        if self._lost:
            raise NodeLostError(f"the SuperLink no longer knows node {self.node_id}")
        assert self._node is not None
        response: pb.PullTaskInsResponse = await self._retrying(
            fleet_api.FLEET_PULL_TASK_INS, v1_12.pull_task_ins_request(self._node)
        )
        task_ins = v1_12.pulled_task_ins(response, self.node_id)
        if task_ins is None:
            if response.task_ins_list:
                log.debug("Dropped a TaskIns not meant for node %d", self.node_id)
            return None
        message = v1_12.task_ins_to_message(task_ins)
        self._instruction = message
        log.debug(
            "Received %s (run %d, group %r)",
            message.metadata.message_type,
            message.metadata.run_id,
            message.metadata.group_id,
        )
        return message

    async def send(self, reply: Message) -> None:
        """Push the reply to the instruction last received."""
        instruction, self._instruction = self._instruction, None
        if instruction is None:
            raise RuntimeError("send() called without a received instruction")
        assert self._node is not None
        task_res = v1_12.reply_task_res(instruction, reply, self.node_id)
        if v1_12.reply_expired(task_res):
            log.warning(
                "Not sending the %s reply: instruction %s expired before it was answered",
                reply.metadata.message_type,
                instruction.metadata.message_id,
            )
            return
        await self._retrying(
            fleet_api.FLEET_PUSH_TASK_RES, v1_12.push_task_res_request(self._node, task_res)
        )

    async def run_info(self, run_id: int) -> RunInfo:
        """GetRun (and GetFab when the run has a FAB), once per run; see module docs."""
        cached = self._runs.get(run_id)
        if cached is not None:
            return cached
        assert self._node is not None
        try:
            response: pb.GetRunResponse = await self._retrying(
                fleet_api.FLEET_GET_RUN, v1_12.get_run_request(self._node, run_id)
            )
        except ServerUnavailableError:
            raise
        except TransportError as exc:
            log.warning("GetRun for run %d failed (%s); using an empty run config", run_id, exc)
            info = RunInfo(run_id=run_id)
        else:
            info = v1_12.run_from_wire(response, run_id)
            if info.fab_hash:
                info = await self._with_fab_config(info)
        self._runs[run_id] = info
        return info

    async def _with_fab_config(self, info: RunInfo) -> RunInfo:
        assert self._node is not None
        try:
            response: pb.GetFabResponse = await self._retrying(
                fleet_api.FLEET_GET_FAB, v1_12.get_fab_request(self._node, info.fab_hash)
            )
        except ServerUnavailableError:
            raise
        except TransportError as exc:
            log.warning("GetFab %s failed (%s): running without a FAB", info.fab_hash[:12], exc)
            return info
        content = v1_12.fab_from_wire(response, info.fab_hash)
        if content is None:
            log.warning("GetFab returned no FAB matching %s: running without one", info.fab_hash)
            return info
        try:
            config = run_config_from_fab(content, info.run_config)
        except FabError as exc:
            log.warning("Ignoring FAB %s: %s", info.fab_hash[:12], exc)
            return info
        return dataclasses.replace(info, run_config=config)

    # ------------------------------------------------------------------- heartbeat

    def _next_ping_delay(self) -> float:
        return (self._ping_interval - PING_TIMEOUT) * self._rng.uniform(0.7, 0.9)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ping_now.wait(), timeout=seconds)
        self._ping_now.clear()

    async def _heartbeat_loop(self) -> None:
        assert self._node is not None
        request = v1_12.ping_request(self._node, self._ping_interval)
        backoff = self._retry.backoff()
        while True:
            try:
                response: pb.PingResponse = await self._call(
                    fleet_api.FLEET_PING, request, PING_TIMEOUT
                )
            except FlwrSdkError as exc:
                wait = backoff.next_wait()
                log.warning("Ping failed: %s; next ping in %.1f s", exc, wait)
                await self._wait(wait)
                continue
            backoff.reset()
            if not response.success:
                log.warning(
                    "The SuperLink no longer knows node %d (was it restarted?); registering again",
                    self._node.node_id,
                )
                self._lost = True
                return
            await self._wait(self._next_ping_delay())

    # ------------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop the heartbeat, DeleteNode (once, short deadline), close the transport."""
        if self._closed:
            return
        self._closed = True
        heartbeat, self._heartbeat = self._heartbeat, None
        try:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await heartbeat
            if self._node is not None and not self._lost:
                await self._delete_node(self._node)
        finally:
            await self._close_transport()

    async def _delete_node(self, node: pb.Node) -> None:
        try:
            await self._call(
                fleet_api.FLEET_DELETE_NODE, v1_12.delete_node_request(node), DELETE_NODE_TIMEOUT
            )
        except FlwrSdkError as exc:
            log.warning("DeleteNode for node %d failed: %s", node.node_id, exc)
        else:
            log.info("Unregistered node %d", node.node_id)


class FleetConnector(Connector):
    """Opens :class:`FleetSession` objects, refusing the 1.12 "ghost node".

    With node authentication a 1.12 SuperLink keeps the key bound to a deleted node and
    hands out that dead id again: registering anew after a lost node could then only loop.
    """

    def __init__(self) -> None:
        self._lost_node_ids: set[int] = set()
        self._last: FleetSession | None = None

    @abc.abstractmethod
    def _new_session(self) -> FleetSession:
        """A new, unopened session."""

    async def connect(self) -> Connection:
        """Register a node (CreateNode) and start its heartbeat."""
        last = self._last
        if last is not None and last.lost and last._node is not None:
            self._lost_node_ids.add(last._node.node_id)
        session = self._new_session()
        self._last = session
        await session.open()
        if session.node_id in self._lost_node_ids:
            await session.close()
            raise TransportError(
                f"the SuperLink handed out node {session.node_id} again, which it had "
                "reported as unknown (with node authentication, a Flower 1.12 SuperLink "
                "keeps a key bound to a node it lost); use a new key or restart the SuperLink"
            )
        return session
