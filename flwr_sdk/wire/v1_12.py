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
  ``GetFabRequest`` has no run_id; a FAB is named by the SHA-256 of its bytes.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.errors import ProtocolError
from flwr_sdk.wire.base import RunInfo
from flwr_sdk.wire.records import recordset_from_wire, recordset_to_wire
from flwr_sdk.wire.scalars import config_from_wire

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


def _error_from_wire(error: pb.Error) -> Error:
    return Error(code=error.code, reason=error.reason)


def task_ins_to_message(task_ins: pb.TaskIns) -> Message:
    """A TaskIns as the Message the client code sees."""
    task = task_ins.task
    if task is None:
        raise ProtocolError("TaskIns without a task")
    producer = task.producer.node_id if task.producer is not None else DRIVER_NODE_ID
    consumer = task.consumer.node_id if task.consumer is not None else 0
    metadata = Metadata(
        run_id=task_ins.run_id,
        message_id=task_ins.task_id,
        src_node_id=producer,
        dst_node_id=consumer,
        reply_to_message=task.ancestry[0] if task.ancestry else "",
        group_id=task_ins.group_id,
        ttl=task.ttl,
        message_type=task.task_type,
        created_at=task.created_at,
    )
    if task.recordset is not None:
        return Message(metadata, content=recordset_from_wire(task.recordset))
    if task.error is not None:
        return Message(metadata, error=_error_from_wire(task.error))
    raise ProtocolError(f"TaskIns {task_ins.task_id!r} carries neither a record set nor an error")


def _task_body(message: Message) -> dict[str, Any]:
    if message.has_content():
        return {"recordset": recordset_to_wire(message.content, pb)}
    return {"error": pb.Error(code=message.error.code, reason=message.error.reason)}


def message_to_task_res(reply: Message) -> pb.TaskRes:
    """The TaskRes that carries ``reply`` (built with ``Message.create_reply``)."""
    md = reply.metadata
    if not md.reply_to_message:
        raise ProtocolError("a TaskRes must name the TaskIns it answers (reply_to_message)")
    return pb.TaskRes(
        task_id="",
        group_id=md.group_id,
        run_id=md.run_id,
        task=pb.Task(
            producer=node(md.src_node_id),
            consumer=driver_node(),
            created_at=md.created_at,
            ttl=md.ttl,
            ancestry=[md.reply_to_message],
            task_type=md.message_type,
            **_task_body(reply),
        ),
    )


def message_to_task_ins(message: Message) -> pb.TaskIns:
    """The TaskIns a server sends for ``message`` (server side; ``task_id`` as given)."""
    md = message.metadata
    return pb.TaskIns(
        task_id=md.message_id,
        group_id=md.group_id,
        run_id=md.run_id,
        task=pb.Task(
            producer=driver_node(),
            consumer=node(md.dst_node_id),
            created_at=md.created_at,
            ttl=md.ttl,
            ancestry=[md.reply_to_message] if md.reply_to_message else [],
            task_type=md.message_type,
            **_task_body(message),
        ),
    )


def task_res_to_message(task_res: pb.TaskRes, message_id: str = "") -> Message:
    """A pushed TaskRes as a reply Message (server side)."""
    task = task_res.task
    if task is None or task.producer is None:
        raise ProtocolError("TaskRes without a task or producer")
    if not task.ancestry:
        raise ProtocolError("TaskRes without ancestry")
    if (task.recordset is None) == (task.error is None):
        raise ProtocolError("a TaskRes must carry exactly one of recordset and error")
    metadata = Metadata(
        run_id=task_res.run_id,
        message_id=message_id,
        src_node_id=task.producer.node_id,
        dst_node_id=DRIVER_NODE_ID,
        reply_to_message=task.ancestry[0],
        group_id=task_res.group_id,
        ttl=task.ttl,
        message_type=task.task_type,
        created_at=task.created_at,
    )
    if task.recordset is not None:
        return Message(metadata, content=recordset_from_wire(task.recordset))
    assert task.error is not None
    return Message(metadata, error=_error_from_wire(task.error))


def run_from_wire(response: pb.GetRunResponse, run_id: int) -> RunInfo:
    """What ``GetRun`` says about a run (an empty response means "unknown run")."""
    run = response.run
    if run is None:
        return RunInfo(run_id=run_id)
    return RunInfo(
        run_id=run.run_id or run_id,
        run_config=config_from_wire(run.override_config),
        fab_id=run.fab_id,
        fab_version=run.fab_version,
        fab_hash=run.fab_hash,
    )


# ----------------------------------------------------------------------------------------
# Fleet API requests and responses (one function per wire rule)

PING_INTERVAL = 30.0
"""``ping_interval`` a 1.12 client announces in CreateNode and Ping (seconds)."""

TTL_TOLERANCE = 0.1
"""Seconds by which the SuperLink lets a reply's ttl exceed the instruction's lifetime."""

PUSH_RECONNECT_SECONDS = 5
"""``PushTaskResResponse.reconnect`` as the 1.12 SuperLink sends it (clients ignore it)."""


def create_node_request(ping_interval: float = PING_INTERVAL) -> pb.CreateNodeRequest:
    """``CreateNode``: register a node that promises to ping every ``ping_interval`` s."""
    return pb.CreateNodeRequest(ping_interval=ping_interval)


def node_from_create_node(response: pb.CreateNodeResponse) -> pb.Node:
    """The ``Node`` a CreateNode response assigns (reused verbatim in later requests).

    Raises:
        ProtocolError: the response carries no node (Flower: "Node registration failed").

    """
    if response.node is None or response.node.anonymous:
        raise ProtocolError(f"CreateNode returned no usable node: {response.node!r}")
    return response.node


def delete_node_request(own: pb.Node) -> pb.DeleteNodeRequest:
    """``DeleteNode`` for this node."""
    return pb.DeleteNodeRequest(node=own)


def ping_request(own: pb.Node, ping_interval: float = PING_INTERVAL) -> pb.PingRequest:
    """``Ping``: keep this node online for another ``ping_interval`` seconds."""
    return pb.PingRequest(node=own, ping_interval=ping_interval)


def pull_task_ins_request(own: pb.Node) -> pb.PullTaskInsRequest:
    """``PullTaskIns`` for this node (``task_ids`` is never set by 1.12 clients)."""
    return pb.PullTaskInsRequest(node=own)


def pulled_task_ins(response: pb.PullTaskInsResponse, own_node_id: int) -> pb.TaskIns | None:
    """The TaskIns to work on, or None ("no work").

    Flower's rule: only the *first* entry counts, and only if it is addressed to this
    node and carries a record set (see :func:`accept_task_ins`). A rejected entry is
    dropped (the SuperLink never redelivers it).
    """
    if not response.task_ins_list:
        return None
    first = response.task_ins_list[0]
    if not accept_task_ins(first, own_node_id):
        return None
    return first


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
    inc, out = instruction.metadata, reply.metadata
    problems = [
        name
        for name, ok in (
            ("run_id", out.run_id == inc.run_id),
            ("group_id", out.group_id == inc.group_id),
            ("message_type", out.message_type == inc.message_type),
            ("reply_to_message", out.reply_to_message == inc.message_id),
            ("src_node_id", out.src_node_id == own_node_id),
            ("dst_node_id", out.dst_node_id == inc.src_node_id),
            ("created_at", out.created_at > inc.created_at),
        )
        if not ok
    ]
    if problems:
        raise ProtocolError(f"the reply does not answer its instruction ({', '.join(problems)})")
    task_res = message_to_task_res(reply)
    assert task_res.task is not None
    lifetime = inc.created_at + inc.ttl - out.created_at
    task_res.task.ttl = min(out.ttl, lifetime)
    return task_res


def reply_expired(task_res: pb.TaskRes, now: float | None = None) -> bool:
    """Whether the SuperLink would silently drop this TaskRes as expired."""
    task = task_res.task
    if task is None:
        return True
    moment = time.time() if now is None else now
    return not (task.ttl > 0 and task.created_at + task.ttl > moment)


def push_task_res_request(own: pb.Node, task_res: pb.TaskRes) -> pb.PushTaskResRequest:
    """``PushTaskRes`` with exactly one TaskRes (an empty list crashes the 1.12 server)."""
    return pb.PushTaskResRequest(node=own, task_res_list=[task_res])


def get_run_request(own: pb.Node, run_id: int) -> pb.GetRunRequest:
    """``GetRun`` for ``run_id``."""
    return pb.GetRunRequest(node=own, run_id=run_id)


def get_fab_request(own: pb.Node, fab_hash: str) -> pb.GetFabRequest:
    """``GetFab`` by hash (1.12's GetFabRequest has no run_id)."""
    return pb.GetFabRequest(node=own, hash_str=fab_hash)


def fab_from_wire(response: pb.GetFabResponse, fab_hash: str) -> bytes | None:
    """The FAB's ZIP bytes, or None when the response has no FAB or another one.

    A FAB is named by the SHA-256 hex digest of its bytes; content that does not hash to
    the requested name is not used.
    """
    fab = response.fab
    if fab is None or not fab.content:
        return None
    if hashlib.sha256(fab.content).hexdigest() != fab_hash.lower():
        return None
    return bytes(fab.content)
