"""Which Flower wire line a Fleet API speaks, found out before registering.

Each line names one probe (:meth:`~flwr_sdk.wire.base.FleetLine.probe_call`): a call
that registers nothing and carries no node, and the answers that mean "this line is
spoken". Lines are probed newest first; the first spoken line wins.

* 1.12 and 1.15: the line's pull RPC (``PullTaskIns`` / ``PullMessages``, each on its own
  line only), empty and unauthenticated; spoken when *answered* (1.12 without node auth;
  REST) or *refused for lack of credentials* (1.15's always-on authentication, 1.12 with
  node auth). 1.15 refuses *every* unauthenticated call, ``PullTaskIns`` included, so it
  is asked before 1.12; a 1.12 server never refuses ``PullMessages`` for credentials.
* 1.42 shares ``/flwr.proto.Fleet/PullMessages`` with 1.15 on gRPC, and both refuse an
  unauthenticated call to any method alike, so its probe is a *signed* ``ActivateNode``
  for a throwaway key: only a 1.42 SuperLink knows the method and answers that the key
  cannot be activated (HTTP 412 / gRPC ``FAILED_PRECONDITION``, code 2004); a 1.15
  SuperLink refuses the unknown key (``UNAUTHENTICATED "Invalid node ID"``) and the
  HTTP paths ``/v1/fleet/…`` do not exist on older servers (404).

A missing method (gRPC ``UNIMPLEMENTED``, HTTP 404) means "not this line".

Observed on real SuperLinks, probe → answer (A = signed ``ActivateNode``, M =
``PullMessages``, T = ``PullTaskIns``; "-" = not asked):

======================  ===========================  ===========================  =========
server                  A                            M                            T
======================  ===========================  ===========================  =========
1.42, HTTP              412 (code 2004)              -                            -
1.42, gRPC Fleet        FAILED_PRECONDITION 2004     -                            -
1.15, grpc-rere         UNAUTHENTICATED "Invalid …"  UNAUTHENTICATED "Missing …"  -
1.12, grpc-rere         not a refusal (*)            UNIMPLEMENTED                OK
1.12, grpc-rere + auth  not a refusal (*)            UNKNOWN (its interceptor)    UNAUTH.
1.12, REST              404                          404                          200
1.15, REST              404                          200 (empty)                  -
======================  ===========================  ===========================  =========

(*) 1.12 has no ``ActivateNode``; its servers answer anything but FAILED_PRECONDITION
(checked on 1.12 without node auth: detection still finds 1.12).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from flwr_sdk.errors import WireLineError
from flwr_sdk.wire.base import FleetLine, Probe, ProbeCall, ProbeOutcome

__all__ = ["Probe", "ProbeCall", "ProbeOutcome", "Prober", "detect_line"]

log = logging.getLogger("flwr_sdk")

Prober = Callable[..., Awaitable[Probe]]
"""Makes one probe call (a transport's ``FleetCaller.probe``); raises when unreachable.

Called as ``probe(rpc)`` for a line's default probe (empty, unauthenticated) and as
``probe(rpc, call=probe_call)`` when the line's :class:`ProbeCall` carries a request
or credentials.
"""


async def _ask(probe: Prober, call: ProbeCall) -> Probe:
    if call.request is None and call.auth is None:
        return await probe(call.rpc)
    return await probe(call.rpc, call=call)


async def _first_spoken(
    probe: Prober, lines: Sequence[FleetLine], seen: list[str]
) -> tuple[FleetLine | None, dict[str, ProbeOutcome]]:
    outcomes: dict[str, ProbeOutcome] = {}
    for line in lines:
        call = line.probe_call()
        result = await _ask(probe, call)
        seen.append(f"{call.rpc.name} → {result.detail}")
        outcomes[line.name] = result.outcome
        if result.outcome in call.spoken:
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
