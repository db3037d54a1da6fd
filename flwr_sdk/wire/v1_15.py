"""The Flower 1.15 wire line: what goes on the wire, and every quirk of it.

Fleet API (grpc-rere and REST; ``PullMessages`` / ``PushMessages``):

* work arrives and replies leave as ``flwr.proto.Message`` (metadata + record set or
  error); ``Node`` is just ``node_id`` (no ``anonymous``); the SuperLink's own node id
  is 1; node and run ids are uint64 and routinely >= 2^63;
* a client uses the first pulled Message if its ``dst_node_id`` is its own node id,
  and only then (Flower's client checks nothing else). One carrying an error instead of
  content is handed on like any other: as in Flower, the ClientApp cannot handle it and
  the node answers with the error reply (code 2, ``CLIENT_APP_RAISED_EXCEPTION``). The
  SuperLink never redelivers a pulled Message, so each one not used is dropped with a
  WARNING and counted (:meth:`~flwr_sdk.wire.base.FleetLine.drop`): no metadata, not for
  this node, times no reply could satisfy
  (:func:`~flwr_sdk.wire.fleet_rules.unanswerable`), and every entry after the first;
* the reply has ``message_id=""``, the instruction's run, group and type, the node as
  source and the instruction's source as destination, ``reply_to_message`` = the
  instruction's id, ``created_at`` = now and ``ttl`` clipped to the instruction's
  remaining lifetime; it is checked against its instruction as Flower's client checks
  it, and not sent once expired (the SuperLink would drop it silently — it even answers
  such a push with OK);
* ``PushMessages`` carries exactly one Message (an empty list is a server error);
  ``GetFab`` names the run as well as the FAB's hash;
* grpc-rere always authenticates (signed timestamps, :mod:`flwr_sdk.wire.v1_15_auth`):
  without ``authentication_keys`` every session makes a fresh key pair; REST has no
  node authentication;
* a restarted SuperLink answers every call of a node it forgot with ``UNAUTHENTICATED
  "Invalid node ID"`` (:meth:`FleetLineV1_15.node_lost`: register again); a push for a run
  that is no longer RUNNING is refused (``PERMISSION_DENIED "Run is finished."``, REST:
  HTTP 500; :meth:`FleetLineV1_15.run_ended`: drop the reply, keep serving);
* REST paths are ``/api/v0/fleet/<rpc>`` with a single slash (Flower 1.15.2's own REST
  client asks for ``//api/…`` on pull/push/get-run/get-fab and never gets work).

:data:`LINE` is the adapter the session uses; :func:`message_to_wire` and
:func:`message_from_wire` convert whole Messages for both roles.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, ClassVar

from flwr_sdk_proto.v1_15 import fleet_api
from flwr_sdk_proto.v1_15.flwr import proto as pb

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.errors import AuthenticationError, MalformedMessageError, TransportError
from flwr_sdk.wire.base import NodeAuth, NodeKeys
from flwr_sdk.wire.fleet_rules import (
    ProtoFleetLine,
    check_reply,
    clipped_ttl,
    expired,
    fleet_rpcs,
    unanswerable,
)
from flwr_sdk.wire.records import recordset_from_wire, recordset_to_wire
from flwr_sdk.wire.v1_15_auth import SignedTimestampAuth

__all__ = ["LINE", "SERVER_NODE_ID", "FleetLineV1_15", "message_from_wire", "message_to_wire"]

SERVER_NODE_ID = 1
"""The SuperLink's node id: the source of every instruction, the destination of replies."""

_METADATA_FIELDS = tuple(f.name for f in dataclasses.fields(Metadata))


def message_from_wire(message: pb.Message) -> Message:
    """A ``flwr.proto.Message`` as the SDK's Message (tensor bytes are not copied).

    Raises:
        MalformedMessageError: no metadata, or neither / both of content and error.

    """
    if message.metadata is None:
        raise MalformedMessageError("a Message without metadata", what="Message", field="metadata")
    if (message.content is None) == (message.error is None):
        raise MalformedMessageError(
            "a Message must carry exactly one of content and error", what="Message"
        )
    metadata = Metadata(**{name: getattr(message.metadata, name) for name in _METADATA_FIELDS})
    if message.content is not None:
        return Message(metadata, content=recordset_from_wire(message.content))
    assert message.error is not None
    return Message(metadata, error=Error(code=message.error.code, reason=message.error.reason))


def message_to_wire(message: Message) -> pb.Message:
    """The SDK's Message as a ``flwr.proto.Message`` (tensor bytes are not copied)."""
    metadata = pb.Metadata(**{name: getattr(message.metadata, name) for name in _METADATA_FIELDS})
    if message.has_content():
        return pb.Message(metadata=metadata, content=recordset_to_wire(message.content, pb))
    error = pb.Error(code=message.error.code, reason=message.error.reason)
    return pb.Message(metadata=metadata, error=error)


class FleetLineV1_15(ProtoFleetLine):  # noqa: N801  (the line's version is its name)
    """Flower 1.15's Fleet API: Messages, always-on signed-timestamp node auth."""

    name = "1.15"
    title = "Flower 1.15 Fleet API"
    rpcs = fleet_rpcs(fleet_api, fleet_api.FLEET_PULL_MESSAGES, fleet_api.FLEET_PUSH_MESSAGES)
    proto: ClassVar[ModuleType] = pb

    def node_lost(self, error: Exception) -> bool:
        """The auth interceptor's ``UNAUTHENTICATED "Invalid node ID"``.

        A restarted SuperLink has forgotten the node and its key: every call, Ping
        included, is refused this way before a servicer could answer ``success=false``.
        """
        return isinstance(error, AuthenticationError) and "Invalid node ID" in str(error)

    def run_ended(self, error: Exception) -> bool:
        """A push refused because the run is not RUNNING (stopped or finished).

        grpc-rere: ``PERMISSION_DENIED "Run is finished."`` (" Stopped by user."
        appended); REST: HTTP 500 (the SuperLink raises; no text says why).
        """
        text = str(error)
        return "Run is " in text or (isinstance(error, TransportError) and "HTTP 500" in text)

    def node_auth(self, keys: NodeKeys | None) -> NodeAuth:
        """Signed timestamps with the user's keys, or a fresh SECP384R1 pair."""
        return SignedTimestampAuth(keys)

    def node_from_register(self, response: Any) -> pb.Node:
        """The ``Node`` CreateNode assigned.

        Raises:
            MalformedMessageError: no node, or node id 0 (Flower: "Node registration
                failed").

        """
        node: pb.Node | None = response.node
        if node is None or node.node_id == 0:
            raise MalformedMessageError(
                f"CreateNode returned no usable node: {node!r}",
                what="CreateNode response",
                field="node",
            )
        return node

    def pull_request(self, node: Any) -> pb.PullMessagesRequest:
        """``PullMessages`` (``message_ids`` is never set by 1.15 clients)."""
        return pb.PullMessagesRequest(node=node)

    def instruction_from_pull(self, response: Any, node_id: int) -> Message | None:
        """The first Message if it is addressed to this node (with content or an error).

        Only the first entry counts; a rejected one, and every entry after it, is
        dropped with a WARNING and counted (the SuperLink never redelivers it). So is
        one whose times no reply could satisfy.

        Raises:
            MalformedMessageError: the response, or the Message for this node, is
                malformed (neither or both of content and error, a malformed record set).

        """
        first: pb.Message | None = self.first_for_node(response.messages_list, node_id)
        if first is None:
            return None
        message = message_from_wire(first)
        why = unanswerable(message)
        if why is not None:
            self.drop("unanswerable times", why)
            return None
        return message

    def push_request(
        self, node: Any, instruction: Message, reply: Message
    ) -> pb.PushMessagesRequest | None:
        """``PushMessages`` with the checked reply; None when it already expired."""
        check_reply(instruction, reply, self.node_id(node))
        wire = message_to_wire(reply)
        assert wire.metadata is not None
        wire.metadata.message_id = ""
        wire.metadata.ttl = clipped_ttl(instruction, reply)
        if expired(wire.metadata.created_at, wire.metadata.ttl):
            return None
        return pb.PushMessagesRequest(node=node, messages_list=[wire])

    def get_fab_request(self, node: Any, fab_hash: str, run_id: int) -> pb.GetFabRequest:
        """``GetFab`` by hash, naming the run (1.15 added ``run_id``)."""
        return pb.GetFabRequest(node=node, hash_str=fab_hash, run_id=run_id)


LINE = FleetLineV1_15()
"""The Flower 1.15 line's adapter."""
