"""What the Fleet servicers of every request-response wire line share, written once.

Flower's Fleet lines (1.12's TaskIns/TaskRes, 1.15's Messages) differ in how work is
pulled and replies pushed, and in node authentication; CreateNode, DeleteNode, Ping,
GetRun and GetFab carry the same messages, and a push is answered the same way.
:class:`FleetServicerBase` implements those over the line-neutral
:class:`~flwr_sdk.server.fleet_state.FleetState` and the line's generated module (taken
from the line's client-side adapter, :class:`~flwr_sdk.wire.fleet_rules.ProtoFleetLine`),
as the SuperLink answers them:

* CreateNode registers a node (bound to the caller's authenticated key, if any);
* DeleteNode of node 0 is a no-op, of an unknown node an error
  (:class:`~flwr_sdk.server.fleet_state.FleetError`: gRPC ``UNKNOWN``, HTTP 500);
* Ping of an unknown node answers ``success=False``; GetRun of an unknown run an empty
  response; no FABs are served (GetFab is an error);
* a push with an empty list is an error (the SuperLink indexes the first entry); only
  the first entry counts; a reply that fails the checks is dropped and its id in the
  answer is ``"None"``; the answer's ``reconnect`` is ``PUSH_RECONNECT_SECONDS``.

A line's servicer subclasses this and its generated ``FleetBase`` and adds its pull and
push methods (and whatever its SuperLink does differently).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, TypeVar

from flwr_sdk.common.message import Message
from flwr_sdk.errors import ProtocolError
from flwr_sdk.server.fleet_grpc import caller_public_key
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_state import FleetError, FleetState, Instruction
from flwr_sdk.wire.fleet_rules import PUSH_RECONNECT_SECONDS, TTL_TOLERANCE, ProtoFleetLine

__all__ = ["FleetServicerBase", "decoded_reply", "method_name"]

log = logging.getLogger("flwr_sdk.server")

T = TypeVar("T")


def decoded_reply(
    convert: Callable[[T], Message], wire: T, with_error: Callable[[T, str], T]
) -> Message:
    """``convert(wire)``; content it cannot decode becomes an error (``with_error``).

    The reply still answers its instruction (the driver counts it as a failure).
    """
    try:
        return convert(wire)
    except ProtocolError as exc:
        return convert(with_error(wire, f"undecodable reply content: {exc}"))


def method_name(rpc_name: str) -> str:
    """The generated ``FleetBase`` method of an RPC: ``PullTaskIns`` → ``pull_task_ins``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc_name).lower()


class FleetServicerBase:
    """CreateNode, DeleteNode, Ping, GetRun, GetFab and the push answer, for one line."""

    #: The line's client-side adapter: its generated module and its RPCs by role.
    line: ClassVar[ProtoFleetLine]
    #: The node id instructions come from on this line.
    server_node_id: int
    #: Whether DeleteNode also forgets the node's public key (1.15) or keeps it (1.12).
    releases_key_on_delete: ClassVar[bool] = False

    def __init__(self, state: FleetState) -> None:
        self.state = state

    @property
    def proto(self) -> ModuleType:
        """The line's generated ``flwr.proto`` module."""
        return self.line.proto

    def named_node_id(self, node: Any) -> int | None:
        """The id of the node a request names (None: no node, or node 0)."""
        if node is None or node.node_id == 0:
            return None
        node_id: int = node.node_id
        return node_id

    async def create_node(self, message: Any) -> Any:
        """Register a node (bound to the caller's key under node authentication)."""
        node_id = self.state.create_node(message.ping_interval, caller_public_key())
        return self.proto.CreateNodeResponse(node=self.proto.Node(node_id=node_id))

    async def delete_node(self, message: Any) -> Any:
        """Unregister a node."""
        node_id = self.named_node_id(message.node)
        if node_id is not None:
            self.state.delete_node(node_id, release_key=self.releases_key_on_delete)
        return self.proto.DeleteNodeResponse()

    async def ping(self, message: Any) -> Any:
        """Extend a node's online window."""
        known = message.node is not None and self.state.ping(
            message.node.node_id, message.ping_interval
        )
        return self.proto.PingResponse(success=known)

    async def get_run(self, message: Any) -> Any:
        """The run (an empty answer for an unknown run)."""
        run = self.state.get_run(message.run_id)
        if run is None:
            return self.proto.GetRunResponse()
        return self.proto.GetRunResponse(
            run=self.proto.Run(
                run_id=run.run_id,
                fab_id=run.fab_id,
                fab_version=run.fab_version,
                fab_hash=run.fab_hash,
            )
        )

    async def get_fab(self, message: Any) -> Any:
        """No FABs are served."""
        raise FleetError(f"Found no FAB with hash: {message.hash_str}")

    def pull_for(self, node_id: int | None) -> Instruction | None:
        """The next instruction for a node (stamped delivered), None for no node."""
        return None if node_id is None else self.state.pull_instruction(node_id)

    def push(self, entries: Sequence[T], reply_of: Callable[[T], Message | None]) -> Any:
        """Store the reply the first entry carries; the line's push answer.

        ``reply_of`` converts the entry to a reply Message, or returns None when the
        SuperLink drops it for its wire form alone.
        """
        if not entries:
            raise FleetError("list index out of range")
        reply = reply_of(entries[0])
        message_id = None if reply is None else self.state.push_reply(reply, TTL_TOLERANCE)
        response_type: Any = self.line.rpcs.push.response_type
        return response_type(
            reconnect=self.proto.Reconnect(reconnect=PUSH_RECONNECT_SECONDS),
            results={str(message_id): 0},
        )

    def rest_routes(self) -> Mapping[str, FleetRoute]:
        """HTTP path → typed method, for every Fleet call of the line."""
        routes: dict[str, FleetRoute] = {}
        rpcs = self.line.rpcs
        for rpc in (getattr(rpcs, f.name) for f in dataclasses.fields(rpcs)):
            if rpc is None:  # a role the line does not have
                continue
            call: Callable[[Any], Awaitable[Any]] = getattr(self, method_name(rpc.name))
            if rpc.rest_path is not None:
                routes[rpc.rest_path] = FleetRoute(rpc.name, rpc.request_type, call)
        return routes
