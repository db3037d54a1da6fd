"""Seeded fuzz of everything a server can send, on every transport (issue 16, "done when" 3).

For each transport, N frames (:func:`support.hostile_frames.fuzz_frame`) are served by
the hostile server of tests/support/hostile_server.py, and the client runs one pass of
the node loop against each (tests/support/hostile_client.py). The test asserts:

* every failure is a :class:`flwr_sdk.errors.FlwrSdkError` — no raw exception from our
  code, neither from the calls nor from the heartbeat task or other background work;
* no hang: each frame ends within ``FLWR_SDK_FAULTS_TIMEOUT`` seconds;
* RSS stays flat: growth between the end of a warm-up (a fifth of the frames) and
  the end stays under ``RSS_GROWTH_LIMIT``.

A failure message names the base seed, each failing frame's index and seed, what the
server sent and the traceback, and the command that reruns exactly those frames.

Failures of transport code this suite's authors may not change are *known*
(:data:`KNOWN`): counted and printed, not failed, each reproduced on its own by a
``strict`` xfail test in test_known_transport_faults.py (which starts failing once the
transport is fixed; then drop the entry here too).

Knobs (environment): ``FLWR_SDK_FAULTS_N`` (frames per transport; default
:data:`DEFAULT_N`, the full form is 10000), ``FLWR_SDK_FAULTS_SEED`` (default
:data:`DEFAULT_SEED`; ``random`` draws one and prints it), ``FLWR_SDK_FAULTS_ONLY``
(comma-separated frame indexes: rerun just those), ``FLWR_SDK_FAULTS_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from support.hostile_client import Outcome, client_config, drive, rss_bytes, tallied_logs
from support.hostile_frames import fuzz_frame
from support.hostile_server import HostileGrpcServer, HostileRestServer, HostileServer

from flwr_sdk.wire.lines import all_lines

DEFAULT_N = 150
"""Frames per transport in the default (CI) run."""
DEFAULT_SEED = "issue-16"
RSS_GROWTH_LIMIT = 48 * 1024 * 1024
"""Bytes of RSS growth allowed after the warm-up (allocator noise, caches)."""
TRANSPORTS = ("grpc-rere", "rest", "grpc-bidi")

KNOWN: dict[str, str] = {}
"""Open transport faults the fuzz tolerates: name → what happens and where to fix it.

Empty: every fault the fuzz found is fixed (missing-trailers, non-ascii-header,
close-lost-cancel, …) and now fails the run if it comes back; :func:`known_fault` still
names those classes in the failure report.
"""


def known_fault(outcome: Outcome) -> str | None:
    """The :data:`KNOWN` fault an outcome shows, or None."""
    if outcome.kind.startswith("known:"):
        return outcome.kind.removeprefix("known:")
    if outcome.kind == "hang" and "in recv_trailers" in outcome.detail:  # grpclib's wait
        return "missing-trailers"
    detail = outcome.detail
    if (
        outcome.kind.endswith("raw")
        and "UnicodeDecodeError" in detail
        and "_decode_headers" in detail
    ):
        return "non-ascii-header"
    return None


def _knobs() -> tuple[int, str, list[int] | None, float]:
    n = int(os.environ.get("FLWR_SDK_FAULTS_N", DEFAULT_N))
    seed = os.environ.get("FLWR_SDK_FAULTS_SEED", DEFAULT_SEED)
    if seed == "random":
        seed = secrets.token_hex(4)
    only = os.environ.get("FLWR_SDK_FAULTS_ONLY")
    indexes = [int(i) for i in only.split(",")] if only else None
    timeout = float(os.environ.get("FLWR_SDK_FAULTS_TIMEOUT", "4"))
    return n, seed, indexes, timeout


@dataclass
class Run:
    """What one transport's run saw."""

    transport: str
    seed: str
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str, str, Outcome]] = field(default_factory=list)
    rss_warm: int = 0
    rss_end: int = 0
    frames: int = 0
    seconds: float = 0.0
    logs: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One paragraph of figures."""
        growth = (self.rss_end - self.rss_warm) / 2**20
        return (
            f"{self.transport}: {self.frames} frames in {self.seconds:.1f} s, seed "
            f"{self.seed!r}; outcomes {dict(self.outcomes)}; RSS {self.rss_warm / 2**20:.0f}"
            f" -> {self.rss_end / 2**20:.0f} MiB ({growth:+.1f}); logs {dict(self.logs)}; "
            f"instructions dropped {dict(self.drops)}; known transport faults "
            f"{dict(self.known)}"
        )

    def report(self) -> str:
        """The failures, each with what reruns it."""
        lines = [self.summary(), ""]
        for index, frame_seed, description, outcome in self.failures[:10]:
            lines += [
                f"frame {index} (seed {frame_seed!r}): {outcome.kind}",
                f"  server sent: {description}",
                "  " + outcome.detail.replace("\n", "\n  "),
            ]
        indexes = ",".join(str(index) for index, *_ in self.failures[:50])
        lines.append(
            f"rerun: FLWR_SDK_FAULTS_SEED={self.seed} FLWR_SDK_FAULTS_ONLY={indexes} "
            f"pytest tests/faults/test_hostile_frames.py -k '{self.transport}'"
        )
        return "\n".join(lines)


def _server(transport: str) -> HostileServer:
    return HostileRestServer() if transport == "rest" else HostileGrpcServer()


async def _run(transport: str) -> Run:
    n, seed, indexes, timeout = _knobs()
    server = _server(transport)
    await server.start()
    config = client_config(transport, server.address)
    run = Run(transport, seed)
    chosen = indexes if indexes is not None else list(range(n))
    warm_up = max(len(chosen) // 5, 1)
    dropped_before = Counter[str]()
    for line in all_lines():
        dropped_before.update(line.dropped)
    started = time.monotonic()
    try:
        with tallied_logs() as tally:
            for position, index in enumerate(chosen):
                if position == warm_up:
                    gc.collect()
                    run.rss_warm = rss_bytes()
                frame_seed = f"{seed}:{index}"
                frame = fuzz_frame(frame_seed, transport)
                outcomes = await drive(server, frame, config, timeout)
                run.frames += 1
                for outcome in outcomes:
                    fault = known_fault(outcome)
                    if fault is not None and fault in KNOWN:
                        run.known[fault] += 1
                        run.outcomes["known"] += 1
                        continue
                    run.outcomes[outcome.kind] += 1
                    if outcome.failed or outcome.kind.endswith("raw"):
                        run.failures.append((index, frame_seed, frame.description, outcome))
            run.logs = tally.levels
    finally:
        await server.close()
    run.seconds = time.monotonic() - started
    gc.collect()
    run.rss_end = rss_bytes()
    if not run.rss_warm:
        run.rss_warm = run.rss_end
    for line in all_lines():
        run.drops.update(line.dropped)
    run.drops.subtract(dropped_before)
    run.drops = +run.drops
    return run


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fuzzed_frames(transport: str) -> None:
    """Every fuzzed frame ends typed or well, in time, with flat memory."""
    run = asyncio.run(_run(transport))
    print(run.summary())  # the figures, with pytest -s or -rA
    assert not run.failures, run.report()
    assert run.rss_end - run.rss_warm < RSS_GROWTH_LIMIT, run.report()
