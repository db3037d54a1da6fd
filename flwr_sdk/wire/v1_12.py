"""The Flower 1.12 wire line: what goes on the wire, and every quirk of it.

Fleet API (grpc-rere and REST; ``PullTaskIns`` / ``PushTaskRes``):

* work arrives as ``TaskIns`` and leaves as ``TaskRes``; the server side ("driver") is
  ``Node{node_id: 0, anonymous: true}`` and a client ``Node{node_id: id, anonymous:
  false}``; node and run ids are uint64 and routinely >= 2^63;
* a client uses the first pulled TaskIns only if it is addressed to its own node id and
  carries a record set; anything else counts as "no work" (Flower's client drops an
  error-only TaskIns too; the protocol has no reply for it). The SuperLink never
  redelivers a pulled TaskIns, so each one not used is dropped with a WARNING and counted
  (:meth:`~flwr_sdk.wire.base.FleetLine.drop`): no task, not for this node, no record
  set, times no reply could satisfy (:func:`~flwr_sdk.wire.fleet_rules.unanswerable`),
  and every entry after the first;
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
from flwr_sdk.errors import MalformedMessageError, ProtocolError
from flwr_sdk.wire.base import NodeAuth, NodeKeys, NoNodeAuth
from flwr_sdk.wire.fleet_rules import (
    ProtoFleetLine,
    check_reply,
    clipped_ttl,
    expired,
    fleet_rpcs,
    unanswerable,
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
    return rejection(task_ins, own_node_id) is None


def rejection(task_ins: pb.TaskIns, own_node_id: int) -> tuple[str, str] | None:
    """Why a pulled TaskIns is not work for this node: ``(reason, detail)``, or None."""
    task = task_ins.task
    what = f"TaskIns {task_ins.task_id!r}"
    if task is None:
        return "no task", f"{what} carries no task"
    consumer = task.consumer.node_id if task.consumer is not None else None
    if consumer != own_node_id:
        return "not for this node", f"{what} is addressed to node {consumer}"
    if task.recordset is None:
        carries = "an error" if task.error is not None else "neither a record set nor an error"
        return "no record set", f"{what} carries {carries}"
    return None


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
    raise MalformedMessageError(
        f"task {message_id!r} carries neither a record set nor an error", what="Task"
    )


def task_ins_to_message(task_ins: pb.TaskIns) -> Message:
    """A TaskIns as the Message the client code sees."""
    task = task_ins.task
    if task is None:
        raise MalformedMessageError("TaskIns without a task", what="TaskIns", field="task")
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
        ReplyRuleError: the reply does not answer the instruction.

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

        Usable means present, not anonymous and not node id 0 (the driver's id: the
        SuperLink stores no TaskRes whose producer has it).

        Raises:
            MalformedMessageError: no usable node (Flower: "Node registration failed").

        """
        node: pb.Node | None = response.node
        if node is None or node.anonymous or node.node_id == DRIVER_NODE_ID:
            raise MalformedMessageError(
                f"CreateNode returned no usable node: {node!r}",
                what="CreateNode response",
                field="node",
            )
        return node

    def pull_request(self, node: Any) -> pb.PullTaskInsRequest:
        """``PullTaskIns`` (``task_ids`` is never set by 1.12 clients)."""
        return pb.PullTaskInsRequest(node=node)

    def instruction_from_pull(self, response: Any, node_id: int) -> Message | None:
        """The first TaskIns if it is work for this node (:func:`accept_task_ins`).

        Only the first entry counts; a rejected one, and every entry after it, is
        dropped with a WARNING and counted (the SuperLink never redelivers it). So is
        one whose times no reply could satisfy.

        Raises:
            MalformedMessageError: the response, or the TaskIns for this node, is
                malformed (e.g. its record set).

        """
        entries: list[pb.TaskIns] = response.task_ins_list
        if not entries:
            return None
        for extra in entries[1:]:
            self.drop("more than one per pull", f"TaskIns {extra.task_id!r} was not first")
        first = entries[0]
        rejected = rejection(first, node_id)
        if rejected is not None:
            self.drop(*rejected)
            return None
        message = task_ins_to_message(first)
        why = unanswerable(message)
        if why is not None:
            self.drop("unanswerable times", why)
            return None
        return message

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
