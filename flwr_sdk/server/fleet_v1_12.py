"""The Flower 1.12 Fleet API (TaskIns/TaskRes) over the line-neutral Fleet state.

The only server module that knows the 1.12 Fleet wire: it implements the generated
``FleetBase``'s typed methods (CreateNode, DeleteNode, Ping, GetRun, GetFab and the push
answer shared with every line, :class:`~flwr_sdk.server.fleet_servicer.FleetServicerBase`),
converts ``TaskIns``/``TaskRes`` to and from the SDK's
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
from typing import Any

from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.message import Message
from flwr_sdk.server.fleet_servicer import FleetServicerBase, decoded_reply
from flwr_sdk.server.fleet_state import Instruction
from flwr_sdk.wire.v1_12 import DRIVER_NODE_ID, LINE, message_to_task_ins, task_res_to_message

__all__ = ["FleetServicerV1_12"]

log = logging.getLogger("flwr_sdk.server")


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


def _with_error(task_res: pb.TaskRes, reason: str) -> pb.TaskRes:
    task = task_res.task
    assert task is not None
    task.recordset = None
    task.error = pb.Error(code=0, reason=reason)
    return task_res


def _reply_of(task_res: pb.TaskRes) -> Message | None:
    """The reply a TaskRes carries, or None when the SuperLink drops it for its form."""
    reason = _wire_reject_reason(task_res)
    if reason is not None:
        log.warning("dropped a TaskRes: %s", reason)
        return None
    return decoded_reply(task_res_to_message, task_res, _with_error)


class FleetServicerV1_12(FleetServicerBase, pb.FleetBase):  # noqa: N801 - the line's version
    """``flwr.proto.Fleet`` of Flower 1.12 for a :class:`FleetState`."""

    line = LINE
    server_node_id = DRIVER_NODE_ID

    def named_node_id(self, node: Any) -> int | None:
        """The id of a named, non-anonymous node (None for anonymous / missing / node 0)."""
        return None if node is not None and node.anonymous else super().named_node_id(node)

    async def pull_task_ins(self, message: pb.PullTaskInsRequest) -> pb.PullTaskInsResponse:
        """At most one TaskIns for the caller's node."""
        entry = self.pull_for(self.named_node_id(message.node))
        return pb.PullTaskInsResponse(task_ins_list=[] if entry is None else [_task_ins(entry)])

    async def push_task_res(self, message: pb.PushTaskResRequest) -> pb.PushTaskResResponse:
        """Store the first TaskRes (the SuperLink looks at no other)."""
        response: pb.PushTaskResResponse = self.push(message.task_res_list, _reply_of)
        return response
