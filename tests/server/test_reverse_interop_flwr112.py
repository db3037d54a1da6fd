"""Reverse interop: the REAL flwr 1.12.0 ``start_client`` against our reference server.

Each test runs a 3-round FedAvg federation of two real Flower clients (isolated venv)
and asserts the server's per-round results: both nodes answered fit and evaluate, the
aggregated model moved by exactly the FedAvg step, the fit config reached the clients.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from server_harness import (
    assert_shift_rounds,
    auth_config,
    server_thread,
    shift_strategy,
    start_flwr_client,
    stop_fleet_clients,
    tls_config,
)
from support.federation import processes
from support.flower_env import FlowerEnv

from flwr_sdk.server import ServerConfig

pytestmark = pytest.mark.interop

ROUNDS = 3


def _run(
    env: FlowerEnv,
    tmp: Path,
    config: ServerConfig,
    client_args: list[list[str]],
) -> None:
    with server_thread(config) as server, processes() as procs:
        for i, extra in enumerate(client_args):
            procs.append(
                start_flwr_client(
                    env, tmp, server.address, i, "--transport", config.transport, *extra
                )
            )
        server.start_rounds()
        history = server.history(timeout=240)
        assert_shift_rounds(history, ROUNDS)
        if config.transport == "grpc-bidi":
            # ReconnectIns ended every session: the clients return and exit 0.
            for proc in procs:
                assert proc.wait(60) == 0, proc.output()
                assert "RETURNED" in proc.output()
        else:
            # Fleet clients poll forever; SIGTERM makes a 1.12 client leave with DeleteNode.
            # Flower 1.12's handler raises StopIteration wherever the signal lands; inside
            # message handling that becomes "generator raised StopIteration" and the client
            # exits without DeleteNode (its bug). Let every client finish its last reply and
            # go back to its 3 s idle poll first.
            time.sleep(4)
            assert stop_fleet_clients(procs) == [0] * len(procs)
            # Every node left with DeleteNode (the server may still be handling the last
            # request when the client process is gone, so give it a moment).
            deadline = time.monotonic() + 10
            nodes = server.in_loop(lambda: dict(server.server.state.nodes))  # type: ignore[union-attr]
            while nodes and time.monotonic() < deadline:
                time.sleep(0.2)
                nodes = server.in_loop(lambda: dict(server.server.state.nodes))  # type: ignore[union-attr]
            logs = "\n".join(proc.output()[-1500:] for proc in procs)
            assert nodes == {}, f"{nodes}\n{logs}"


def _config(transport: str, **kwargs: object) -> ServerConfig:
    return ServerConfig(
        transport=transport,
        port=0,
        num_rounds=ROUNDS,
        strategy=shift_strategy(2),
        round_timeout=120,
        record_parameters=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_grpc_bidi(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_12, tmp_path, _config("grpc-bidi"), [[], []])


def test_grpc_bidi_tls(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    args = ["--root-cert", str(ca), "--root-cert-bytes"]
    _run(flwr_1_12, tmp_path, _config("grpc-bidi", tls=tls), [args, args])


def test_grpc_rere(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_12, tmp_path, _config("grpc-rere"), [[], []])


def test_grpc_rere_tls(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    args = ["--root-cert", str(ca)]
    _run(flwr_1_12, tmp_path, _config("grpc-rere", tls=tls), [args, args])


def test_grpc_rere_tls_node_auth(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    auth, keys = auth_config(tmp_path, 2)
    client_args = [
        ["--root-cert", str(ca), "--auth-private-key", str(priv), "--auth-public-key", str(pub)]
        for priv, pub in keys
    ]
    _run(flwr_1_12, tmp_path, _config("grpc-rere", tls=tls, auth=auth), client_args)


def test_rest(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_12, tmp_path, _config("rest"), [[], []])


def test_rest_tls(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    args = ["--root-cert", str(ca)]  # the 1.12 REST client takes a path only
    _run(flwr_1_12, tmp_path, _config("rest", tls=tls), [args, args])
