"""Typed progress events a client node reports while it runs.

Pass a callback as ``start_client(..., on_event=callback)``; it is called on the node's
event loop thread, in order, with one of the event classes below (the union is
:data:`NodeEvent`). A callback must return quickly and must not raise (an exception from
it is logged at DEBUG and otherwise ignored). The ``flwr-sdk client`` command draws these
events with rich.

Typical order for one Fleet API session::

    Connected → Registered → InstructionReceived → TransferProgress(send)… → ReplySent
    … → Disconnected → Stopped

``TransferProgress`` events for a message's bytes arrive while they move (receive before
``InstructionReceived``, send before ``ReplySent``), at most every
:data:`TRANSFER_PROGRESS_STEP` bytes plus one at the end of the transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "TRANSFER_PROGRESS_STEP",
    "Connected",
    "Disconnected",
    "EventCallback",
    "InstructionFailed",
    "InstructionReceived",
    "NodeEvent",
    "NodeSummary",
    "Registered",
    "ReplySent",
    "Retrying",
    "Stopped",
    "TransferProgress",
]

TRANSFER_PROGRESS_STEP = 4 * 1024 * 1024
"""Bytes between two :class:`TransferProgress` events of one transfer."""


@dataclass(frozen=True)
class Connected:
    """A connection to the server is open (before registration)."""

    address: str
    transport: str
    #: The Flower wire line in use ("1.12", "1.15"); None on grpc-bidi.
    line: str | None


@dataclass(frozen=True)
class Registered:
    """The server gave this node its id (Fleet API transports; grpc-bidi has none)."""

    node_id: int


@dataclass(frozen=True)
class Retrying:
    """A call failed with a retryable error; the node waits ``delay`` seconds, then retries."""

    delay: float
    reason: str
    #: 1 for the first retry.
    attempt: int


@dataclass(frozen=True)
class TransferProgress:
    """Bytes of one message moved so far."""

    direction: Literal["receive", "send"]
    done: int
    #: The message's size in bytes when known up front, else None.
    total: int | None


@dataclass(frozen=True)
class InstructionReceived:
    """An instruction arrived and is about to be handed to user code."""

    run_id: int
    message_id: str
    message_type: str
    #: Flower's ``group_id`` (the server round as a string on the 1.12/1.15 lines).
    group_id: str
    #: Size of the instruction's content in bytes (tensor data included).
    size: int


@dataclass(frozen=True)
class InstructionFailed:
    """User code raised while handling an instruction."""

    message_type: str
    group_id: str
    #: ``"ValueError: bad shape"``.
    error: str


@dataclass(frozen=True)
class ReplySent:
    """The reply to an instruction has been sent."""

    message_type: str
    group_id: str
    size: int
    #: Seconds from ``InstructionReceived`` to the reply being sent.
    duration: float
    #: True when the reply is an error reply (user code failed).
    failed: bool


@dataclass(frozen=True)
class Disconnected:
    """A connection ended; ``will_reconnect`` says whether the node goes on."""

    reason: str
    will_reconnect: bool


@dataclass(frozen=True)
class NodeSummary:
    """What a node did, reported when it stops."""

    #: Instructions handled, by message type.
    handled: dict[str, int] = field(default_factory=dict)
    #: Instructions whose user code failed, by message type.
    failed: dict[str, int] = field(default_factory=dict)
    #: ``"ValueError: bad shape"`` of the first failure per message type.
    first_errors: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Total failed instructions."""
        return sum(self.failed.values())


@dataclass(frozen=True)
class Stopped:
    """The node stopped; the last event it reports."""

    summary: NodeSummary
    #: ``"ValueError: …"`` when the node stopped with an error, else None.
    error: str | None


NodeEvent = (
    Connected
    | Registered
    | Retrying
    | TransferProgress
    | InstructionReceived
    | InstructionFailed
    | ReplySent
    | Disconnected
    | Stopped
)
"""Any event a node reports."""

EventCallback = Callable[[NodeEvent], None]
"""The type of ``start_client``'s ``on_event`` callback."""
