"""Which Flower wire line a Fleet API speaks, found out before registering.

Each line's pull RPC exists only on its own line (``PullTaskIns`` on 1.12,
``PullMessages`` on 1.15), so one unauthenticated call with an empty request tells
them apart, newest line first: a line is spoken when its pull RPC is *answered*
(1.12 without node auth; REST) or *refused for lack of credentials* (1.15's always-on
authentication, 1.12 with node auth). A missing method (gRPC ``UNIMPLEMENTED``, HTTP
404) means "not this line". The probe registers nothing and carries no node. Order
matters: 1.15 refuses *every* unauthenticated call, ``PullTaskIns`` included, so it must
be asked first; a 1.12 server never refuses ``PullMessages`` for credentials.

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
) -> tuple[FleetLine | None, dict[str, ProbeOutcome]]:
    outcomes: dict[str, ProbeOutcome] = {}
    for line in lines:
        result = await probe(line.rpcs.pull)
        seen.append(f"{line.rpcs.pull.name} → {result.detail}")
        outcomes[line.name] = result.outcome
        if result.outcome in _SPOKEN:
            return line, outcomes
    return None, outcomes


async def detect_line(
    probe: Prober, lines: Sequence[FleetLine], chosen: FleetLine | None = None
) -> FleetLine:
    """The line the server speaks; with ``chosen``, that line once the server agrees.

    ``lines`` are the supported lines, newest first; probing stops at the first line
    spoken. A ``chosen`` line is used when detection finds it, and also when detection
    finds no line but the server did not plainly lack the chosen line's pull RPC (an
    answer the table does not know: the user's choice decides).

    Raises:
        flwr_sdk.errors.WireLineError: the server speaks none of ``lines``, or another
            line than ``chosen`` (the message names what it answered and what it speaks).
        flwr_sdk.errors.ServerUnavailableError: the server could not be reached.

    """
    supported = ", ".join(line.name for line in lines)
    seen: list[str] = []
    line, outcomes = await _first_spoken(probe, lines, seen)
    if chosen is not None and line is not chosen:
        lacks_chosen = outcomes.get(chosen.name) is ProbeOutcome.ABSENT
        if line is None and not lacks_chosen:
            return chosen
        speaks = f"it speaks the {line.title}" if line else "it speaks no supported line"
        raise WireLineError(
            f"the server does not speak the {chosen.title} that wire={chosen.name!r} asks "
            f"for: {speaks} ({'; '.join(seen)}; supported: {supported}); leave wire "
            "unset to detect the line"
        )
    if line is None:
        raise WireLineError(
            f"the server speaks none of the supported Flower Fleet API lines ({supported}): "
            f"{'; '.join(seen)}"
        )
    return line
