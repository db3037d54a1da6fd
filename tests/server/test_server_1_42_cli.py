"""``flwr-sdk client`` against ``flwr-sdk server --wire 1.42``, over HTTP and over gRPC.

The clients are given no ``--wire``: they detect the 1.42 line from the server (as from
a real 1.42 SuperLink), complete the FedAvg rounds and exit 0 on SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.federation import Process, free_port, processes, read_report, sdk_env, wait_for_port

ROUNDS = 2
STEP = 5.0 / 3.0  # FedAvg of +1 (10 examples) and +2 (20 examples)


def _cli(tmp: Path, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
    command = [sys.executable, "-m", "flwr_sdk.cli", *args]
    environ = {**sdk_env(), **(env or {})}
    return Process(
        command,
        tmp / f"{name}-{time.monotonic_ns()}.log",
        lambda a, **kw: subprocess.Popen(a, env=environ, **kw),
    )


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_cli_client_against_cli_server_wire_1_42(tmp_path: Path, transport: str) -> None:
    port = free_port()
    report = tmp_path / "report.json"
    with processes() as procs:
        server = _cli(
            tmp_path,
            "server",
            "-v",
            "server",
            "--transport",
            transport,
            "--wire",
            "1.42",
            "--port",
            str(port),
            "--rounds",
            str(ROUNDS),
            "--report",
            str(report),
        )
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        address = f"{'http://' if transport == 'rest' else ''}127.0.0.1:{port}"
        for index in range(2):
            client = ("client", "--app", "examples.cli_client:client_fn")
            client += ("--server-address", address, "--transport", transport)
            env = {"FLWR_SDK_EXAMPLE_INDEX": str(index)}
            procs.append(_cli(tmp_path, f"client{index}", *client, env=env))
        assert server.wait(90) == 0, server.output()
        assert "Flower 1.42 Fleet API" in server.output()
        for proc in procs[1:]:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.output()
            assert "SuperLink speaks the Flower 1.42 Fleet API" in proc.output()
    rounds = read_report(report)["rounds"]
    for rnd in range(1, ROUNDS + 1):
        r = rounds[str(rnd)]
        assert r["fit_results"] == 2 and r["fit_failures"] == 0, r
        assert abs(r["parameters"][0][0] - rnd * STEP) < 1e-5, r
        assert r["evaluate_results"] == 2 and r["evaluate_loss"] == 1.5, r
