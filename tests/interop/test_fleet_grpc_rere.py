"""grpc-rere against a real flwr 1.12.0 SuperLink running a real FedAvg ServerApp.

Assertions are on the ServerApp's per-round report: 3 rounds, 2 flwr-sdk nodes, every
fit/evaluate result, the aggregated parameters, and what each node's Context held.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import (
    INITIAL,
    assert_fedavg_rounds,
    free_port,
    processes,
    run_sdk_client,
    start_sdk_client,
)
from support.flower_env import FlowerEnv
from support.superlink import (
    FEDAVG_FAB_CONFIG,
    AuthMaterial,
    SuperExec,
    SuperLink,
    assert_context_rounds,
    assert_registers_again_after_restart,
    fleet_ping,
    make_auth,
    make_node_key,
    make_tls,
    run_federation,
    start_superexec,
    start_superlink,
)

pytestmark = pytest.mark.interop

ROUNDS = 3
RERE = ["--transport", "grpc-rere", "--report-context"]


@pytest.fixture(scope="module")
def plain_link(
    flwr_1_12: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink]:
    superlink = start_superlink(flwr_1_12, tmp_path_factory.mktemp("rere-plain"))
    try:
        yield superlink
    finally:
        superlink.process.stop()


@pytest.fixture(scope="module")
def plain_superexec(plain_link: SuperLink) -> Iterator[SuperExec]:
    superexec = start_superexec(plain_link)
    try:
        yield superexec
    finally:
        superexec.process.stop()


@pytest.fixture(scope="module")
def auth_link(
    flwr_1_12: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SuperLink, AuthMaterial]]:
    work = tmp_path_factory.mktemp("rere-auth")
    tls = make_tls(work / "tls")
    auth = make_auth(work / "keys", nodes=2)
    superlink = start_superlink(flwr_1_12, work, tls=tls, auth=auth)
    try:
        yield superlink, auth
    finally:
        superlink.process.stop()


def test_plaintext_flwr_run_with_fab(
    plain_link: SuperLink, plain_superexec: SuperExec, tmp_path: Path
) -> None:
    """`flwr run` (FAB): GetFab + run_config = FAB defaults overlaid with overrides."""
    overrides = {"label": "overridden", "nested.lr": 0.25, "not-in-app": 7}
    result = run_federation(
        plain_link, tmp_path, [RERE, RERE], superexec=plain_superexec, run_config=overrides
    )
    assert_fedavg_rounds(result.report, ROUNDS)
    expected = {**FEDAVG_FAB_CONFIG, "label": "overridden", "nested.lr": 0.25}
    # report-path is overridden per run too; the node must see the ServerApp's value.
    expected["report-path"] = result.report["run_config"]["report-path"]
    assert_context_rounds(result.report, ROUNDS, expected)
    log = plain_link.log_text()
    for node_id in result.report["fit"]["1"]["by_node"]:
        assert f"[Fleet.CreateNode] Created node_id={node_id}" in log
        assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in log


def test_plaintext_server_app_without_fab(plain_link: SuperLink, tmp_path: Path) -> None:
    """`flower-server-app <dir>`: no FAB, so run_config is empty (as in Flower)."""
    result = run_federation(plain_link, tmp_path, [RERE, RERE])
    assert_fedavg_rounds(result.report, ROUNDS)
    assert_context_rounds(result.report, ROUNDS, {})


def test_fit_exception_becomes_error_reply_and_node_keeps_serving(
    plain_link: SuperLink, tmp_path: Path
) -> None:
    result = run_federation(plain_link, tmp_path, [[*RERE, "--fail-fit-round", "2"], RERE])
    report = result.report
    assert report.get("done"), report
    fit1, fit2, fit3 = (report["fit"][str(r)] for r in (1, 2, 3))
    assert (fit1["results"], fit1["failures"]) == (2, 0), fit1
    # Round 2: the ServerApp received an Error reply from node 0 (Flower's reason format).
    assert (fit2["results"], fit2["failures"]) == (1, 1), fit2
    (message,) = fit2["failure_messages"]
    assert "Message contains an Error" in message, message
    assert "<class 'RuntimeError'>:<'injected failure in round 2'>" in message, message
    failing_node = next(n for n, m in fit1["by_node"].items() if m["client_index"] == 0)
    assert failing_node not in fit2["by_node"], fit2
    # Round 3: the same node answers normally again.
    assert (fit3["results"], fit3["failures"]) == (2, 0), fit3
    assert fit3["by_node"][failing_node]["client_index"] == 0
    assert fit3["by_node"][failing_node]["seen_round"] == 3
    # Evaluate was never affected.
    for rnd in (1, 2, 3):
        assert report["evaluate"][str(rnd)]["results"] == 2, report["evaluate"]
    # Aggregation: round 2 only had node 1 (adds 2); rounds 1 and 3 add 5/3 each.
    step = 5.0 / 3.0
    got = fit3["parameters"][0][0]
    assert abs(got - (float(INITIAL[0][0]) + step + 2.0 + step)) < 1e-5, got
    assert "Client code raised RuntimeError" in result.client_logs[0]


def test_tls(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    superlink = start_superlink(flwr_1_12, tmp_path / "link", tls=tls)
    try:
        args_bytes = [*RERE, "--root-cert-bytes", str(tls.ca_cert)]
        args_path = [*RERE, "--root-cert-path", str(tls.ca_cert)]
        result = run_federation(superlink, tmp_path, [args_bytes, args_path])
    finally:
        superlink.process.stop()
    assert_fedavg_rounds(result.report, ROUNDS)


def _auth_args(auth: AuthMaterial, index: int, superlink: SuperLink) -> list[str]:
    assert superlink.tls is not None
    key = auth.nodes[index]
    return [
        *RERE,
        "--root-cert-path",
        str(superlink.tls.ca_cert),
        "--auth-private-key",
        str(key.private_path),
        "--auth-public-key",
        str(key.public_path),
    ]


def test_node_authentication(auth_link: tuple[SuperLink, AuthMaterial], tmp_path: Path) -> None:
    superlink, auth = auth_link
    result = run_federation(
        superlink, tmp_path, [_auth_args(auth, 0, superlink), _auth_args(auth, 1, superlink)]
    )
    assert_fedavg_rounds(result.report, ROUNDS)
    assert_context_rounds(result.report, ROUNDS, {})
    log = superlink.log_text()
    assert "Node authentication enabled with 2 known public keys" in log
    # DeleteNode passed the HMAC check (the servicer logs only after the interceptor).
    for node_id in result.report["fit"]["1"]["by_node"]:
        assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in log


def test_unlisted_key_raises_authentication_error_fast(
    auth_link: tuple[SuperLink, AuthMaterial], tmp_path: Path
) -> None:
    superlink, _ = auth_link
    assert superlink.tls is not None
    stranger = make_node_key(tmp_path / "keys", "stranger")
    code, output, elapsed = run_sdk_client(
        tmp_path,
        superlink.fleet_address,
        *RERE,
        "--root-cert-path",
        str(superlink.tls.ca_cert),
        "--auth-private-key",
        str(stranger.private_path),
        "--auth-public-key",
        str(stranger.public_path),
    )
    assert code == 3, output
    assert "RAISED AuthenticationError" in output, output
    assert "UNAUTHENTICATED" in output, output
    assert "retrying" not in output, output  # never retried
    assert elapsed < 10.0, (elapsed, output)


def test_keys_against_superlink_without_auth(plain_link: SuperLink, tmp_path: Path) -> None:
    """The server sends no key: a clear error, and the node it created is deleted again."""
    key = make_node_key(tmp_path / "keys", "lonely")
    code, output, elapsed = run_sdk_client(
        tmp_path,
        plain_link.fleet_address,
        *RERE,
        "--auth-private-key",
        str(key.private_path),
        "--auth-public-key",
        str(key.public_path),
    )
    assert code == 3, output
    assert "RAISED AuthenticationError" in output and "sent no public key" in output, output
    node_id = output.split("Registered with the SuperLink as node ", 1)[1].split()[0]
    assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in plain_link.log_text()
    assert elapsed < 10.0, (elapsed, output)


def test_sigterm_deletes_node_and_exits(plain_link: SuperLink, tmp_path: Path) -> None:
    with processes() as procs:
        client = start_sdk_client(tmp_path, plain_link.fleet_address, 0, *RERE)
        procs.append(client)
        deadline = time.monotonic() + 30
        while "Registered with the SuperLink as node" not in client.output():
            assert time.monotonic() < deadline, client.output()
            assert client.proc.poll() is None, client.output()
            time.sleep(0.2)
        node_id = client.output().split("as node ", 1)[1].split()[0]
        time.sleep(1.0)  # let it poll
        sent = time.monotonic()
        client.signal(signal.SIGTERM)
        assert client.wait(timeout=5) == 0, client.output()
        exited = time.monotonic() - sent
    assert exited < 5.0, exited
    assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in plain_link.log_text()
    assert fleet_ping(plain_link, int(node_id)) is False


def test_give_up_exits_promptly(tmp_path: Path) -> None:
    """No server: RetriesExhaustedError after max_retries, then the process exits at once."""
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "support" / "sdk_client.py"),
            "--address",
            f"127.0.0.1:{port}",
            *RERE,
            "--max-retries",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "RAISED RetriesExhaustedError" in done.stderr, done.stderr
    assert done.stderr.count("retrying in") == 2, done.stderr
    # 2 waits of at most 1 s and 2 s (full jitter), plus interpreter start-up.
    assert elapsed < 15.0, elapsed


def test_superlink_restart_registers_a_new_node(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    """After a restart the SuperLink has forgotten the node (Ping -> success=false):
    the node registers again instead of polling forever as an unknown node."""
    assert_registers_again_after_restart(flwr_1_12, tmp_path, RERE, announced="registering again")
