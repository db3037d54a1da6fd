"""Which Flower wire line a Fleet API speaks, found out before registering.

Each line's pull RPC exists only on its own line (``PullTaskIns`` on 1.12,
``PullMessages`` on 1.15), so one unauthenticated call with an empty request tells
them apart, newest line first: a line is spoken when its pull RPC is *answered*
(1.12 without node auth; REST) or *refused for lack of credentials* (1.15's always-on
authentication, 1.12 with node auth). A missing method (gRPC ``UNIMPLEMENTED``, HTTP
404) means "not this line". The probe registers nothing and carries no node.

Observed on real SuperLinks, probe → answer:

======================  ===========================  ==================================
server                  ``PullMessages``             ``PullTaskIns``
======================  ===========================  ==================================
1.12, grpc-rere         UNIMPLEMENTED                OK (empty)
1.12, grpc-rere + auth  UNKNOWN (its interceptor)    UNAUTHENTICATED "Access denied"
1.15, grpc-rere         UNAUTHENTICATED "Missing …"  (not asked)
1.12, REST              404                          200 (empty)
1.15, REST              200 (empty)                  (not asked)
======================  ===========================  ==================================
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from flwr_sdk.errors import WireLineError
from flwr_sdk.wire.base import FleetLine, Rpc

__all__ = ["Probe", "ProbeOutcome", "Prober", "detect_line"]

log = logging.getLogger("flwr_sdk")


class ProbeOutcome(enum.Enum):
    """How a server answered an unauthenticated call with an empty request."""

    ANSWERED = "answered"
    UNAUTHENTICATED = "refused for lack of credentials"
    ABSENT = "method not found"
    OTHER = "another answer"


@dataclass(frozen=True)
class Probe:
    """One probe's outcome and what exactly the server said (for error messages)."""

    outcome: ProbeOutcome
    detail: str


Prober = Callable[[Rpc], Awaitable[Probe]]
"""Makes one probe call (a transport's ``FleetCaller.probe``); raises when unreachable."""

_SPOKEN = (ProbeOutcome.ANSWERED, ProbeOutcome.UNAUTHENTICATED)


async def _first_spoken(
    probe: Prober, lines: Sequence[FleetLine], seen: list[str]
) -> FleetLine | None:
    for line in lines:
        result = await probe(line.rpcs.pull)
        seen.append(f"{line.rpcs.pull.name} → {result.detail}")
        if result.outcome in _SPOKEN:
            return line
    return None


async def detect_line(
    probe: Prober, lines: Sequence[FleetLine], chosen: FleetLine | None = None
) -> FleetLine:
    """The line the server speaks, or ``chosen`` after checking the server has it.

    ``lines`` are the supported lines, newest first. An explicit ``chosen`` line is
    used as it is unless the server plainly lacks its pull RPC.

    Raises:
        flwr_sdk.errors.WireLineError: the server speaks none of ``lines``, or lacks
            the ``chosen`` one (the message names what it answered and what it speaks).
        flwr_sdk.errors.ServerUnavailableError: the server could not be reached.

    """
    supported = ", ".join(line.name for line in lines)
    seen: list[str] = []
    if chosen is not None:
        result = await probe(chosen.rpcs.pull)
        if result.outcome is not ProbeOutcome.ABSENT:
            return chosen
        seen.append(f"{chosen.rpcs.pull.name} → {result.detail}")
        others = [line for line in lines if line is not chosen]
        spoken = await _first_spoken(probe, others, seen)
        speaks = f"it speaks the {spoken.title}" if spoken else "it speaks no supported line"
        raise WireLineError(
            f"the server does not speak the {chosen.title} that wire={chosen.name!r} asks "
            f"for ({'; '.join(seen)}); {speaks} (supported: {supported}); leave wire "
            "unset to detect the line"
        )
    line = await _first_spoken(probe, lines, seen)
    if line is None:
        raise WireLineError(
            f"the server speaks none of the supported Flower Fleet API lines ({supported}): "
            f"{'; '.join(seen)}"
        )
    return line
