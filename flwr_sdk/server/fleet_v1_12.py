"""The Flower 1.12 Fleet API (TaskIns/TaskRes) over the line-neutral Fleet state.

The only server module that knows the 1.12 Fleet wire: it implements the generated
``FleetBase``'s typed methods, converts ``TaskIns``/``TaskRes`` to and from the SDK's
:class:`~flwr_sdk.common.message.Message` (:mod:`flwr_sdk.wire.v1_12`), and applies the
1.12 SuperLink's own facts: instructions come from node ``DRIVER_NODE_ID``, a reply's
TTL may exceed what is left by ``TTL_TOLERANCE``, ``PushTaskResResponse.reconnect`` is
``PUSH_RECONNECT_SECONDS``. Answers as the 1.12 SuperLink does:

* unknown or anonymous nodes pull nothing and ping ``success=False`` (no error);
  DeleteNode of node 0 / an anonymous node is a no-op, of an unknown node an error;
* a TaskRes that fails the SuperLink's checks is silently dropped (its id is
  ``"None"``); an empty ``task_res_list``, a non-UUID ancestry and an unknown FAB are
  errors (:class:`~flwr_sdk.server.fleet_state.FleetError`: gRPC ``UNKNOWN``, HTTP 500).

Node authentication and error statuses wrap these methods
(:mod:`~flwr_sdk.server.fleet_grpc`); the caller's authenticated key reaches
``create_node`` through :func:`~flwr_sdk.server.fleet_grpc.caller_public_key`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.message import Message
from flwr_sdk.server.fleet_grpc import caller_public_key
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_state import FleetError, FleetState, Instruction
from flwr_sdk.wire.fleet_rules import PUSH_RECONNECT_SECONDS, TTL_TOLERANCE
from flwr_sdk.wire.v1_12 import (
    DRIVER_NODE_ID,
    message_to_task_ins,
    node,
    task_res_to_message,
)

__all__ = ["FleetServicerV1_12"]

log = logging.getLogger("flwr_sdk.server")


def _node_id(request_node: pb.Node | None) -> int | None:
    """The id of a named, non-anonymous node (None for anonymous / missing / node 0)."""
    if request_node is None or request_node.anonymous or request_node.node_id == 0:
        return None
    return request_node.node_id


def _task_ins(entry: Instruction) -> pb.TaskIns:
    task_ins = message_to_task_ins(entry.message)
    task = task_ins.task
    assert task is not None and entry.delivered_at is not None
    task.pushed_at = entry.pushed_at
    task.delivered_at = datetime.datetime.fromtimestamp(
        entry.delivered_at, datetime.timezone.utc
    ).isoformat()
    return task_ins


def _wire_reject_reason(task_res: pb.TaskRes) -> str | None:
    """Why the SuperLink drops a TaskRes for its wire form alone (None: it may pass)."""
    task = task_res.task
    if task_res.task_id != "":
        return "task_id must be empty"
    if task is None:
        return "no task"
    if task.delivered_at != "":
        return "delivered_at must be empty"
    producer, consumer = task.producer, task.consumer
    if producer is None or producer.anonymous:
        return "producer must be a non-anonymous node"
    if consumer is None:
        return "no consumer"
    if consumer.anonymous != (consumer.node_id == 0):
        return "consumer must be the anonymous node 0 or a non-anonymous node"
    if (task.recordset is None) == (task.error is None):
        return "needs exactly one of recordset and error"
    if not task.ancestry:
        return "empty ancestry"
    return None


def _reply(task_res: pb.TaskRes) -> Message:
    """The TaskRes as a reply Message; content that cannot be decoded becomes an error.

    The reply still answers its instruction (the driver counts it as a failure).
    """
    try:
        return task_res_to_message(task_res)
    except (ValueError, TypeError) as exc:
        task = task_res.task
        assert task is not None
        task.recordset = None
        task.error = pb.Error(code=0, reason=f"undecodable reply content: {exc}")
        return task_res_to_message(task_res)


class FleetServicerV1_12(pb.FleetBase):  # noqa: N801 - the line's version in the name
    """``flwr.proto.Fleet`` of Flower 1.12 for a :class:`FleetState`."""

    server_node_id = DRIVER_NODE_ID

    def __init__(self, state: FleetState) -> None:
        self.state = state

    async def create_node(self, message: pb.CreateNodeRequest) -> pb.CreateNodeResponse:
        """Register a node (bound to the caller's key under node authentication)."""
        node_id = self.state.create_node(message.ping_interval, caller_public_key())
        return pb.CreateNodeResponse(node=node(node_id))

    async def delete_node(self, message: pb.DeleteNodeRequest) -> pb.DeleteNodeResponse:
        """Unregister a node."""
        node_id = _node_id(message.node)
        if node_id is not None:
            self.state.delete_node(node_id)
        return pb.DeleteNodeResponse()

    async def ping(self, message: pb.PingRequest) -> pb.PingResponse:
        """Extend a node's online window."""
        known = message.node is not None and self.state.ping(
            message.node.node_id, message.ping_interval
        )
        return pb.PingResponse(success=known)

    async def pull_task_ins(self, message: pb.PullTaskInsRequest) -> pb.PullTaskInsResponse:
        """At most one TaskIns for the caller's node."""
        request_node = message.node
        if request_node is None or request_node.anonymous:
            return pb.PullTaskInsResponse()
        entry = self.state.pull_instruction(request_node.node_id)
        return pb.PullTaskInsResponse(task_ins_list=[] if entry is None else [_task_ins(entry)])

    async def push_task_res(self, message: pb.PushTaskResRequest) -> pb.PushTaskResResponse:
        """Store the first TaskRes (the SuperLink looks at no other)."""
        if not message.task_res_list:
            raise FleetError("list index out of range")
        task_res = message.task_res_list[0]
        reason = _wire_reject_reason(task_res)
        if reason is not None:
            log.warning("dropped a TaskRes: %s", reason)
            message_id = None
        else:
            message_id = self.state.push_reply(_reply(task_res), TTL_TOLERANCE)
        return pb.PushTaskResResponse(
            reconnect=pb.Reconnect(reconnect=PUSH_RECONNECT_SECONDS),
            results={str(message_id): 0},
        )

    async def get_run(self, message: pb.GetRunRequest) -> pb.GetRunResponse:
        """The run (an empty answer for an unknown run)."""
        run = self.state.get_run(message.run_id)
        if run is None:
            return pb.GetRunResponse()
        return pb.GetRunResponse(
            run=pb.Run(
                run_id=run.run_id,
                fab_id=run.fab_id,
                fab_version=run.fab_version,
                fab_hash=run.fab_hash,
            )
        )

    async def get_fab(self, message: pb.GetFabRequest) -> pb.GetFabResponse:
        """No FABs are served."""
        raise FleetError(f"Found no FAB with hash: {message.hash_str}")

    def rest_routes(self) -> Mapping[str, FleetRoute]:
        """HTTP path → typed method, for every Fleet call that has a REST path."""
        methods: dict[fleet_api.Rpc, Callable[[Any], Awaitable[Any]]] = {
            fleet_api.FLEET_CREATE_NODE: self.create_node,
            fleet_api.FLEET_DELETE_NODE: self.delete_node,
            fleet_api.FLEET_PING: self.ping,
            fleet_api.FLEET_PULL_TASK_INS: self.pull_task_ins,
            fleet_api.FLEET_PUSH_TASK_RES: self.push_task_res,
            fleet_api.FLEET_GET_RUN: self.get_run,
            fleet_api.FLEET_GET_FAB: self.get_fab,
        }
        return {
            rpc.rest_path: FleetRoute(rpc.name, rpc.request_type, call)
            for rpc, call in methods.items()
            if rpc.rest_path is not None
        }
