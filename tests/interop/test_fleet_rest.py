"""rest against a real flwr 1.12.0 SuperLink (REST Fleet API) running a FedAvg ServerApp.

The 1.12 SuperLink cannot serve REST over TLS, so the https test puts a TLS-terminating
proxy (tests/support/tls_proxy.py) in front of a plaintext REST SuperLink.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import assert_fedavg_rounds, free_port, processes
from support.flower_env import FlowerEnv
from support.superlink import (
    SuperExec,
    SuperLink,
    assert_context_rounds,
    make_tls,
    run_federation,
    start_superexec,
    start_superlink,
    start_tls_proxy,
)

pytestmark = pytest.mark.interop

ROUNDS = 3
REST = ["--transport", "rest", "--report-context"]
SDK_CLIENT = Path(__file__).resolve().parents[1] / "support" / "sdk_client.py"


@pytest.fixture(scope="module")
def rest_link(
    flwr_1_12: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink]:
    superlink = start_superlink(
        flwr_1_12, tmp_path_factory.mktemp("rest-link"), fleet_api_type="rest"
    )
    try:
        yield superlink
    finally:
        superlink.process.stop()


@pytest.fixture(scope="module")
def rest_superexec(rest_link: SuperLink) -> Iterator[SuperExec]:
    superexec = start_superexec(rest_link)
    try:
        yield superexec
    finally:
        superexec.process.stop()


def test_plaintext_flwr_run(
    rest_link: SuperLink, rest_superexec: SuperExec, tmp_path: Path
) -> None:
    """A FAB run over REST: GetRun works (single-slash paths); the 1.12 SuperLink's
    get-fab answers HTTP 500, which the node treats as "no FAB" and keeps training."""
    overrides = {"label": "overridden", "nested.lr": 0.25}
    result = run_federation(
        rest_link, tmp_path, [REST, REST], superexec=rest_superexec, run_config=overrides
    )
    assert_fedavg_rounds(result.report, ROUNDS)
    # No FAB: the run config is the run's override config, as GetRun delivered it.
    expected = {**overrides, "report-path": result.report["run_config"]["report-path"]}
    assert_context_rounds(result.report, ROUNDS, expected)
    for log in result.client_logs:
        assert "POST http://" in log and "/api/v0/fleet/get-run" in log, log
        assert "//api" not in log.replace("http://", ""), log
        assert "GetFab" in log and "HTTP 500" in log and "running without a FAB" in log, log
        assert "delete-node" in log, log


def test_https_through_tls_proxy(rest_link: SuperLink, tmp_path: Path) -> None:
    """https:// with root certificates as bytes (node 0) and as a path (node 1)."""
    tls = make_tls(tmp_path / "tls")
    proxy, address = start_tls_proxy(rest_link, tls)
    try:
        result = run_federation(
            rest_link,
            tmp_path,
            [
                [*REST, "--root-cert-bytes", str(tls.ca_cert)],
                [*REST, "--root-cert-path", str(tls.ca_cert)],
            ],
            address=address,
        )
    finally:
        proxy.stop()
    assert_fedavg_rounds(result.report, ROUNDS)
    assert_context_rounds(result.report, ROUNDS, {})
    for log in result.client_logs:
        assert f"POST {address}/api/v0/fleet/pull-task-ins" in log, log


def _run_client(*args: str, timeout: float = 60.0) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SDK_CLIENT), *args], capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stderr, time.monotonic() - started


def test_https_insecure_false_uses_system_trust_store(rest_link: SuperLink, tmp_path: Path) -> None:
    """Without root certificates the system store is used, which does not know our CA."""
    tls = make_tls(tmp_path / "tls")
    with processes() as procs:
        proxy, address = start_tls_proxy(rest_link, tls)
        procs.append(proxy)
        code, output, elapsed = _run_client(
            "--address", address, *REST, "--insecure", "false", "--max-retries", "1"
        )
    assert code == 3, output
    assert "RAISED TLSError" in output and "not trusted" in output, output
    assert elapsed < 15.0, elapsed


def test_give_up_exits_promptly(tmp_path: Path) -> None:
    port = free_port()
    code, output, elapsed = _run_client(
        "--address", f"http://127.0.0.1:{port}", *REST, "--max-retries", "2"
    )
    assert code == 3, output
    assert "RAISED RetriesExhaustedError" in output, output
    assert output.count("retrying in") == 2, output
    assert elapsed < 15.0, elapsed
