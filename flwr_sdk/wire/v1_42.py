"""The Flower 1.42 wire line: what goes on the wire, and every quirk of it.

Fleet API, the same twelve unary RPCs over protobuf-over-HTTP (``POST
/v1/fleet/<kebab-rpc>``, the SuperLink's one port) and over the gRPC Fleet service
(``/flwr.proto.Fleet/<Rpc>``, only where the SuperLink runs it):

* **lifecycle** register → activate → heartbeat → deactivate → unregister. Without
  ``authentication_keys`` a session makes a fresh key, ``RegisterNode{public_key}`` then
  ``ActivateNode{public_key, heartbeat_interval}``; with them (a key the operator
  registered with ``flwr supernode register``, the only way on a SuperLink with
  ``--enable-supernode-auth``) it only activates. Closing: ``DeactivateNode{node_id}``,
  then ``UnregisterNode{node_id}`` only when the session registered the node itself.
  ``heartbeat_interval`` is 30 s (the SuperLink keeps the node online for 2 x that),
  ``SendNodeHeartbeat`` at once and then every 17.5 to 22.5 s, as Flower's SuperNode does;
* **every call is signed** (:mod:`flwr_sdk.wire.v1_42_auth`), on both transports;
* **refusals** carry codes (HTTP: JSON ``{"code", "detail"}`` with 400/403/412; gRPC: the
  status details are JSON ``{"code", "public_message", …}``), read by :func:`error_code`:
  ``ActivateNode`` 412/2004 means the key is not registered, was unregistered, or its
  node is still online from a process that did not deactivate — an
  :class:`~flwr_sdk.errors.AuthenticationError` saying so (:meth:`FleetLineV1_42.refusal`);
  ``RegisterNode`` 412/2001 (self-registration disabled) and 412/23 (key in use) too.
  A 401 on a self-registered node's call means the SuperLink forgot the key (restarted
  without its database): :meth:`FleetLineV1_42.node_lost`, register a new node.
  403 code 2007 (run not running) on a push or an object transfer drops the reply or
  instruction (:meth:`FleetLineV1_42.run_ended`);
* **payload as objects** (:mod:`flwr_sdk.wire.v1_42_objects`): ``PullMessages`` gives at
  most one ``Message`` with an empty ``content`` and its ``ObjectTree``; the objects are
  fetched with ``PullObject`` (each checked against its SHA-256 id before use), then
  ``ConfirmMessageReceived``. A reply is encoded into objects, ``PushMessages`` carries
  its metadata (``message_id`` = its root object id), an empty ``RecordDict`` (or the
  error) and its tree, and ``PushObject`` uploads exactly the ``objects_to_push`` with
  the push's ``session_id``;
* **reply metadata** as Flower builds it (facts §5.5): the incoming ``src_task_id``
  becomes the reply's ``dst_task_id`` and vice versa, only when present; the reply is
  checked against its instruction (:func:`~flwr_sdk.wire.fleet_rules.check_reply`), its
  ttl clipped, and an expired reply is not sent;
* ``GetRun`` / ``GetFab`` once per run (``GetFab`` names the run and must name its hash);
  a 403 there degrades to "no run config" / "no FAB".

:data:`LINE` is the adapter the session uses.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import betterproto2
from flwr_sdk_proto.v1_42 import fleet_api
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common.message import Message
from flwr_sdk.errors import AuthenticationError, MalformedMessageError, TransportError
from flwr_sdk.wire.base import (
    Call,
    FleetRpcs,
    Incoming,
    NodeAuth,
    NodeKeys,
    Outgoing,
    ProbeCall,
    ProbeOutcome,
)
from flwr_sdk.wire.fleet_rules import (
    PING_INTERVAL,
    ProtoFleetLine,
    check_reply,
    clipped_ttl,
    expired,
    unanswerable,
)
from flwr_sdk.wire.v1_42_auth import SignedCallAuth
from flwr_sdk.wire.v1_42_objects import EncodedMessage, encode_message
from flwr_sdk.wire.v1_42_objects_decode import MessageAssembler

__all__ = ["LINE", "SERVER_NODE_ID", "FleetLineV1_42", "error_code"]

SERVER_NODE_ID = 1
"""The SuperLink's node id: the source of every instruction, the destination of replies."""

_REMEMBERED = 256
"""Most pulled instructions whose task ids are kept for their replies (oldest go first)."""

CODE_KEY_IN_USE = 23
CODE_REGISTRATION_DISABLED = 2001
CODE_ACTIVATION_FAILED = 2004
CODE_RUN_NOT_RUNNING = 2007

_REFUSALS: dict[tuple[str, int], str] = {
    ("activate", CODE_ACTIVATION_FAILED): (
        "the SuperLink does not activate a node for this key (code 2004): the key is not "
        "registered (register it with `flwr supernode register <key.pub>`), was "
        "unregistered, or its node is still online because a process that used it did not "
        "stop cleanly (it goes offline 2 x the heartbeat interval, at most 60 s, after its "
        "last heartbeat; start again then)"
    ),
    ("register", CODE_REGISTRATION_DISABLED): (
        "the SuperLink does not let nodes register themselves (--enable-supernode-auth, "
        "code 2001): pass authentication_keys registered with `flwr supernode register`"
    ),
    ("register", CODE_KEY_IN_USE): (
        "the SuperLink already knows this public key (code 23); a key can register once"
    ),
}
"""(role, code) → what a refused opening call means for the user."""


def error_code(error: Exception) -> int | None:
    """The Flower error code of a refused call, read from its JSON details; None if none.

    HTTP errors carry ``{"code": N, "detail": …}``, gRPC status details
    ``{"code": N, "public_message": …}``; the transports keep (the start of) either in
    the error's message.
    """
    text = str(error)
    start = text.find("{")
    while start != -1:
        end = text.find("}", start)
        if end == -1:
            return None
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            start = text.find("{", start + 1)
            continue
        code = data.get("code") if isinstance(data, dict) else None
        return code if isinstance(code, int) else None
    return None


class _PulledMessage(Incoming):
    """One pulled instruction: its metadata now, its content fetched as objects."""

    def __init__(self, node: pb.Node, wire: pb.Message, tree: pb.ObjectTree) -> None:
        assert wire.metadata is not None
        self._node = node
        self._wire = wire
        self.message_id = wire.metadata.message_id
        self.run_id = wire.metadata.run_id
        self._tree = tree
        self._assembler: MessageAssembler | None = None

    @property
    def _objects(self) -> MessageAssembler:
        # Made on first use: the session sets max_message_length before fetching.
        if self._assembler is None:
            self._assembler = MessageAssembler(
                self._wire, self._tree, max_message_length=self.max_message_length
            )
        return self._assembler

    def wanted(self) -> list[betterproto2.Message]:
        return [
            pb.PullObjectRequest(node=self._node, run_id=self.run_id, object_id=object_id)
            for object_id in self._objects.missing()
        ]

    def take(self, request: Any, response: Any) -> bool:
        if not response.object_found:
            raise MalformedMessageError(
                f"the SuperLink does not know object {request.object_id} of message "
                f"{self.message_id}",
                what="PullObject response",
                field="object_found",
            )
        if not response.object_available:
            return False
        self._objects.add(request.object_id, response.object_content)
        return True

    def message(self) -> Message | None:
        return self._objects.message()

    def confirm_request(self) -> betterproto2.Message:
        return pb.ConfirmMessageReceivedRequest(
            node=self._node, run_id=self.run_id, message_object_id=self.message_id
        )


class _Reply(Outgoing):
    """A reply's push request and its objects, uploaded as the push response asks."""

    def __init__(
        self, node: pb.Node, run_id: int, request: pb.PushMessagesRequest, encoded: EncodedMessage
    ) -> None:
        self._node = node
        self._run_id = run_id
        self.request = request
        self._encoded = encoded

    def uploads(self, response: Any) -> Iterator[betterproto2.Message]:
        wanted: list[str] = list(response.objects_to_push)
        unknown = [object_id for object_id in wanted if object_id not in self._encoded]
        if unknown:
            raise MalformedMessageError(
                f"PushMessages asks for objects the reply does not have: {unknown[:3]}",
                what="PushMessages response",
                field="objects_to_push",
            )
        return self._requests(list(dict.fromkeys(wanted)), response.session_id)

    def _requests(self, object_ids: list[str], session_id: str) -> Iterator[pb.PushObjectRequest]:
        for object_id in object_ids:
            yield pb.PushObjectRequest(
                node=self._node,
                run_id=self._run_id,
                object_id=object_id,
                # The object's segments (head + views of the tensor memory): the 1.42
                # fast codec writes them as they are, without joining them (betterproto2
                # types the field as bytes).
                object_content=cast(bytes, self._encoded.object_content(object_id)),
                session_id=session_id,
            )

    def stored(self, response: Any) -> bool:
        return bool(response.stored)


class FleetLineV1_42(ProtoFleetLine):  # noqa: N801  (the line's version is its name)
    """Flower 1.42's Fleet API: node lifecycle, signed calls, content-addressed objects."""

    name = "1.42"
    title = "Flower 1.42 Fleet API"
    rpcs = FleetRpcs(
        register=fleet_api.FLEET_REGISTER_NODE,
        unregister=fleet_api.FLEET_UNREGISTER_NODE,
        heartbeat=fleet_api.FLEET_SEND_NODE_HEARTBEAT,
        pull=fleet_api.FLEET_PULL_MESSAGES,
        push=fleet_api.FLEET_PUSH_MESSAGES,
        get_run=fleet_api.FLEET_GET_RUN,
        get_fab=fleet_api.FLEET_GET_FAB,
        activate=fleet_api.FLEET_ACTIVATE_NODE,
        deactivate=fleet_api.FLEET_DEACTIVATE_NODE,
        pull_object=fleet_api.FLEET_PULL_OBJECT,
        push_object=fleet_api.FLEET_PUSH_OBJECT,
        confirm=fleet_api.FLEET_CONFIRM_MESSAGE_RECEIVED,
    )
    proto: ClassVar[Any] = pb
    heartbeat_interval = PING_INTERVAL
    # ActivateNode / SendNodeHeartbeat outside it: 400 (gRPC INVALID_ARGUMENT), code 2003.
    heartbeat_interval_range = (10.0, 1800.0)
    node_auth_over_http = True

    def __init__(self) -> None:
        super().__init__()
        # Per pulled instruction (by id) until its reply is pushed: its task ids
        # (src, dst; the reply swaps them) and when it was pulled (the reply reports the
        # seconds since as its ClientApp runtime).
        self._task_ids: dict[str, tuple[int | None, int | None]] = {}
        self._pulled_at: dict[str, float] = {}

    # ------------------------------------------------------------- lifecycle

    def node_auth(self, keys: NodeKeys | None) -> NodeAuth:
        """Signed calls with the user's keys, or a fresh SECP384R1 pair per session."""
        return SignedCallAuth(keys)

    def probe_call(self) -> ProbeCall:
        """A signed ``ActivateNode`` for a throwaway key (see :mod:`flwr_sdk.wire.detect`)."""
        auth = SignedCallAuth(None)
        request = pb.ActivateNodeRequest(
            public_key=auth.public_key_pem, heartbeat_interval=self.heartbeat_interval
        )
        return ProbeCall(
            self.rpcs.activate or self.rpcs.pull,
            request=request,
            auth=auth,
            spoken=frozenset({ProbeOutcome.REFUSED, ProbeOutcome.ANSWERED}),
        )

    def opening_calls(self, auth: NodeAuth, heartbeat_interval: float) -> list[Call]:
        """RegisterNode (only with a key made for the session), then ActivateNode."""
        assert isinstance(auth, SignedCallAuth)
        key = auth.public_key_pem
        activate: Call = (
            "activate",
            pb.ActivateNodeRequest(public_key=key, heartbeat_interval=heartbeat_interval),
        )
        if auth.user_keys:
            return [activate]
        return [("register", pb.RegisterNodeFleetRequest(public_key=key)), activate]

    def closing_calls(self, node: Any, self_registered: bool) -> list[Call]:
        """DeactivateNode, then UnregisterNode when the session registered the node."""
        calls: list[Call] = [("deactivate", pb.DeactivateNodeRequest(node_id=node.node_id))]
        if self_registered:
            calls.append(("unregister", pb.UnregisterNodeFleetRequest(node_id=node.node_id)))
        return calls

    def register_request(self, heartbeat_interval: float) -> betterproto2.Message:
        """Not used: registration needs the session's key (:meth:`opening_calls`)."""
        raise NotImplementedError("the 1.42 line registers through opening_calls()")

    def unregister_request(self, node: Any) -> betterproto2.Message:
        """``UnregisterNode`` (the node id, not a ``Node``)."""
        return pb.UnregisterNodeFleetRequest(node_id=node.node_id)

    def node_from_register(self, response: Any) -> pb.Node:
        """The node a RegisterNode or ActivateNode response names.

        Raises:
            MalformedMessageError: node id 0 (no node).

        """
        node_id: int = response.node_id
        if node_id == 0:
            raise MalformedMessageError(
                f"{type(response).__name__} named no node (node_id 0)",
                what=type(response).__name__,
                field="node_id",
            )
        return pb.Node(node_id=node_id)

    def heartbeat_request(self, node: Any, heartbeat_interval: float) -> betterproto2.Message:
        """``SendNodeHeartbeat``: online for another 2 x ``heartbeat_interval`` seconds."""
        return pb.SendNodeHeartbeatRequest(node=node, heartbeat_interval=heartbeat_interval)

    def refusal(self, role: str, error: Exception) -> Exception | None:
        """An opening call refused with a code the user can act on (see module docs)."""
        code = error_code(error)
        why = _REFUSALS.get((role, code)) if code is not None else None
        if why is None:
            return None
        return AuthenticationError(f"{error}: {why}")

    def still_online(self, role: str, error: Exception) -> bool:
        """ActivateNode 412/2004: also what a key whose node is still online gets."""
        return role == "activate" and error_code(error) == CODE_ACTIVATION_FAILED

    def node_for_id(self, node_id: int) -> pb.Node:
        """``Node{node_id}``."""
        return pb.Node(node_id=node_id)

    def node_lost(self, error: Exception) -> bool:
        """A signed call refused as unauthenticated: the SuperLink no longer knows the key.

        (401 / ``UNAUTHENTICATED`` without a Flower error code, e.g. after a SuperLink
        restart without its database.) The session then opens a new node, whichever way it
        registered: a self-registered node registers a fresh key; an operator-registered
        key can only be activated again if the SuperLink holds it (again).
        """
        return (
            isinstance(error, AuthenticationError)
            and ("401" in str(error) or "UNAUTHENTICATED" in str(error))
            and error_code(error) is None
        )

    def run_ended(self, error: Exception) -> bool:
        """HTTP 403 / PERMISSION_DENIED with code 2007: the run is not running."""
        return isinstance(error, TransportError) and error_code(error) == CODE_RUN_NOT_RUNNING

    # ------------------------------------------------------------- messages

    def pull_request(self, node: Any) -> pb.PullMessagesRequest:
        """``PullMessages`` (``message_ids`` unused)."""
        return pb.PullMessagesRequest(node=node)

    def instruction_from_pull(self, response: Any, node_id: int) -> Incoming | None:
        """The first Message if it is for this node, with its tree, to fetch.

        Entries after the first, one for another node, one without metadata or tree,
        and one whose times no reply could satisfy are dropped with a WARNING (the
        SuperLink hands a message out once).
        """
        trees: list[pb.ObjectTree] = response.message_object_trees
        first: pb.Message | None = self.first_for_node(response.messages_list, node_id)
        if first is None:
            return None
        md = first.metadata
        assert md is not None  # first_for_node drops a Message without metadata
        if not trees or trees[0].object_id != md.message_id:
            raise MalformedMessageError(
                f"Message {md.message_id!r} came without its object tree",
                what="PullMessages response",
                field="message_object_trees",
            )
        why = unanswerable(cast(Message, first))  # reads only metadata's times, type and id
        if why is not None:
            self.drop("unanswerable times", why)
            return None
        self._task_ids[md.message_id] = (md.src_task_id, md.dst_task_id)
        self._pulled_at[md.message_id] = time.time()
        while len(self._task_ids) > _REMEMBERED:  # instructions never answered
            forgotten = next(iter(self._task_ids))
            del self._task_ids[forgotten]
            self._pulled_at.pop(forgotten, None)
        return _PulledMessage(pb.Node(node_id=node_id), first, trees[0])

    def push_request(self, node: Any, instruction: Message, reply: Message) -> Outgoing | None:
        """``PushMessages`` for the checked reply and its objects; None once expired."""
        check_reply(instruction, reply, self.node_id(node))
        ttl = clipped_ttl(instruction, reply)
        if expired(reply.metadata.created_at, ttl):
            return None
        src_task, dst_task = self._task_ids.pop(instruction.metadata.message_id, (None, None))
        clipped = dataclasses.replace(reply.metadata, ttl=ttl)
        encoded = encode_message(
            Message(clipped, error=reply.error)
            if reply.has_error()
            else Message(clipped, content=reply.content),
            # The reply's task ids are the instruction's, swapped (facts §5.5).
            src_task_id=dst_task,
            dst_task_id=src_task,
        )
        request = pb.PushMessagesRequest(
            node=node,
            messages_list=[encoded.wire_message],
            message_object_trees=[encoded.tree],
            clientapp_runtime_list=[
                max(
                    0.0,
                    time.time() - self._pulled_at.pop(instruction.metadata.message_id, time.time()),
                )
            ],
        )
        return _Reply(node, reply.metadata.run_id, request, encoded)

    def get_fab_request(self, node: Any, fab_hash: str, run_id: int) -> pb.GetFabRequest:
        """``GetFab`` by hash, naming the run (the hash must be the run's)."""
        return pb.GetFabRequest(node=node, hash_str=fab_hash, run_id=run_id)


LINE = FleetLineV1_42()
"""The Flower 1.42 line's adapter."""
