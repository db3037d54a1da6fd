"""Issue 16, "done when" 4: a SuperLink that answers "database is locked" a few times.

A real Flower 1.12.0 SuperLink (grpc-rere, rest) with the round-recording ServerApp,
behind a protocol-aware proxy (``LockedFleetProxy`` / ``LockedRestProxy`` of
``support/chaos_run.py``) that ends the node's next ``LOCKS`` PullTaskIns calls with
gRPC UNKNOWN "database is locked" (REST: HTTP 500, what the SuperLink's REST API
answers when its state raises) and passes everything else through. The node must not
give up: it keeps serving and a round completes after the locked answers.

The CI form runs grpc-rere; the full form rest too, and locks ``BURSTS`` times a run.
Figures printed (``-s``): locked answers sent, node pulls seen, seconds from the first
locked answer to the next round served, rounds served, retries the node logged.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.chaos_run import (
    LockedFleetProxy,
    LockedRestProxy,
    pick,
    served_rounds,
    start_chaos_app,
    wait_until,
)
from support.federation import processes, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import start_superlink

pytestmark = pytest.mark.interop

LOCKS = 3
"""Locked answers in a row: fewer than the retry table's bound on transient errors."""
BURSTS = pick(1, 3)


@pytest.mark.parametrize("transport", pick(["grpc-rere"], ["grpc-rere", "rest"]))
def test_database_is_locked_a_few_times_round_completes(
    flwr_1_12: FlowerEnv, tmp_path: Path, transport: str
) -> None:
    link = start_superlink(flwr_1_12, tmp_path / "superlink", fleet_api_type=transport)
    proxy_type = LockedFleetProxy if transport == "grpc-rere" else LockedRestProxy
    recoveries: list[float] = []
    with processes() as procs, proxy_type("127.0.0.1", link.fleet_port) as proxy:
        procs.append(link.process)
        client = start_sdk_client(
            tmp_path, proxy.address, 0, "--transport", transport, "--fit-delay", "0.2"
        )
        procs.append(client)
        report = tmp_path / "rounds.json"
        app = start_chaos_app(link, report, round_timeout=20)
        procs.append(app)
        wait_until(lambda: served_rounds(report) >= 1, 60, "a first round", alive=(client,))
        for burst in range(BURSTS):
            served = served_rounds(report)
            proxy.lock(LOCKS)  # the pulls for the next round's instruction
            wait_until(
                lambda b=burst: proxy.locked >= LOCKS * (b + 1),  # type: ignore[misc]
                60,
                f"{LOCKS} locked answers",
                alive=(client,),
            )
            first_locked = proxy.locked_at[LOCKS * burst]
            wait_until(
                lambda s=served: served_rounds(report) > s + 1,  # type: ignore[misc]
                60,
                "a round after the locked answers",
                alive=(client,),
            )
            recoveries.append(time.monotonic() - first_locked)
        assert client.proc.poll() is None, client.output()
        log = client.output()
        figures = {
            "transport": transport,
            "locked answers": proxy.locked,
            "node pulls": proxy.pulls,
            "first locked -> round served s": [round(r, 2) for r in recoveries],
            "rounds served": served_rounds(report),
            "retries logged": log.count("retrying in"),
        }
    print(f"\ndatabase is locked {transport}: {figures}")
    assert proxy.locked == LOCKS * BURSTS, figures
    assert "RAISED" not in log, log
