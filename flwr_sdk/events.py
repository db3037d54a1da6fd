"""Typed progress events a client node reports while it runs.

Pass a callback as ``start_client(..., on_event=callback)``; it is called on the node's
event loop thread, in order, with one of the event classes below (the union is
:data:`NodeEvent`). A callback must return quickly and must not raise (an exception from
it is logged at DEBUG and otherwise ignored). The ``flwr-sdk client`` command draws these
events with rich.

Typical order for one Fleet API session (grpc-bidi has no ``Registered``)::

    [Retrying…] → Connected → Registered
      → [TransferProgress(receive)…] → InstructionReceived
      → [InstructionFailed] → [TransferProgress(send)…] → ReplySent
      → … → Disconnected → [Retrying… → Connected → …] → Stopped

``Retrying`` comes from every call the node waits on (connecting, and on the Fleet API
transports pulling, pushing and fetching run information); the background heartbeat
reports none. ``TransferProgress`` events for a message's bytes arrive while they move
(receive before ``InstructionReceived``, send before ``ReplySent``): one with ``done=0``
when the body starts moving, then at most one every :data:`TRANSFER_PROGRESS_STEP`
bytes, and one with ``done == total`` at the end. Only messages of at least
:data:`TRANSFER_PROGRESS_MIN` bytes report progress (smaller ones move in one go), and
only on flwr-sdk's tuned gRPC channels (not the stock-grpclib fallback) and on REST
bodies with a ``Content-Length``. A FAB fetched for a new run reports ``receive``
progress too (before its first ``InstructionReceived``).

On grpc-bidi a failed instruction has no reply: ``InstructionFailed`` is followed by
``Disconnected(will_reconnect=True)`` (the stream is dropped so the server counts the
failure) and the node joins again. ``Stopped`` is always the last event, whatever ended
the node (the server, an error, ``fail_fast``, Ctrl+C or a cancelled task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "TRANSFER_PROGRESS_MIN",
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

TRANSFER_PROGRESS_MIN = 64 * 1024
"""Smallest message (in bytes) whose transfer reports :class:`TransferProgress`."""


@dataclass(frozen=True)
class Connected:
    """A session with the server is open (on the Fleet API: line detected, node registered).

    Reported once per session, right before :class:`Registered`.
    """

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
    """Bytes of one message moved so far (the encoded message, as it travels)."""

    direction: Literal["receive", "send"]
    done: int
    #: The message's encoded size in bytes when known up front, else None.
    total: int | None


@dataclass(frozen=True)
class InstructionReceived:
    """An instruction arrived and is about to be handed to user code."""

    run_id: int
    message_id: str
    message_type: str
    #: Flower's ``group_id`` (the server round as a string on the 1.12/1.15 lines).
    group_id: str
    #: Bytes of tensor data the instruction carries (its parameters records).
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
    #: Bytes of tensor data the reply carries (0 for an error reply).
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

    @property
    def instructions(self) -> int:
        """Total instructions handed to user code."""
        return sum(self.handled.values())

    def describe(self) -> str:
        """What the node did, in one line for people.

        With failures, one part per message type that had any, joined by ``"; "``:
        ``"12 of 12 train instructions failed (first: ValueError: bad shape)"``.
        Without: ``"6 instructions handled (3 train, 3 evaluate), none failed"``, or
        ``"no instructions handled"``.
        """
        if not self.handled:
            return "no instructions handled"
        if not self.failures:
            counts = ", ".join(f"{n} {kind}" for kind, n in self.handled.items())
            plural = "s" if self.instructions != 1 else ""
            return f"{self.instructions} instruction{plural} handled ({counts}), none failed"
        parts = []
        for kind, failed in self.failed.items():
            if not failed:
                continue
            part = f"{failed} of {self.handled.get(kind, failed)} {kind} instructions failed"
            first = self.first_errors.get(kind)
            parts.append(f"{part} (first: {first})" if first else part)
        return "; ".join(parts)


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
