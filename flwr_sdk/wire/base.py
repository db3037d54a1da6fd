"""The seam between a node's session and a Flower wire line.

:class:`FleetLine` is what one line's adapter implements (``wire/v1_12.py``, …), in
role names: register, heartbeat, pull, push, run info, unregister. :class:`NodeAuth`
is one node-authentication scheme's client side. :class:`Reconnect` and
:class:`RunInfo` are what sessions hand upward. Nothing here names a line.
"""

from __future__ import annotations

import abc
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import betterproto2
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.rpc import Rpc

from flwr_sdk.common.message import Message
from flwr_sdk.wire.guard import reader

__all__ = [
    "FleetLine",
    "FleetRpcs",
    "Metadata",
    "NoNodeAuth",
    "NodeAuth",
    "NodeKeys",
    "Reconnect",
    "Rpc",
    "RunInfo",
]

log = logging.getLogger("flwr_sdk")

ConfigScalar = bool | bytes | float | int | str


@dataclass(frozen=True)
class Reconnect:
    """The server asked the node to leave: come back after ``seconds``, or never if None."""

    seconds: float | None


@dataclass(frozen=True)
class RunInfo:
    """What the server says about a run (Fleet API ``GetRun``/``GetFab``)."""

    run_id: int
    run_config: Mapping[str, ConfigScalar] = field(default_factory=lambda: MappingProxyType({}))
    fab_id: str = ""
    fab_version: str = ""
    fab_hash: str = ""


@dataclass(frozen=True)
class FleetRpcs:
    """The Fleet RPCs of one line, by the role each plays in a node's session."""

    register: Rpc
    unregister: Rpc
    heartbeat: Rpc
    pull: Rpc
    push: Rpc
    get_run: Rpc
    get_fab: Rpc


Metadata = dict[str, str | bytes]
"""Call metadata (gRPC) or headers (HTTP) a node-auth scheme adds to one call."""

NodeKeys = tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]
"""``authentication_keys`` as ``start_client`` takes them."""


class NodeAuth(abc.ABC):
    """The client side of one node-authentication scheme, for one session.

    A transport asks it for the metadata of every call and hands it the response
    metadata it asks for; the session asks it whether registering established what the
    scheme needs. One object per session: schemes keep per-session state
    (e.g. the HMAC key 1.12 derives from the SuperLink's key).
    """

    #: The response-metadata key whose values :meth:`take_response_metadata` needs, or
    #: None (transports read response metadata only when it is set).
    response_metadata_key: str | None = None

    @abc.abstractmethod
    def call_metadata(self, rpc: Rpc, request: betterproto2.Message) -> Metadata:
        """What ``request`` carries besides its body (empty when unauthenticated)."""

    def take_response_metadata(self, values: list[str]) -> None:  # noqa: B027
        """A response's metadata values under :attr:`response_metadata_key` (if any).

        Raises:
            flwr_sdk.errors.AuthenticationError: the server's answer is unusable.

        """

    def check_registered(self) -> None:  # noqa: B027
        """Check that registering established what the scheme needs.

        Raises:
            flwr_sdk.errors.AuthenticationError: it did not (the session then
                unregisters again).

        """


class NoNodeAuth(NodeAuth):
    """No node authentication: calls carry nothing extra."""

    def call_metadata(self, rpc: Rpc, request: betterproto2.Message) -> Metadata:
        """Nothing."""
        return {}


def _names_role(role: str) -> Callable[[Any], str]:
    def name(line: Any) -> str:
        rpc: Rpc = getattr(line.rpcs, role)
        return f"{rpc.name} response"

    return name


_READERS: Mapping[str, str] = MappingProxyType(
    {
        "node_from_register": "register",
        "node_id": "register",
        "heartbeat_accepted": "heartbeat",
        "instruction_from_pull": "pull",
        "run_from_response": "get_run",
        "fab_from_response": "get_fab",
    }
)
"""The methods that read what the server sent → the role of the RPC whose answer it is."""


class FleetLine(abc.ABC):
    """Everything one Flower wire line decides about a node's Fleet API session.

    The session (:mod:`flwr_sdk.transport.fleet_session`) runs the same flow on every
    line — register, heartbeat, pull, run info, push, unregister — and asks the line,
    in role names, for each request and for what each response means. A line's
    requests and node references are its own generated classes; the session only
    passes them back to the line and to the transport.

    Every method that reads what the server sent (``node_from_register``, ``node_id``,
    ``heartbeat_accepted``, ``instruction_from_pull``, ``run_from_response``,
    ``fab_from_response``) is wrapped, in each subclass that defines it, by
    :func:`flwr_sdk.wire.guard.reader`: the response's shape is checked first, and a
    reader never raises anything but :class:`~flwr_sdk.errors.FlwrSdkError` types
    (:class:`~flwr_sdk.errors.MalformedMessageError` where the answer is unusable).

    An instruction that a line's rules say not to hand on (not for this node, nothing to
    handle, times that no reply could satisfy) is dropped through :meth:`drop`: logged
    at WARNING and counted in :attr:`dropped`.
    """

    #: Short name, e.g. ``"1.12"``.
    name: str = ""
    #: What the INFO line calls it, e.g. ``"Flower 1.12 Fleet API"``.
    title: str = ""
    #: The Fleet RPCs by role.
    rpcs: FleetRpcs
    #: Seconds between heartbeats the node promises when it registers.
    heartbeat_interval: float = 30.0
    #: Whether the server may hand out again the id of a node it reported as lost
    #: (then registering anew can only loop, and the connector refuses such an id).
    reissues_lost_node_ids: bool = False

    def __init__(self) -> None:
        #: Instructions this adapter dropped instead of handing them on, by reason.
        #: Process-wide: one adapter object serves every session of its line.
        self.dropped: Counter[str] = Counter()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Guard every reader the subclass defines (see the class docs)."""
        super().__init_subclass__(**kwargs)
        for name, role in _READERS.items():
            function = cls.__dict__.get(name)
            if function is not None:
                setattr(cls, name, reader(_names_role(role), position=1)(function))

    def drop(self, reason: str, detail: str) -> None:
        """Drop a pulled instruction: log a WARNING and count it under ``reason``.

        ``detail`` says which instruction (its id) and why, for the log line.
        """
        self.dropped[reason] += 1
        log.warning(
            "Dropped an instruction from the %s: %s (%s); %d dropped for this reason",
            self.title or self.name,
            reason,
            detail,
            self.dropped[reason],
        )

    def node_lost(self, error: Exception) -> bool:
        """Whether a refused call means the server no longer knows the node.

        The session then registers a new node instead of failing.
        """
        return False

    def run_ended(self, error: Exception) -> bool:
        """Whether a refused push means the instruction's run is no longer running.

        The session then drops the reply and keeps serving (the run ended, not the node).
        """
        return False

    @abc.abstractmethod
    def node_auth(self, keys: NodeKeys | None) -> NodeAuth:
        """A fresh node-auth object for one session (``keys``: the user's, if any)."""

    @abc.abstractmethod
    def register_request(self, heartbeat_interval: float) -> betterproto2.Message:
        """The request that registers a node."""

    @abc.abstractmethod
    def node_from_register(self, response: Any) -> Any:
        """The node reference a registration response gives (used in later requests).

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response is malformed or carries
                no usable node.

        """

    @abc.abstractmethod
    def node_id(self, node: Any) -> int:
        """The numeric id of a node reference."""

    @abc.abstractmethod
    def heartbeat_request(self, node: Any, heartbeat_interval: float) -> betterproto2.Message:
        """The request that keeps ``node`` online."""

    @abc.abstractmethod
    def heartbeat_accepted(self, response: Any) -> bool:
        """False when the server no longer knows the node.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response is malformed.

        """

    @abc.abstractmethod
    def pull_request(self, node: Any) -> betterproto2.Message:
        """The request that asks for the node's next instruction."""

    @abc.abstractmethod
    def instruction_from_pull(self, response: Any, node_id: int) -> Message | None:
        """The instruction a pull response carries for this node, or None (no work).

        An instruction the line's rules do not hand on is dropped (:meth:`drop`).

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response, or the instruction for
                this node, is malformed.

        """

    @abc.abstractmethod
    def push_request(
        self, node: Any, instruction: Message, reply: Message
    ) -> betterproto2.Message | None:
        """The request that delivers ``reply`` to ``instruction``; None if it expired.

        Raises:
            flwr_sdk.errors.ReplyRuleError: the reply does not answer the instruction.

        """

    @abc.abstractmethod
    def get_run_request(self, node: Any, run_id: int) -> betterproto2.Message:
        """The request that describes a run."""

    @abc.abstractmethod
    def run_from_response(self, response: Any, run_id: int) -> RunInfo:
        """What a run-description response says.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response is malformed.

        """

    @abc.abstractmethod
    def get_fab_request(self, node: Any, fab_hash: str, run_id: int) -> betterproto2.Message:
        """The request that fetches a FAB by its hash."""

    @abc.abstractmethod
    def fab_from_response(self, response: Any, fab_hash: str) -> bytes | None:
        """The FAB's bytes, or None when the response has no FAB matching the hash.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response is malformed.

        """

    @abc.abstractmethod
    def unregister_request(self, node: Any) -> betterproto2.Message:
        """The request that unregisters the node."""
