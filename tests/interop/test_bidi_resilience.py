"""grpc-bidi: reconnection, give-up, failing user code and stop signals, against real
Flower 1.12.0 legacy servers."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from support.federation import (
    INITIAL,
    assert_fedavg_rounds,
    free_port,
    processes,
    read_report,
    start_legacy_server,
    start_sdk_client,
    wait_for_port,
)
from support.flower_env import FlowerEnv

pytestmark = pytest.mark.interop


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _fit_rounds_done(report: Path) -> int:
    try:
        return len(json.loads(report.read_text())["fit"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_server_killed_and_restarted_run_completes(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        # Far more rounds than can finish before the kill below.
        first, first_report = start_legacy_server(
            flwr_1_12, tmp_path, address, rounds=100_000, name="first"
        )
        procs.append(first)
        wait_for_port("127.0.0.1", port)
        clients = [start_sdk_client(tmp_path, address, i) for i in range(2)]
        procs.extend(clients)
        _wait_for(lambda: _fit_rounds_done(first_report) >= 1, 90, "round 1 on the first server")
        first.proc.kill()
        first.proc.wait(timeout=10)
        assert all(c.proc.poll() is None for c in clients), "clients must outlive the server"

        # No wait for it to listen: the waiting clients can finish its 3 rounds before a
        # listening check runs; its exit code below says whether it served them.
        second, second_report = start_legacy_server(
            flwr_1_12, tmp_path, address, name="second", wait=False
        )
        procs.append(second)
        assert second.wait(timeout=180) == 0, second.output()
        for client in clients:
            assert client.wait(timeout=30) == 0, client.output()
            log = client.output()
            assert "Lost the connection" in log or "retrying" in log, log
    assert_fedavg_rounds(read_report(second_report), 3)


def test_max_retries_gives_up_in_time_without_server(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        client = start_sdk_client(tmp_path, f"127.0.0.1:{port}", 0, "--max-retries", "2")
        procs.append(client)
        assert client.wait(timeout=30) == 3, client.output()
        log = client.output()
    match = re.search(r"RAISED (\w+) after ([\d.]+)s", log)
    assert match, log
    assert match.group(1) == "RetriesExhaustedError", log
    # 3 attempts; full-jitter waits are at most 1 s and 2 s.
    assert float(match.group(2)) <= 3.0 + 1.0, log
    assert len(re.findall(r"retrying in", log)) == 2, log


@pytest.mark.exclusive  # times how long the node takes to give up
def test_max_wait_time_bounds_total_time(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        client = start_sdk_client(tmp_path, f"127.0.0.1:{port}", 0, "--max-wait-time", "2.5")
        procs.append(client)
        assert client.wait(timeout=30) == 3, client.output()
        log = client.output()
    match = re.search(r"RAISED (\w+) after ([\d.]+)s", log)
    assert match and match.group(1) == "RetriesExhaustedError", log
    assert float(match.group(2)) <= 2.5 + 1.0, log


def test_fit_exception_fails_the_round_and_node_serves_next_round(
    flwr_1_12: FlowerEnv, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        server, report = start_legacy_server(flwr_1_12, tmp_path, address, rounds=3)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        healthy = start_sdk_client(tmp_path, address, 0)
        faulty = start_sdk_client(tmp_path, address, 1, "--fail-fit-round", "2")
        procs.extend([healthy, faulty])
        assert server.wait(timeout=180) == 0, server.output()
        for client in (healthy, faulty):
            assert client.wait(timeout=30) == 0, client.output()
        log = faulty.output()
    assert "injected failure in round 2" in log and "Traceback" in log, log
    result = read_report(report)
    assert result["fit"]["1"]["results"] == 2 and result["fit"]["1"]["failures"] == 0
    assert result["fit"]["2"]["results"] == 1 and result["fit"]["2"]["failures"] == 1
    assert result["fit"]["3"]["results"] == 2 and result["fit"]["3"]["failures"] == 0
    # Round 2 aggregated client 0 alone (+1); rounds 1 and 3 both clients (+5/3).
    expected = 5.0 / 3.0 + 1.0 + 5.0 / 3.0
    for got, initial in zip(result["fit"]["3"]["parameters"], INITIAL, strict=False):
        np.testing.assert_allclose(np.asarray(got), initial + expected, rtol=1e-5)


@pytest.mark.exclusive  # times the exit after a signal
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_ends_client_promptly(
    flwr_1_12: FlowerEnv, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        # The server waits for 2 clients; the single client idles on its Join stream.
        server, _ = start_legacy_server(flwr_1_12, tmp_path, address, rounds=1)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        client = start_sdk_client(tmp_path, address, 0)
        procs.append(client)
        _wait_for(lambda: "Connected to" in client.output(), 30, "the client to connect")
        started = time.monotonic()
        client.signal(sig)
        code = client.wait(timeout=10)
        elapsed = time.monotonic() - started
        log = client.output()
    assert code == 0, log
    assert elapsed < 3.0, (elapsed, log)
    assert f"Received {sig.name}" in log, log


def test_assert_helper_rejects_wrong_rounds() -> None:
    """The shared assertion helper fails on a report with a failure (guards the guards)."""
    report = {
        "done": True,
        "fit": {"1": {"results": 1, "failures": 1, "num_examples": [10], "client_metrics": []}},
        "evaluate": {},
    }
    with pytest.raises(AssertionError):
        assert_fedavg_rounds(report, 1)
