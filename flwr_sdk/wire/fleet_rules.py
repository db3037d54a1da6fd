"""What the request-response Fleet lines share (1.12 and 1.15): reply rules and a base.

Both lines answer an instruction the same way — the reply is checked against it as
Flower's client checks it (:func:`check_reply`, :class:`~flwr_sdk.errors.ReplyRuleError`
naming each rule broken), its ttl clipped to the instruction's remaining lifetime, and
a reply that already expired is not sent (the SuperLink would drop it silently); an
instruction no reply could answer (:func:`unanswerable`: its ``created_at`` or ``ttl``
is not a finite number) is dropped before user code runs — and both have the same
CreateNode / Ping / GetRun / GetFab / DeleteNode messages.
:class:`ProtoFleetLine` implements those calls once over a line's generated module;
each line adds what differs (how work is pulled and replies pushed, node auth).
"""

from __future__ import annotations

import hashlib
import math
import time
from types import ModuleType
from typing import Any, ClassVar

import betterproto2

from flwr_sdk.common.message import Message
from flwr_sdk.errors import ReplyRuleError
from flwr_sdk.wire.base import FleetLine, FleetRpcs, Rpc, RunInfo
from flwr_sdk.wire.scalars import config_from_wire

__all__ = [
    "PING_INTERVAL",
    "PUSH_RECONNECT_SECONDS",
    "TTL_TOLERANCE",
    "ProtoFleetLine",
    "check_reply",
    "clipped_ttl",
    "expired",
    "fleet_rpcs",
    "unanswerable",
]

PING_INTERVAL = 30.0
"""``ping_interval`` a client announces in CreateNode and Ping (seconds)."""

TTL_TOLERANCE = 0.1
"""Seconds by which the SuperLink lets a reply's ttl exceed the instruction's lifetime."""

PUSH_RECONNECT_SECONDS = 5
"""``reconnect`` the SuperLink puts in a push response (clients ignore it)."""


def check_reply(instruction: Message, reply: Message, own_node_id: int) -> None:
    """Check ``reply`` answers ``instruction`` as Flower's client does before pushing.

    Same run, group and type; ``reply_to_message`` = the instruction's id; source =
    this node; destination = the instruction's source; created after the instruction.

    Raises:
        ReplyRuleError: naming every rule the reply breaks.

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
        raise ReplyRuleError(
            f"the reply does not answer its instruction ({', '.join(problems)})",
            rules=tuple(problems),
        )


def unanswerable(instruction: Message) -> str | None:
    """Why no reply could ever answer ``instruction`` by the reply rules, or None.

    A ``created_at`` or ``ttl`` that is not a finite number (NaN, ±inf) leaves no reply
    ``created_at`` later than the instruction's and no ttl to clip: the server would
    refuse every reply, so the instruction is dropped before user code runs.
    """
    md = instruction.metadata
    bad = [name for name in ("created_at", "ttl") if not math.isfinite(getattr(md, name))]
    if not bad:
        return None
    values = ", ".join(f"{name}={getattr(md, name)!r}" for name in bad)
    return f"{md.message_type!r} instruction {md.message_id!r} has {values}"


def clipped_ttl(instruction: Message, reply: Message) -> float:
    """The reply's ttl, at most the instruction's remaining lifetime when replying."""
    inc, out = instruction.metadata, reply.metadata
    return min(out.ttl, inc.created_at + inc.ttl - out.created_at)


def expired(created_at: float, ttl: float, now: float | None = None) -> bool:
    """Whether a message created at ``created_at`` with ``ttl`` is dead (or never lived)."""
    moment = time.time() if now is None else now
    return not (ttl > 0 and created_at + ttl > moment)


def fleet_rpcs(api: ModuleType, pull: Rpc, push: Rpc) -> FleetRpcs:
    """The roles of a line's generated ``fleet_api``: the shared calls plus pull/push."""
    return FleetRpcs(
        register=api.FLEET_CREATE_NODE,
        unregister=api.FLEET_DELETE_NODE,
        heartbeat=api.FLEET_PING,
        pull=pull,
        push=push,
        get_run=api.FLEET_GET_RUN,
        get_fab=api.FLEET_GET_FAB,
    )


class ProtoFleetLine(FleetLine):
    """The calls every request-response Fleet line has, over its generated module."""

    #: The line's generated ``flwr.proto`` module.
    proto: ClassVar[ModuleType]
    heartbeat_interval = PING_INTERVAL

    def register_request(self, heartbeat_interval: float) -> betterproto2.Message:
        """``CreateNode``: a node that promises to ping every ``heartbeat_interval`` s."""
        request: betterproto2.Message = self.proto.CreateNodeRequest(
            ping_interval=heartbeat_interval
        )
        return request

    def node_id(self, node: Any) -> int:
        """``Node.node_id``."""
        value: int = node.node_id
        return value

    def heartbeat_request(self, node: Any, heartbeat_interval: float) -> betterproto2.Message:
        """``Ping``: keep this node online for another ``heartbeat_interval`` seconds."""
        request: betterproto2.Message = self.proto.PingRequest(
            node=node, ping_interval=heartbeat_interval
        )
        return request

    def heartbeat_accepted(self, response: Any) -> bool:
        """``PingResponse.success``."""
        return bool(response.success)

    def get_run_request(self, node: Any, run_id: int) -> betterproto2.Message:
        """``GetRun``."""
        request: betterproto2.Message = self.proto.GetRunRequest(node=node, run_id=run_id)
        return request

    def run_from_response(self, response: Any, run_id: int) -> RunInfo:
        """What ``GetRun`` says (an empty response means "unknown run")."""
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

    def fab_from_response(self, response: Any, fab_hash: str) -> bytes | None:
        """The FAB's bytes; None without a FAB or when its SHA-256 is not ``fab_hash``."""
        fab = response.fab
        if fab is None or not fab.content:
            return None
        if hashlib.sha256(fab.content).hexdigest() != fab_hash.lower():
            return None
        return bytes(fab.content)

    def first_for_node(self, messages: list[Any], node_id: int) -> Any | None:
        """The first pulled Message if it is addressed to ``node_id``, else None.

        The SuperLink hands a message out once, so every entry after the first, a first
        one without metadata and one for another node are dropped (:meth:`drop`: a
        WARNING and a count), never delivered.
        """
        if not messages:
            return None
        for extra in messages[1:]:
            extra_id = extra.metadata.message_id if extra.metadata is not None else ""
            self.drop("more than one per pull", f"Message {extra_id!r} was not first")
        first = messages[0]
        if first.metadata is None:
            self.drop("not for this node", "a Message without metadata names no node")
            return None
        if first.metadata.dst_node_id != node_id:
            self.drop(
                "not for this node",
                f"Message {first.metadata.message_id!r} is addressed to node "
                f"{first.metadata.dst_node_id}",
            )
            return None
        return first

    def unregister_request(self, node: Any) -> betterproto2.Message:
        """``DeleteNode``."""
        request: betterproto2.Message = self.proto.DeleteNodeRequest(node=node)
        return request
