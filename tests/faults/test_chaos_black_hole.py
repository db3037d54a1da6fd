"""Issue 16, "done when" 1: a black-holed path on grpc-bidi, grpc-rere and rest.

A real Flower 1.12.0 server (the legacy server for grpc-bidi, a SuperLink with the
round-recording ServerApp for grpc-rere and rest; rounds end after a round timeout, one
client is enough) behind the chaos proxy; our client (``sdk_client.py``, a subprocess)
connects through the proxy. Once the node has served rounds, the proxy black-holes every
connection (no byte, no FIN, no RST), heals after ``HOLE`` seconds (the black-holed
connections stay dead, as after a NAT timeout), and the node must serve a round again
within 60 s of healing, without exiting.

The scenarios run in the background (support/chaos_black_hole.py, tests/faults/conftest.py:
from the session's first fault test in a serial run, from these tests' own setup under
pytest-xdist); these tests check their figures.

Figures printed (``-s``): detection (first failure the node logged, first new connection
the proxy saw, both from the start of the black hole), recovery (heal → next round with
a result), rounds served before / during / after, the proxy's counters.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.chaos_black_hole import RECOVERY, TRANSPORTS, BlackHoleRuns

pytestmark = pytest.mark.interop

MISSING: dict[str, str] = {}


@pytest.fixture(scope="module")
def black_hole_figures(black_hole_runs: BlackHoleRuns | None) -> dict[str, dict[str, Any]]:
    assert black_hole_runs is not None, "tests/faults/conftest.py starts the scenarios"
    return black_hole_runs.wait()


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(t, marks=[pytest.mark.xfail(strict=True, reason=MISSING[t])])
        if t in MISSING
        else t
        for t in TRANSPORTS
    ],
)
def test_black_hole_then_heal_serves_rounds_again(
    black_hole_figures: dict[str, dict[str, Any]], transport: str
) -> None:
    figures = dict(black_hole_figures[transport])
    if "error" in figures:
        raise figures["error"]
    log = figures.pop("log")
    print(f"\nblack hole {transport}: {figures}")
    assert figures["alive at heal"] and figures["alive at end"], (figures, log)
    assert figures["recovery"] is not None, (
        f"no round served within {RECOVERY:.0f} s of healing: {figures}\n{log}"
    )
    assert figures["recovery"] <= RECOVERY, figures
