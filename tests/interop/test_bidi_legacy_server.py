"""grpc-bidi against the real legacy ``start_server`` of flwr 1.12.0 and 1.42.0."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.federation import (
    assert_fedavg_rounds,
    free_port,
    processes,
    read_report,
    start_legacy_server,
    start_sdk_client,
    wait_for_port,
)
from support.flower_env import FlowerEnv

from flwr_sdk.server.tls_material import TLSMaterial, make_ca, make_server_certificate

pytestmark = pytest.mark.interop

ROUNDS = 3


@pytest.fixture(scope="module")
def flwr_1_42() -> FlowerEnv:
    """Virtualenv with flwr 1.42.0, whose legacy server still speaks grpc-bidi."""
    return FlowerEnv.get("1.42.0")


def _tls(tmp: Path) -> tuple[list[str], Path]:
    ca = make_ca()
    cert, key = make_server_certificate(ca)
    paths = TLSMaterial(ca.cert_pem, cert, key).write(tmp / "tls")
    server_args = [
        "--certificates",
        str(paths.ca_cert),
        str(paths.server_cert),
        str(paths.server_key),
    ]
    return server_args, paths.ca_cert


def _run(
    env: FlowerEnv, tmp: Path, host: str, client_args: list[str], server_args: list[str]
) -> None:
    port = free_port(host)
    bracket = f"[{host}]" if ":" in host else host
    address = f"{bracket}:{port}"
    with processes() as procs:
        server, report = start_legacy_server(env, tmp, address, rounds=ROUNDS, extra=server_args)
        procs.append(server)
        wait_for_port(host, port)
        clients = [start_sdk_client(tmp, address, i, *client_args) for i in range(2)]
        procs.extend(clients)
        assert server.wait(timeout=180) == 0, server.output()
        for client in clients:
            assert client.wait(timeout=30) == 0, client.output()
            assert "RETURNED" in client.output()
    assert_fedavg_rounds(read_report(report), ROUNDS)


def test_plaintext_ipv4(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_12, tmp_path, "127.0.0.1", [], [])


def test_plaintext_ipv6(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_12, tmp_path, "::1", [], [])


def test_tls_root_certificates_as_bytes(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    server_args, ca = _tls(tmp_path)
    _run(flwr_1_12, tmp_path, "127.0.0.1", ["--root-cert-bytes", str(ca)], server_args)


def test_tls_root_certificates_as_path(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    server_args, ca = _tls(tmp_path)
    _run(flwr_1_12, tmp_path, "127.0.0.1", ["--root-cert-path", str(ca)], server_args)


def test_plaintext_against_flwr_1_42(flwr_1_42: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_42, tmp_path, "127.0.0.1", [], [])


def test_example_client_runs_unchanged(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    """examples/numpy_client.py, run exactly as its docstring says, completes a run."""
    import subprocess
    import sys

    from support.federation import REPO, Process, sdk_env

    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        server, report = start_legacy_server(flwr_1_12, tmp_path, address, rounds=ROUNDS)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        for i in range(2):
            args = [sys.executable, "-m", "examples.numpy_client", "--server-address", address]
            args += ["--index", str(i)]
            procs.append(
                Process(
                    args,
                    tmp_path / f"example{i}.log",
                    lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw),
                )
            )
        assert server.wait(timeout=180) == 0, server.output()
        for proc in procs[1:]:
            assert proc.wait(timeout=30) == 0, proc.output()
        assert REPO.exists()
    assert_fedavg_rounds(read_report(report), ROUNDS)


def test_client_fn_gets_one_context_whose_state_persists(
    flwr_1_12: FlowerEnv, tmp_path: Path
) -> None:
    """client_fn runs per instruction; the node's Context (and its state) is the same."""
    import json

    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        server, report = start_legacy_server(flwr_1_12, tmp_path, address, rounds=ROUNDS)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        clients = [start_sdk_client(tmp_path, address, i, "--stateful") for i in range(2)]
        procs.extend(clients)
        assert server.wait(timeout=180) == 0, server.output()
        for client in clients:
            assert client.wait(timeout=30) == 0, client.output()
    result = read_report(report)
    assert_fedavg_rounds(result, ROUNDS)
    for index in range(2):
        seen = []
        for rnd in range(1, ROUNDS + 1):
            metrics = [json.loads(m) for m in result["fit"][str(rnd)]["client_metrics"]]
            (mine,) = [m for m in metrics if m["client_index"] == index]
            seen.append(mine)
        # Each round runs fit and evaluate: client_fn ran twice per round for this node.
        assert [m["state_calls"] for m in seen] == [1, 3, 5], seen
        assert len({m["context_id"] for m in seen}) == 1, seen
