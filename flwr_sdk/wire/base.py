"""The seam between a node's session and a Flower wire line.

:class:`FleetLine` is what one line's adapter implements (``wire/v1_12.py``, …), in
role names: register, heartbeat, pull, push, run info, unregister. :class:`NodeAuth`
is one node-authentication scheme's client side. :class:`Reconnect` and
:class:`RunInfo` are what sessions hand upward. :class:`Incoming` and :class:`Outgoing`
are how a line whose payload travels as separate objects (content-addressed, fetched and
uploaded call by call) tells the session which further calls a pull or a push needs;
:class:`ProbeCall` is how a line is recognised before registering. Nothing here names a
line.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import betterproto2
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.rpc import Rpc

from flwr_sdk.common.message import Message
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.wire.guard import reader

__all__ = [
    "Call",
    "FleetLine",
    "FleetRpcs",
    "Incoming",
    "Metadata",
    "NoNodeAuth",
    "NodeAuth",
    "NodeKeys",
    "Outgoing",
    "Probe",
    "ProbeCall",
    "ProbeOutcome",
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
    #: Lines whose node is made in two steps (register, then activate) and leaves in
    #: two (deactivate, then unregister); None on lines with one step each way.
    activate: Rpc | None = None
    deactivate: Rpc | None = None
    #: Lines whose payload travels as separate objects: fetch one, upload one, and
    #: confirm that a pulled message's objects arrived. None elsewhere.
    pull_object: Rpc | None = None
    push_object: Rpc | None = None
    confirm: Rpc | None = None


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

    def http_headers(self, rpc: Rpc, request: betterproto2.Message) -> dict[str, str]:
        """What ``request`` carries as HTTP headers: the text-valued call metadata.

        A scheme whose HTTP form differs from its gRPC form (binary values as base64
        under other names) overrides this.
        """
        return {
            key: value
            for key, value in self.call_metadata(rpc, request).items()
            if isinstance(value, str)
        }

    @property
    def user_keys(self) -> bool:
        """Whether the node presents keys the user gave (not ones made for the session)."""
        return False

    @property
    def key_id(self) -> str | None:
        """A stable id of the user's key (hex SHA-256 of its public key), or None."""
        return None


class NoNodeAuth(NodeAuth):
    """No node authentication: calls carry nothing extra."""

    def call_metadata(self, rpc: Rpc, request: betterproto2.Message) -> Metadata:
        """Nothing."""
        return {}


class ProbeOutcome(enum.Enum):
    """How a server answered a line's detection probe."""

    ANSWERED = "answered"
    UNAUTHENTICATED = "refused for lack of credentials"
    REFUSED = "refused by a precondition"
    ABSENT = "method not found"
    OTHER = "another answer"


@dataclass(frozen=True)
class Probe:
    """One probe's outcome and what exactly the server said (for error messages)."""

    outcome: ProbeOutcome
    detail: str


@dataclass(frozen=True)
class ProbeCall:
    """The call that tells whether a server speaks a line, and which answers say so.

    ``request`` None sends an empty request; ``auth`` None sends no credentials.
    """

    rpc: Rpc
    request: betterproto2.Message | None = None
    auth: NodeAuth | None = None
    spoken: frozenset[ProbeOutcome] = frozenset(
        {ProbeOutcome.ANSWERED, ProbeOutcome.UNAUTHENTICATED}
    )


Call = tuple[str, betterproto2.Message]
"""One call a line asks the session to make: the RPC's role (``"register"``, …) and request."""


class Incoming(abc.ABC):
    """A pulled instruction whose content still has to be fetched, object by object.

    The session asks for :meth:`wanted` (independent fetch requests, made concurrently
    within a bounded window) and hands each answer to :meth:`take`, until nothing is
    wanted; then :meth:`message` is the instruction, and :meth:`confirm_request` tells
    the server that it arrived. Nothing is handed to user code before every object was
    checked.
    """

    #: The instruction's id (for log lines).
    message_id: str = ""
    #: The instruction's run.
    run_id: int = 0
    #: Largest message, in bytes, the node accepts (the session sets it before fetching);
    #: checked before anything is allocated.
    max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH

    @abc.abstractmethod
    def wanted(self) -> list[betterproto2.Message]:
        """Requests for the objects still missing (empty: complete). Called repeatedly."""

    @abc.abstractmethod
    def take(self, request: Any, response: Any) -> bool:
        """Take one fetch answer; False when the object is not available *yet*.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the object is unknown to the server,
                does not hash to its id, or breaks a size limit.

        """

    @abc.abstractmethod
    def message(self) -> Message | None:
        """The complete instruction, or None when the line's rules drop it.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the objects do not make a message.

        """

    @abc.abstractmethod
    def confirm_request(self) -> betterproto2.Message:
        """The request that tells the server the instruction arrived."""


class Outgoing(abc.ABC):
    """A reply that leaves in a push followed by uploads of the objects the server lacks."""

    #: The push itself.
    request: betterproto2.Message

    @abc.abstractmethod
    def uploads(self, response: Any) -> Iterable[betterproto2.Message]:
        """The upload requests the push response asks for (independent of each other).

        Made lazily, one as each is taken, so that only a window of object contents
        exists at a time. The ids are checked at once.

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response names an object the
                reply does not have.

        """

    @abc.abstractmethod
    def stored(self, response: Any) -> bool:
        """Whether an upload's answer says the object was stored."""


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
    #: The heartbeat intervals the server accepts, ``(lowest, highest)`` in seconds;
    #: None: any interval above 0.
    heartbeat_interval_range: tuple[float, float] | None = None
    #: Whether the line's node authentication also works over HTTP (the rest transport).
    node_auth_over_http: bool = False
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

    def check_heartbeat_interval(self, seconds: float) -> float:
        """``seconds`` when the line's servers accept it as a heartbeat interval.

        Raises:
            ValueError: not above 0, or outside :attr:`heartbeat_interval_range` (the
                message names the range).

        """
        allowed = self.heartbeat_interval_range
        if allowed is None:
            if not seconds > 0:
                raise ValueError(f"heartbeat_interval must be > 0 seconds, got {seconds}")
            return seconds
        lowest, highest = allowed
        if not lowest <= seconds <= highest:
            raise ValueError(
                f"heartbeat_interval must be within [{lowest:g}, {highest:g}] seconds on the "
                f"{self.title or self.name}, got {seconds}"
            )
        return seconds

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

    def refusal(self, role: str, error: Exception) -> Exception | None:
        """A clearer error for a call of ``role`` the server refused, or None (keep it).

        Lines whose servers refuse with codes (e.g. "key not registered") say here what
        such a refusal means for the user; the session raises the returned error instead.
        """
        return None

    def still_online(self, role: str, error: Exception) -> bool:
        """Whether a refused opening call may mean "this key's node is still online".

        Then a session that knows the node (a record of an earlier process with the same
        key) deactivates it and tries once more.
        """
        return False

    def node_for_id(self, node_id: int) -> Any:
        """The node reference of ``node_id`` (for lines whose keys name a node)."""
        raise NotImplementedError(f"the {self.title or self.name} has no node records")

    def probe_call(self) -> ProbeCall:
        """The detection probe: by default the pull RPC, empty and unauthenticated."""
        return ProbeCall(self.rpcs.pull)

    def opening_calls(self, auth: NodeAuth, heartbeat_interval: float) -> list[Call]:
        """The calls that make this session's node, in order; the last one names it.

        Each response is read with :meth:`node_from_register`. By default one call,
        ``register``.
        """
        return [("register", self.register_request(heartbeat_interval))]

    def closing_calls(self, node: Any, self_registered: bool) -> list[Call]:
        """The calls that take the node off the server when the session closes.

        ``self_registered``: whether the session's ``register`` call made the node. By
        default one call, ``unregister``.
        """
        return [("unregister", self.unregister_request(node))]

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
    def instruction_from_pull(self, response: Any, node_id: int) -> Message | Incoming | None:
        """The instruction a pull response carries for this node, or None (no work).

        An :class:`Incoming` when its content still has to be fetched.

        An instruction the line's rules do not hand on is dropped (:meth:`drop`).

        Raises:
            flwr_sdk.errors.MalformedMessageError: the response, or the instruction for
                this node, is malformed.

        """

    @abc.abstractmethod
    def push_request(
        self, node: Any, instruction: Message, reply: Message
    ) -> betterproto2.Message | Outgoing | None:
        """The request that delivers ``reply`` to ``instruction``; None if it expired.

        An :class:`Outgoing` when the reply's objects are uploaded after the push.

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
