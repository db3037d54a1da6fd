"""Issue 16: SIGKILL + restart of a real Flower 1.12.0 server mid-run; rounds complete after.

* grpc-bidi: the legacy server (``flwr.server.start_server``) is SIGKILLed (its whole
  process group) after the node has served rounds, and started again on the same
  address; the last one runs 3 rounds with our node to the end.
* grpc-rere / rest: the SuperLink and its ServerApp are SIGKILLed and a new SuperLink
  (in-memory state: it has forgotten the node) starts on the same ports with a new run;
  the node must register again and serve its rounds.

``RESTARTS`` kills per run (1 in the CI form, 5 in the full form); the CI form restarts
a grpc-rere SuperLink, the full form a rest one too. Figures printed
(``-s``): per restart, seconds from the new server listening to the node's first round
served there; rounds served in all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.chaos_run import pick, served_rounds, start_chaos_app, wait_until
from support.federation import (
    free_port,
    processes,
    read_report,
    start_legacy_server,
    start_sdk_client,
)
from support.flower_env import FlowerEnv
from support.superlink import start_superlink

pytestmark = pytest.mark.interop

RESTARTS = pick(1, 5)
BACK_WITHIN = 60.0
ROUND_TIMEOUT = 10.0
"""Seconds after the restarted server listens by which the node must serve a round."""


def test_legacy_server_sigkill_restart_rounds_complete(
    flwr_1_12: FlowerEnv, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    recoveries: list[float] = []
    with processes() as procs:
        server, report = start_legacy_server(
            flwr_1_12, tmp_path, address, rounds=100_000, clients=1, name="server0"
        )
        procs.append(server)
        client = start_sdk_client(
            tmp_path, address, 0, "--transport", "grpc-bidi", "--fit-delay", "0.2"
        )
        procs.append(client)
        wait_until(lambda: served_rounds(report) >= 1, 60, "a first round", alive=(client,))
        for restart in range(1, RESTARTS + 1):
            server.stop()  # SIGKILL to its process group
            assert client.proc.poll() is None, client.output()
            last = restart == RESTARTS
            server, report = start_legacy_server(
                flwr_1_12,
                tmp_path,
                address,
                rounds=3 if last else 100_000,
                clients=1,
                name=f"server{restart}",
            )
            procs.append(server)
            recoveries.append(
                wait_until(
                    lambda r=report: served_rounds(r) >= 1,  # type: ignore[misc]
                    BACK_WITHIN,
                    f"a round after restart {restart}",
                    alive=(client,),
                )
            )
        assert server.wait(timeout=120) == 0, server.output()
        result = read_report(report)
        assert client.proc.poll() is None or client.proc.returncode == 0, client.output()
    print(f"\nrestart legacy grpc-bidi: back after {[round(r, 2) for r in recoveries]} s")
    assert result.get("done"), result
    for rnd in ("1", "2", "3"):
        assert result["fit"][rnd]["results"] == 1, result["fit"]
        assert result["fit"][rnd]["failures"] == 0, result["fit"]


@pytest.mark.parametrize("transport", pick(["grpc-rere"], ["grpc-rere", "rest"]))
def test_superlink_sigkill_restart_node_serves_again(
    flwr_1_12: FlowerEnv, tmp_path: Path, transport: str
) -> None:
    recoveries: list[float] = []
    served = 0
    with processes() as procs:
        link = start_superlink(flwr_1_12, tmp_path / "link0", fleet_api_type=transport)
        procs.append(link.process)
        report = tmp_path / "rounds0.json"
        app = start_chaos_app(link, report, round_timeout=ROUND_TIMEOUT, name="app0")
        procs.append(app)
        client = start_sdk_client(
            tmp_path, link.fleet_address, 0, "--transport", transport, "--fit-delay", "0.2"
        )
        procs.append(client)
        wait_until(
            lambda: served_rounds(report) >= 2, 60, "rounds before the kill", alive=(client,)
        )
        for restart in range(1, RESTARTS + 1):
            served += served_rounds(report)
            app.stop()
            link.process.stop()  # SIGKILL to the SuperLink's process group
            assert client.proc.poll() is None, client.output()
            time.sleep(0.5)
            link = start_superlink(
                flwr_1_12,
                tmp_path / f"link{restart}",
                fleet_api_type=transport,
                ports=link.ports,
            )
            procs.append(link.process)
            report = tmp_path / f"rounds{restart}.json"
            app = start_chaos_app(link, report, round_timeout=ROUND_TIMEOUT, name=f"app{restart}")
            procs.append(app)
            recoveries.append(
                wait_until(
                    lambda r=report: served_rounds(r) >= 2,  # type: ignore[misc]
                    BACK_WITHIN,
                    f"2 rounds after restart {restart}",
                    alive=(client, link.process),
                )
            )
        served += served_rounds(report)
        assert client.proc.poll() is None, client.output()
    print(
        f"\nrestart SuperLink {transport}: 2 rounds back after "
        f"{[round(r, 2) for r in recoveries]} s; {served} rounds served"
    )
