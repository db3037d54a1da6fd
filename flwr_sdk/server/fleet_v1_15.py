"""The Flower 1.15 Fleet API (Messages) over the line-neutral Fleet state.

The only server module that knows the 1.15 Fleet wire: it implements the generated
``FleetBase``'s typed methods (CreateNode, DeleteNode, Ping, GetRun, GetFab and the push
answer shared with every line, :class:`~flwr_sdk.server.fleet_servicer.FleetServicerBase`),
converts ``flwr.proto.Message`` to and from the SDK's
:class:`~flwr_sdk.common.message.Message` (:mod:`flwr_sdk.wire.v1_15`) and answers as
the 1.15.2 SuperLink does:

* instructions come from node ``SERVER_NODE_ID`` (1); ``PullMessages`` returns at most
  one Message and marks it delivered (it is never handed out again); a node that has
  nothing (or node 0, or no node) gets an empty list;
* ``PushMessages``: an empty list is an error (``list index out of range``); of the
  first Message, one that carries neither or both of content and error is an error,
  and so is a reply for an unknown run (the SuperLink looks the run's status up
  first); otherwise a reply is dropped silently (its id in the answer is ``"None"``)
  when the SuperLink's checks (§2.5) fail: sent by node 1, no ``reply_to_message``,
  created before 2024-03-27, ``ttl`` not positive, expired, no ``message_type``, its
  instruction unknown, expired or addressed to another node, or a ``ttl`` beyond what is
  left of the instruction's (+ ``TTL_TOLERANCE``); a ``reply_to_message`` that is not a
  UUID is an error. ``dst_node_id`` is not looked at: the SuperLink's conversion makes
  every reply's consumer itself;
* ``GetFab`` names the run: an unknown run is an error before the (always unknown) FAB;
* DeleteNode also forgets the node's public key (a key can register again afterwards).

Node authentication (signed timestamps, always on for grpc-rere) is
:mod:`~flwr_sdk.server.node_auth_v1_15`; REST has none.

**A tolerance for Flower 1.15.2's own REST client** (not what the SuperLink does): that
client requests ``//api/v0/fleet/pull-messages``, ``//…/push-messages``,
``//…/get-run`` and ``//…/get-fab`` (a path-joining bug). The 1.15.2 SuperLink answers
those with 404, which the client takes for "no message" and polls forever; this server
routes the double-slash paths to the same calls (:data:`DOUBLE_SLASH_PATHS`), so real
1.15.2 REST clients complete runs against it. Every single-slash path answers exactly as
the SuperLink's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flwr_sdk_proto.v1_15.flwr import proto as pb

from flwr_sdk.common.message import Message
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_servicer import FleetServicerBase, decoded_reply
from flwr_sdk.server.fleet_state import FleetError
from flwr_sdk.wire.v1_15 import LINE, SERVER_NODE_ID, message_from_wire, message_to_wire

__all__ = ["DOUBLE_SLASH_PATHS", "FleetServicerV1_15"]

log = logging.getLogger("flwr_sdk.server")

DOUBLE_SLASH_PATHS = tuple(
    "/" + rpc.rest_path
    for rpc in (LINE.rpcs.pull, LINE.rpcs.push, LINE.rpcs.get_run, LINE.rpcs.get_fab)
    if rpc.rest_path is not None
)
"""The paths Flower 1.15.2's REST client requests with a doubled slash (served here)."""


def _wire_reject_reason(metadata: pb.Metadata) -> str | None:
    """Why the SuperLink drops a reply for what the line-neutral state does not check."""
    if metadata.src_node_id == SERVER_NODE_ID:
        return "the sender must not be the SuperLink's node"
    if not metadata.reply_to_message:
        return "no reply_to_message"
    return None


def _with_error(message: pb.Message, reason: str) -> pb.Message:
    return pb.Message(metadata=message.metadata, error=pb.Error(code=0, reason=reason))


class FleetServicerV1_15(FleetServicerBase, pb.FleetBase):  # noqa: N801 - the line's version
    """``flwr.proto.Fleet`` of Flower 1.15 for a :class:`FleetState`."""

    line = LINE
    server_node_id = SERVER_NODE_ID
    releases_key_on_delete = True

    async def pull_messages(self, message: pb.PullMessagesRequest) -> pb.PullMessagesResponse:
        """At most one Message for the caller's node."""
        entry = self.pull_for(self.named_node_id(message.node))
        messages = [] if entry is None else [message_to_wire(entry.message)]
        return pb.PullMessagesResponse(messages_list=messages)

    async def push_messages(self, message: pb.PushMessagesRequest) -> pb.PushMessagesResponse:
        """Store the first Message (the SuperLink looks at no other)."""
        response: pb.PushMessagesResponse = self.push(message.messages_list, self._reply_of)
        return response

    def _reply_of(self, message: pb.Message) -> Message | None:
        metadata = message.metadata or pb.Metadata()
        if (message.content is None) == (message.error is None):
            raise FleetError("Either `content` or `error` must be set, but not both.")
        if self.state.get_run(metadata.run_id) is None:
            raise FleetError(str(metadata.run_id))  # the SuperLink's KeyError
        reason = _wire_reject_reason(metadata)
        if reason is not None:
            log.warning("dropped a reply: %s", reason)
            return None
        wire = pb.Message(metadata=metadata, content=message.content, error=message.error)
        return decoded_reply(message_from_wire, wire, _with_error)

    async def get_fab(self, message: pb.GetFabRequest) -> pb.GetFabResponse:
        """No FABs are served; an unknown run fails first."""
        if self.state.get_run(message.run_id) is None:
            raise FleetError(str(message.run_id))
        response: pb.GetFabResponse = await super().get_fab(message)
        return response

    def rest_routes(self) -> Mapping[str, FleetRoute]:
        """The 1.15 REST paths, plus the double-slash ones of Flower 1.15.2's client."""
        routes = dict(super().rest_routes())
        for path in DOUBLE_SLASH_PATHS:
            routes[path] = routes[path[1:]]
        return routes
