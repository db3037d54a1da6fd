"""The Flower 1.12 wire line: what goes on the wire, and every quirk of it.

Fleet API (grpc-rere and REST; ``PullTaskIns`` / ``PushTaskRes``):

* work arrives as ``TaskIns`` and leaves as ``TaskRes``; the server side ("driver") is
  ``Node{node_id: 0, anonymous: true}`` and a client ``Node{node_id: id, anonymous:
  false}``; node and run ids are uint64 and routinely >= 2^63;
* a client uses the first pulled TaskIns only if it is addressed to its own node id and
  carries a record set (an error-only TaskIns counts as "no work");
* the TaskRes has ``task_id=""``, the instruction's group and run, the node as producer,
  the anonymous driver as consumer, ``ancestry=[instruction task_id]``, the same
  ``task_type``, ``created_at`` = now and ``ttl`` = instruction ttl minus the time
  elapsed since the instruction was created, and exactly one of recordset / error;
* ``delivered_at`` and ``pushed_at`` are stamped by the SuperLink; clients ignore them;
* before pushing, a reply is checked against its instruction as Flower's client does
  (same run/group/type, reply_to = instruction id, src = own node, dst = driver, created
  later) and its ttl clipped to the instruction's remaining lifetime; a reply already
  expired would be dropped silently by the SuperLink (:func:`reply_expired`);
* ``PushTaskRes`` carries exactly one TaskRes (an empty list crashes the 1.12 server);
  ``GetFabRequest`` has no run_id; a FAB is named by the SHA-256 of its bytes;
* with node authentication the SuperLink keeps a key bound to a node it deleted or lost
  and hands out that dead node id again (:attr:`FleetLineV1_12.reissues_lost_node_ids`).

:data:`LINE` is the adapter the session uses; node authentication is
:mod:`flwr_sdk.wire.v1_12_auth`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.errors import ProtocolError
from flwr_sdk.wire.base import NodeAuth, NodeKeys, NoNodeAuth
from flwr_sdk.wire.fleet_rules import (
    ProtoFleetLine,
    check_reply,
    clipped_ttl,
    expired,
    fleet_rpcs,
)
from flwr_sdk.wire.records import recordset_from_wire, recordset_to_wire
from flwr_sdk.wire.v1_12_auth import HmacNodeAuth

DRIVER_NODE_ID = 0
"""In 1.12 the server side of the Fleet API is the anonymous node 0."""


# ----------------------------------------------------------------------------------------
# Fleet API (grpc-rere, REST): TaskIns / TaskRes


def node(node_id: int) -> pb.Node:
    """The ``Node`` of a client, as every Fleet request carries it."""
    return pb.Node(node_id=node_id, anonymous=False)


def driver_node() -> pb.Node:
    """The server side ("driver") of the Fleet API in 1.12."""
    return pb.Node(node_id=DRIVER_NODE_ID, anonymous=True)


def accept_task_ins(task_ins: pb.TaskIns, own_node_id: int) -> bool:
    """Whether a pulled TaskIns is work for this node (Flower's client-side rule)."""
    task = task_ins.task
    return (
        task is not None
        and task.consumer is not None
        and task.consumer.node_id == own_node_id
        and task.recordset is not None
    )


def _to_task(message: Message, producer: pb.Node, consumer: pb.Node) -> pb.Task:
    md = message.metadata
    body: dict[str, Any] = (
        {"recordset": recordset_to_wire(message.content, pb)}
        if message.has_content()
        else {"error": pb.Error(code=message.error.code, reason=message.error.reason)}
    )
    return pb.Task(
        producer=producer,
        consumer=consumer,
        created_at=md.created_at,
        ttl=md.ttl,
        ancestry=[md.reply_to_message] if md.reply_to_message else [],
        task_type=md.message_type,
        **body,
    )


def _from_task(
    task: pb.Task, run_id: int, group_id: str, message_id: str, src: int, dst: int
) -> Message:
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id,
        src_node_id=src,
        dst_node_id=dst,
        reply_to_message=task.ancestry[0] if task.ancestry else "",
        group_id=group_id,
        ttl=task.ttl,
        message_type=task.task_type,
        created_at=task.created_at,
    )
    if task.recordset is not None:
        return Message(metadata, content=recordset_from_wire(task.recordset))
    if task.error is not None:
        return Message(metadata, error=Error(code=task.error.code, reason=task.error.reason))
    raise ProtocolError(f"task {message_id!r} carries neither a record set nor an error")


def task_ins_to_message(task_ins: pb.TaskIns) -> Message:
    """A TaskIns as the Message the client code sees."""
    task = task_ins.task
    if task is None:
        raise ProtocolError("TaskIns without a task")
    producer = task.producer.node_id if task.producer is not None else DRIVER_NODE_ID
    consumer = task.consumer.node_id if task.consumer is not None else 0
    return _from_task(
        task, task_ins.run_id, task_ins.group_id, task_ins.task_id, producer, consumer
    )


def message_to_task_res(reply: Message) -> pb.TaskRes:
    """The TaskRes that carries ``reply`` (built with ``Message.create_reply``)."""
    md = reply.metadata
    if not md.reply_to_message:
        raise ProtocolError("a TaskRes must name the TaskIns it answers (reply_to_message)")
    task = _to_task(reply, node(md.src_node_id), driver_node())
    return pb.TaskRes(task_id="", group_id=md.group_id, run_id=md.run_id, task=task)


def message_to_task_ins(message: Message) -> pb.TaskIns:
    """The TaskIns a server sends for ``message`` (server side; ``task_id`` as given)."""
    md = message.metadata
    task = _to_task(message, driver_node(), node(md.dst_node_id))
    return pb.TaskIns(task_id=md.message_id, group_id=md.group_id, run_id=md.run_id, task=task)


def task_res_to_message(task_res: pb.TaskRes, message_id: str = "") -> Message:
    """A pushed TaskRes as a reply Message (server side)."""
    task = task_res.task
    if task is None or task.producer is None:
        raise ProtocolError("TaskRes without a task or producer")
    if not task.ancestry:
        raise ProtocolError("TaskRes without ancestry")
    if (task.recordset is None) == (task.error is None):
        raise ProtocolError("a TaskRes must carry exactly one of recordset and error")
    src = task.producer.node_id
    return _from_task(task, task_res.run_id, task_res.group_id, message_id, src, DRIVER_NODE_ID)


# ----------------------------------------------------------------------------------------
# Fleet API requests and responses (one function per wire rule)


def reply_task_res(instruction: Message, reply: Message, own_node_id: int) -> pb.TaskRes:
    """The TaskRes for ``reply`` to ``instruction``, checked and filled as Flower does.

    Checks what Flower's client checks before pushing (same run, group and type,
    ``reply_to_message`` = instruction id, source = this node, destination = the
    driver, created after the instruction) and clips the ttl to the instruction's
    remaining lifetime, ``instruction.created_at + instruction.ttl - reply.created_at``.
    The result has ``task_id=""``, ``producer={own id, anonymous=false}``,
    ``consumer={0, anonymous=true}``, ``ancestry=[instruction id]``, no ``delivered_at``
    and no ``pushed_at``.

    Raises:
        ProtocolError: the reply does not answer the instruction.

    """
    check_reply(instruction, reply, own_node_id)
    task_res = message_to_task_res(reply)
    assert task_res.task is not None
    task_res.task.ttl = clipped_ttl(instruction, reply)
    return task_res


def reply_expired(task_res: pb.TaskRes, now: float | None = None) -> bool:
    """Whether the SuperLink would silently drop this TaskRes as expired."""
    task = task_res.task
    return task is None or expired(task.created_at, task.ttl, now)


# ----------------------------------------------------------------------------------------
# The adapter: the rules above, in the session's role names


class FleetLineV1_12(ProtoFleetLine):  # noqa: N801  (the line's version is its name)
    """Flower 1.12's Fleet API: TaskIns / TaskRes, optional ECDH + HMAC node auth."""

    name = "1.12"
    title = "Flower 1.12 Fleet API"
    rpcs = fleet_rpcs(fleet_api, fleet_api.FLEET_PULL_TASK_INS, fleet_api.FLEET_PUSH_TASK_RES)
    proto: ClassVar[ModuleType] = pb
    reissues_lost_node_ids = True

    def node_auth(self, keys: NodeKeys | None) -> NodeAuth:
        """HMAC node auth with the user's keys; none without keys (1.12 is opt-in)."""
        return NoNodeAuth() if keys is None else HmacNodeAuth(keys)

    def node_from_register(self, response: Any) -> pb.Node:
        """The ``Node`` CreateNode assigned (reused verbatim in later requests).

        Raises:
            ProtocolError: no usable node (Flower: "Node registration failed").

        """
        node: pb.Node | None = response.node
        if node is None or node.anonymous:
            raise ProtocolError(f"CreateNode returned no usable node: {node!r}")
        return node

    def pull_request(self, node: Any) -> pb.PullTaskInsRequest:
        """``PullTaskIns`` (``task_ids`` is never set by 1.12 clients)."""
        return pb.PullTaskInsRequest(node=node)

    def instruction_from_pull(self, response: Any, node_id: int) -> Message | None:
        """The first TaskIns if it is work for this node (:func:`accept_task_ins`).

        Only the first entry counts; a rejected one is dropped (the SuperLink never
        redelivers it).
        """
        entries: list[pb.TaskIns] = response.task_ins_list
        if not entries or not accept_task_ins(entries[0], node_id):
            return None
        return task_ins_to_message(entries[0])

    def push_request(
        self, node: Any, instruction: Message, reply: Message
    ) -> pb.PushTaskResRequest | None:
        """``PushTaskRes`` with exactly one checked TaskRes; None when it expired."""
        task_res = reply_task_res(instruction, reply, self.node_id(node))
        if reply_expired(task_res):
            return None
        return pb.PushTaskResRequest(node=node, task_res_list=[task_res])

    def get_fab_request(self, node: Any, fab_hash: str, run_id: int) -> pb.GetFabRequest:
        """``GetFab`` by hash (1.12's GetFabRequest has no run_id)."""
        return pb.GetFabRequest(node=node, hash_str=fab_hash)


LINE = FleetLineV1_12()
"""The Flower 1.12 line's adapter."""
