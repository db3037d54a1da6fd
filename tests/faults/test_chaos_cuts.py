"""Issue 16: connection cuts at seeded random byte offsets, and a stall, on a real server.

A real Flower 1.12.0 server (legacy server for grpc-bidi; SuperLink with the
round-recording ServerApp for grpc-rere and rest) behind the chaos proxy; our client
(``sdk_client.py``) connects through it. After a first round:

* ``CUTS`` times: the proxy closes the connection that carries the N-th byte from now
  (N seeded in [1, 4096], printed), and the node must serve another round within 60 s,
  never exiting; every round's result must be the node's answer for that round (no
  wrong result);
* one stall of ``STALL`` seconds (sockets open, no byte moves): the node serves a round
  again within 60 s of the stall's end.

Figures printed (``-s``): the offsets, seconds from each cut to the next round served,
seconds from the stall's end to the next round, the proxy's counters.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.chaos_proxy import ChaosProxy
from support.chaos_run import fit_rounds, pick, served_rounds, start_chaos_app, wait_until
from support.federation import free_port, processes, start_legacy_server, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import start_superlink

pytestmark = pytest.mark.interop

CUTS = pick(3, 30)
STALL = pick(5.0, 60.0)
BACK_WITHIN = 60.0
TRANSPORTS = pick(("grpc-bidi",), ("grpc-bidi", "grpc-rere", "rest"))
"""The CI form cuts grpc-bidi (~10 s); the full form grpc-rere and rest too (a minute
each: a cut waits for pulls to move its bytes, and a cut that loses a pull's answer
loses that round's instruction until the round timeout)."""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cuts_at_random_offsets_and_a_stall(
    flwr_1_12: FlowerEnv, tmp_path: Path, transport: str
) -> None:
    with processes() as procs:
        if transport == "grpc-bidi":
            address = f"127.0.0.1:{free_port()}"
            server, report = start_legacy_server(
                flwr_1_12,
                tmp_path,
                address,
                rounds=100_000,
                clients=1,
                extra=["--round-timeout", "10"],
            )
            procs.append(server)
            target = int(address.rsplit(":", 1)[1])
        else:
            link = start_superlink(flwr_1_12, tmp_path / "superlink", fleet_api_type=transport)
            procs.append(link.process)
            report = tmp_path / "rounds.json"
            server = start_chaos_app(link, report, round_timeout=10)
            procs.append(server)
            target = link.fleet_port
        with ChaosProxy("127.0.0.1", target, seed=f"cuts-{transport}") as proxy:
            address = proxy.address if transport != "rest" else f"http://{proxy.address}"
            client = start_sdk_client(
                tmp_path, address, 0, "--transport", transport, "--fit-delay", "0.2"
            )
            procs.append(client)
            alive = (server, client)
            wait_until(lambda: served_rounds(report) >= 1, 60, "a first round", alive=alive)
            offsets: list[int] = []
            backs: list[float] = []
            for _ in range(CUTS):
                cuts = proxy.cuts
                offsets.append(proxy.cut_after())
                wait_until(lambda c=cuts: proxy.cuts > c, 60, "the cut", alive=alive)  # type: ignore[misc]
                served = served_rounds(report)
                backs.append(
                    wait_until(
                        lambda s=served: served_rounds(report) > s,  # type: ignore[misc]
                        BACK_WITHIN,
                        "a round after the cut",
                        alive=alive,
                    )
                )
            served = served_rounds(report)
            proxy.stall(STALL)
            time.sleep(STALL)
            after_stall = wait_until(
                lambda: served_rounds(report) > served,
                BACK_WITHIN,
                "a round after the stall",
                alive=alive,
            )
            figures = {
                "transport": transport,
                "cut offsets": offsets,
                "cut -> round s": [round(b, 2) for b in backs],
                "stall s": STALL,
                "stall end -> round s": round(after_stall, 2),
                "rounds served": served_rounds(report),
                **proxy.figures(),
            }
            print(f"\ncuts {transport}: {figures}")
            assert client.proc.poll() is None, client.output()
    # No wrong result: every result answers its own round.
    for rnd, fit in fit_rounds(report).items():
        if transport == "grpc-bidi":
            seen = [json.loads(m)["seen_round"] for m in fit.get("client_metrics", [])]
        else:
            seen = fit.get("seen", [])
        assert all(s == rnd for s in seen), (rnd, fit)
