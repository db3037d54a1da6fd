"""The Flower 1.42 Fleet API (lifecycle, heartbeats, content-addressed objects).

The only server module that knows the 1.42 Fleet wire: it implements the generated
``FleetBase``'s twelve typed methods over the line-neutral
:class:`~flwr_sdk.server.fleet_state.FleetState` and an
:class:`~flwr_sdk.server.object_store.ObjectStore`, converting messages with the line's
object codec (:mod:`flwr_sdk.wire.v1_42_objects`), and answers as the 1.42 SuperLink
does (facts: ``flower-1.42.md`` §3, §5, §7):

* **lifecycle**: RegisterNode binds the signing key to a new, offline node (412 code 23
  for a key ever seen; 412 code 2001 when self-registration is off, i.e. keys are
  registered by the operator, ``--enable-supernode-auth``); ActivateNode puts the key's
  node online (412 code 2004: unknown or unregistered key, already online);
  SendNodeHeartbeat keeps it online (``success=false`` for an unknown node);
  DeactivateNode takes it offline (412 code 2005 when not online); UnregisterNode
  removes it for good (412 code 2006 when unknown; 412 code 2002 when
  self-registration is off). ``heartbeat_interval`` must be within [10, 1800] s (400
  code 2003); a node is online until ``now + 2 * heartbeat_interval``;
* **instructions**: PullMessages hands out at most one Message, once, with an empty
  ``content`` and its ObjectTree; the objects are stored until the node confirms with
  ConfirmMessageReceived (or unregisters); PullObject answers ``object_found`` /
  ``object_available``;
* **replies**: PushMessages checks the reply's envelope (an empty list, or neither or
  both of content and error → 500); a reply the SuperLink would drop (unknown or
  expired instruction, addressed elsewhere, already answered, TTL too long, ``dst``
  not the SuperLink, ``message_id`` not its tree's root, …) gets ``results`` but no
  ``objects_to_push``; otherwise the answer lists the objects of its tree the store
  does not hold yet and opens a push session (``session_id``). PushObject stores an
  object only if the session asked for it (with an empty ``session_id``: any session of
  the run) and it hashes to its id (else ``stored=false``). Unlike the SuperLink, which
  answers ``stored=false`` for an object another node pushed meanwhile, an object the
  session asked for that is already stored is acknowledged (``stored=true``, after the
  same hash check), also when that other push completed the session (the reply is in).
  Once every object is there the reply is decoded (and must carry the metadata of its
  PushMessages entry) and handed to the driver; a session idle for
  ``PUSH_SESSION_SECONDS`` is discarded with its objects;
* **runs**: GetRun of an unknown run → 403 code 2008; GetFab serves the run's FAB, if
  the server was given one, for the run's ``fab_hash`` only (else 403 code 2009);
  pushes for an unknown run → 403 code 2007; PullObject for an unknown run
  → 500 (as observed on the SuperLink).

Node authentication (signed timestamps on every call, both front ends) is
:mod:`~flwr_sdk.server.node_auth_v1_42`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from flwr_sdk_proto.v1_42 import fleet_api
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common.message import Error, Message
from flwr_sdk.common.records import RecordSet
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.errors import MalformedMessageError, ProtocolError
from flwr_sdk.server.fleet_grpc import caller_public_key
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_servicer import method_name
from flwr_sdk.server.fleet_state import FleetError, FleetRefusedError, FleetState
from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator
from flwr_sdk.server.object_store import ObjectStore
from flwr_sdk.wire.fleet_rules import PUSH_RECONNECT_SECONDS, TTL_TOLERANCE
from flwr_sdk.wire.v1_42_objects import encode_message, metadata_from_wire, object_id_of
from flwr_sdk.wire.v1_42_objects_decode import MessageAssembler, decode_message

__all__ = [
    "HEARTBEAT_INTERVAL_RANGE",
    "PUSH_SESSION_SECONDS",
    "SERVER_NODE_ID",
    "FleetServicerV1_42",
]

log = logging.getLogger("flwr_sdk.server")

SERVER_NODE_ID = 1
"""The node id instructions come from (the SuperLink)."""

HEARTBEAT_INTERVAL_RANGE = (10.0, 1800.0)
"""The heartbeat intervals (seconds) the SuperLink accepts."""

PUSH_SESSION_SECONDS = 180.0
"""A push session is discarded this long after its last stored object."""

COMPLETED_SESSIONS = 100_000
"""Completed push sessions remembered: a late PushObject in one (its object pushed by
another node's identical reply, or a retry) is acknowledged (the reply is already in)."""


def _refused(status: int, code: int, detail: str) -> FleetRefusedError:
    return FleetRefusedError(status, code, detail)


def _envelope(wire: pb.Message, reply_to: str) -> Message:
    """The reply without its content (an empty RecordSet, or its error).

    ``reply_to``: the internal id of the instruction it answers.

    Raises:
        MalformedMessageError: the metadata holds values our model refuses.

    """
    md = wire.metadata or pb.Metadata()
    metadata = metadata_from_wire(md, message_id=md.message_id)
    metadata.reply_to_message = reply_to
    if wire.error is not None:
        return Message(metadata, error=Error(wire.error.code, wire.error.reason))
    return Message(metadata, content=RecordSet())


@dataclass
class _PushSession:
    run_id: int
    message: pb.Message
    tree: pb.ObjectTree
    reply_to: str
    """The internal id of the instruction it answers."""
    object_ids: tuple[str, ...]
    """Every object of its tree, once."""
    missing: dict[str, None] = field(default_factory=dict)
    """The ids still to be pushed, in the order they were asked for."""
    asked: frozenset[str] = frozenset()
    """Every id the PushMessages answer asked for."""
    touched: float = field(default_factory=time.monotonic)


class FleetServicerV1_42(pb.FleetBase):  # noqa: N801 - the line's version
    """``flwr.proto.Fleet`` of Flower 1.42 for a :class:`FleetState`.

    ``self_registration``: whether nodes may call RegisterNode (False: the operator
    registered their keys, :meth:`register_keys`). ``max_message_length``: the largest
    reply (sum of its objects) rebuilt from pushed objects.
    """

    server_node_id = SERVER_NODE_ID

    def __init__(
        self,
        state: FleetState,
        store: ObjectStore | None = None,
        *,
        self_registration: bool = True,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
    ) -> None:
        self.state = state
        self.max_message_length = max_message_length
        self.store = store if store is not None else ObjectStore()
        self.self_registration = self_registration
        self._delivered: dict[str, str] = {}
        """Root object id of a handed-out instruction → its internal message id."""
        self._roots: dict[str, set[str]] = {}
        """Internal message id → the root object ids it was handed out as."""
        self._sessions: OrderedDict[str, _PushSession] = OrderedDict()
        """Open push sessions, the least recently touched first."""
        self._session_of_root: dict[str, str] = {}
        """Root object id of a session's reply → the session id."""
        self._completed: OrderedDict[tuple[int, str], None] = OrderedDict()
        """(run id, session id) of the last completed push sessions, oldest first."""
        self._askers: dict[tuple[int, str], dict[str, None]] = {}
        """(run id, object id) → the open sessions that asked for it, in order."""
        self._unconfirmed: dict[int, set[tuple[int, str]]] = {}
        """Node → (run id, message id) of instructions it pulled but has not confirmed."""

    @classmethod
    def for_guard(
        cls,
        state: FleetState,
        guard: object | None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
    ) -> FleetServicerV1_42:
        """The servicer for a server's node auth: operator-registered keys or auto mode."""
        registered = guard.registered_keys if isinstance(guard, SignedCallAuthenticator) else None
        servicer = cls(
            state, self_registration=registered is None, max_message_length=max_message_length
        )
        servicer.register_keys(list(registered or ()))
        return servicer

    def register_keys(self, public_keys: list[bytes]) -> list[int]:
        """The operator registers node keys (PEM); returns the node ids (offline)."""
        node_ids = []
        for key in public_keys:
            node_id = self.state.register_node(key)
            if node_id is None:
                raise ValueError("a public key is registered twice")
            node_ids.append(node_id)
        return node_ids

    # -------------------------------------------------------------- lifecycle

    @staticmethod
    def _window(interval: float) -> float:
        low, high = HEARTBEAT_INTERVAL_RANGE
        if not low <= interval <= high:
            raise _refused(400, 2003, f"Heartbeat interval must be in [{low:g}, {high:g}].")
        return 2.0 * interval

    async def register_node(
        self, message: pb.RegisterNodeFleetRequest
    ) -> pb.RegisterNodeFleetResponse:
        """Bind the caller's key to a new, offline node."""
        if not self.self_registration:
            raise _refused(412, 2001, "SuperNode registration is disabled.")
        node_id = self.state.register_node(caller_public_key() or message.public_key)
        if node_id is None:
            raise _refused(412, 23, "Public key already in use.")
        return pb.RegisterNodeFleetResponse(node_id=node_id)

    async def activate_node(self, message: pb.ActivateNodeRequest) -> pb.ActivateNodeResponse:
        """Put the key's node online."""
        window = self._window(message.heartbeat_interval)
        node_id = self.state.activate_node(caller_public_key() or message.public_key, window)
        if node_id is None:
            raise _refused(412, 2004, "Node activation failed.")
        return pb.ActivateNodeResponse(node_id=node_id)

    async def deactivate_node(self, message: pb.DeactivateNodeRequest) -> pb.DeactivateNodeResponse:
        """Take the node offline now."""
        if not self.state.deactivate_node(message.node_id):
            raise _refused(412, 2005, "Node deactivation failed.")
        return pb.DeactivateNodeResponse()

    async def unregister_node(
        self, message: pb.UnregisterNodeFleetRequest
    ) -> pb.UnregisterNodeFleetResponse:
        """Remove the node for good."""
        if not self.self_registration:
            raise _refused(412, 2002, "SuperNode unregistration is disabled.")
        if not self.state.unregister_node(message.node_id):
            raise _refused(412, 2006, "Node unregistration failed.")
        for run_id, message_id in self._unconfirmed.pop(message.node_id, set()):
            self.store.release(run_id, message_id)
        return pb.UnregisterNodeFleetResponse()

    async def send_node_heartbeat(
        self, message: pb.SendNodeHeartbeatRequest
    ) -> pb.SendNodeHeartbeatResponse:
        """Keep the node online for another ``2 * heartbeat_interval``."""
        window = self._window(message.heartbeat_interval)
        known = message.node is not None and self.state.ping(message.node.node_id, window)
        return pb.SendNodeHeartbeatResponse(success=known)

    # ----------------------------------------------------------- instructions

    async def pull_messages(self, message: pb.PullMessagesRequest) -> pb.PullMessagesResponse:
        """At most one instruction, its content as an object tree."""
        node_id = 0 if message.node is None else message.node.node_id
        entry = self.state.pull_instruction(node_id) if node_id else None
        if entry is None:
            return pb.PullMessagesResponse()
        encoded = encode_message(entry.message)
        run_id = entry.message.metadata.run_id
        for object_id in self.store.hold(run_id, encoded.message_id, encoded.object_ids()):
            self.store.put_trusted(run_id, object_id, encoded.object_bytes(object_id))
        self._delivered[encoded.message_id] = entry.message.metadata.message_id
        self._roots.setdefault(entry.message.metadata.message_id, set()).add(encoded.message_id)
        self._unconfirmed.setdefault(node_id, set()).add((run_id, encoded.message_id))
        return pb.PullMessagesResponse(
            messages_list=[encoded.wire_message], message_object_trees=[encoded.tree]
        )

    async def pull_object(self, message: pb.PullObjectRequest) -> pb.PullObjectResponse:
        """An object of the run: found, available, its bytes."""
        if self.state.get_run(message.run_id) is None:
            raise FleetError(f"unknown run {message.run_id}")
        content = self.store.get(message.run_id, message.object_id)
        return pb.PullObjectResponse(
            object_found=self.store.found(message.run_id, message.object_id),
            object_available=content is not None,
            object_content=content or b"",
        )

    async def confirm_message_received(
        self, message: pb.ConfirmMessageReceivedRequest
    ) -> pb.ConfirmMessageReceivedResponse:
        """The node has the instruction: its objects may go."""
        self._running(message.run_id)
        self.store.release(message.run_id, message.message_object_id)
        if message.node is not None:
            pulled = self._unconfirmed.get(message.node.node_id, set())
            pulled.discard((message.run_id, message.message_object_id))
        return pb.ConfirmMessageReceivedResponse()

    # ---------------------------------------------------------------- replies

    def _running(self, run_id: int) -> None:
        if self.state.get_run(run_id) is None:
            raise _refused(403, 2007, f"Run {run_id} is not running.")

    async def push_messages(self, message: pb.PushMessagesRequest) -> pb.PushMessagesResponse:
        """Accept a reply's envelope; ask for the objects of its tree not stored yet."""
        if not message.messages_list:
            raise FleetError("list index out of range")
        wire = message.messages_list[0]
        if (wire.content is None) == (wire.error is None):
            raise FleetError("Either `content` or `error` must be set, but not both.")
        metadata = wire.metadata or pb.Metadata()
        self._running(metadata.run_id)
        self._expire_sessions()
        tree = message.message_object_trees[0] if message.message_object_trees else None
        answer = pb.PushMessagesResponse(
            reconnect=pb.Reconnect(reconnect=PUSH_RECONNECT_SECONDS),
            results={metadata.message_id: 0},
        )
        session_id = self._session_of_root.get(metadata.message_id)
        if session_id is not None:  # pushed again
            answer.objects_to_push = list(self._sessions[session_id].missing)
            answer.session_id = session_id
            return answer
        session = self._open_session(wire, tree)
        if session is None:
            return answer
        missing = self.store.hold(session.run_id, metadata.message_id, session.object_ids)
        if not missing:
            self._complete(session)
            return answer
        session_id = str(uuid.uuid4())
        session.missing = dict.fromkeys(missing)
        session.asked = frozenset(missing)
        self._add_session(session_id, session)
        answer.objects_to_push = missing
        answer.session_id = session_id
        return answer

    def _open_session(self, wire: pb.Message, tree: pb.ObjectTree | None) -> _PushSession | None:
        """The push session of an acceptable reply; None (logged) when it is dropped."""
        metadata = wire.metadata or pb.Metadata()
        reply_to = self._delivered.get(metadata.reply_to_message_id)
        reason = None
        if tree is None or tree.object_id != metadata.message_id or not metadata.message_id:
            reason = "its message_id is not the root of its object tree"
        elif metadata.dst_node_id != SERVER_NODE_ID:
            reason = "not addressed to the SuperLink"
        elif metadata.src_node_id == SERVER_NODE_ID:
            reason = "sent by the SuperLink's node"
        elif reply_to is None:
            reason = f"unknown instruction {metadata.reply_to_message_id!r}"
        else:
            try:
                # the tree's shape and ids (as a node checks a pulled one)
                limit = self.max_message_length
                assembler = MessageAssembler(wire, tree, max_message_length=limit)
                object_ids = tuple(reversed(assembler.fetch_order()))  # children first
                reason = self.state.reply_reject_reason(_envelope(wire, reply_to), TTL_TOLERANCE)
            except ProtocolError as exc:
                reason = str(exc)
        if reason is not None:
            log.warning("dropped a reply: %s", reason)
            return None
        assert tree is not None and reply_to is not None
        return _PushSession(metadata.run_id, wire, tree, reply_to, object_ids)

    async def push_object(self, message: pb.PushObjectRequest) -> pb.PushObjectResponse:
        """Store one pushed object of a session (hash-checked)."""
        self._running(message.run_id)
        self._expire_sessions()
        session_id = self._session_for(message)
        run_id, object_id = message.run_id, message.object_id
        content = bytes(message.object_content)
        if session_id is None:
            # A completed session (e.g. by another node's push of the same object): the
            # object reached the store, and this node's reply with it.
            done = (run_id, message.session_id) in self._completed
            return pb.PushObjectResponse(stored=done and object_id_of(content) == object_id)
        if self.store.is_pending(run_id, object_id):
            stored = self.store.put(run_id, object_id, content)
        else:  # another session pushed the same object meanwhile
            stored = object_id_of(content) == object_id
        if not stored:
            return pb.PushObjectResponse(stored=False)
        self._sessions[session_id].touched = time.monotonic()
        self._sessions.move_to_end(session_id)
        for asker in list(self._askers.get((run_id, object_id), ())):
            waiting = self._sessions[asker]
            if waiting.missing.pop(object_id, 0) is None and not waiting.missing:
                self._drop_session(asker)
                self._completed[(run_id, asker)] = None
                if len(self._completed) > COMPLETED_SESSIONS:
                    self._completed.popitem(last=False)
                self._complete(waiting)
        return pb.PushObjectResponse(stored=True)

    def _session_for(self, message: pb.PushObjectRequest) -> str | None:
        """The open session (its id) of the run that asked for the pushed object.

        The one named, or with an empty ``session_id`` the first that asked for it.
        """
        askers = self._askers.get((message.run_id, message.object_id), {})
        if not message.session_id:
            return next(iter(askers), None)
        return message.session_id if message.session_id in askers else None

    def _add_session(self, session_id: str, session: _PushSession) -> None:
        self._sessions[session_id] = session
        self._session_of_root[session.tree.object_id] = session_id
        for object_id in session.asked:
            self._askers.setdefault((session.run_id, object_id), {})[session_id] = None

    def _drop_session(self, session_id: str) -> _PushSession:
        session = self._sessions.pop(session_id)
        if self._session_of_root.get(session.tree.object_id) == session_id:
            del self._session_of_root[session.tree.object_id]
        for object_id in session.asked:
            askers = self._askers.get((session.run_id, object_id))
            if askers is not None:
                askers.pop(session_id, None)
                if not askers:
                    del self._askers[(session.run_id, object_id)]
        return session

    def _complete(self, session: _PushSession) -> None:
        """Every object is stored: decode the reply and hand it to the driver."""
        root = session.tree.object_id
        try:
            reply = self._decode(session)
        except ProtocolError as exc:
            log.warning("undecodable reply %s: %s", root, exc)
            reason = f"undecodable reply content: {exc}"
            reply = Message(_envelope(session.message, "").metadata, error=Error(0, reason))
        finally:
            self.store.release(session.run_id, root)
        reply.metadata.reply_to_message = session.reply_to
        if self.state.push_reply(reply, TTL_TOLERANCE) is not None:
            self._forget_delivered(session.reply_to)

    def _forget_delivered(self, internal_id: str) -> None:
        for root in self._roots.pop(internal_id, ()):
            if self._delivered.get(root) == internal_id:
                del self._delivered[root]

    def _decode(self, session: _PushSession) -> Message:
        """The reply of a complete session, rebuilt from the stored objects.

        Raises:
            ProtocolError: the objects do not form a valid message.

        """
        stored = {
            object_id: content
            for object_id in session.object_ids
            if (content := self.store.get(session.run_id, object_id)) is not None
        }
        reply = decode_message(
            session.message, session.tree, stored, max_message_length=self.max_message_length
        )
        envelope = _envelope(session.message, reply.metadata.reply_to_message).metadata
        envelope.message_id = reply.metadata.message_id
        if reply.metadata != envelope:
            raise MalformedMessageError(
                "the reply's Message object carries other metadata than its PushMessages entry",
                what="PushMessages",
                field="metadata",
            )
        return reply

    def _expire_sessions(self) -> None:
        """Discard the sessions idle too long (the least recently touched come first)."""
        limit = time.monotonic() - PUSH_SESSION_SECONDS
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.touched >= limit:
                return
            log.warning("push session %s expired", session_id)
            self._drop_session(session_id)
            self.store.release(session.run_id, session.tree.object_id)

    # ------------------------------------------------------------------- runs

    async def get_run(self, message: pb.GetRunRequest) -> pb.GetRunResponse:
        """The run (403 code 2008 for an unknown run)."""
        run = self.state.get_run(message.run_id)
        if run is None:
            raise _refused(403, 2008, f"Run {message.run_id} not found.")
        return pb.GetRunResponse(
            run=pb.Run(
                run_id=run.run_id,
                fab_id=run.fab_id,
                fab_version=run.fab_version,
                fab_hash=run.fab_hash,
                status=pb.RunStatus(status="running"),
                federation="@none/default",
            )
        )

    async def get_fab(self, message: pb.GetFabRequest) -> pb.GetFabResponse:
        """The run's FAB (403 code 2009 for another hash, or a run without one)."""
        run = self.state.get_run(message.run_id)
        content = self.state.get_fab(message.hash_str)
        if run is None or run.fab_hash != message.hash_str or content is None:
            raise _refused(403, 2009, f"Found no FAB with hash: {message.hash_str}")
        return pb.GetFabResponse(fab=pb.Fab(hash_str=message.hash_str, content=content))

    # ----------------------------------------------------------- front ends

    def rest_routes(self) -> Mapping[str, FleetRoute]:
        """``/v1/fleet/<rpc>`` → the typed method answering it."""
        return {
            rpc.rest_path: FleetRoute(
                rpc.name, rpc.request_type, getattr(self, method_name(rpc.name))
            )
            for rpc in fleet_api.SERVICES["flwr.proto.Fleet"]
            if rpc.rest_path is not None
        }
