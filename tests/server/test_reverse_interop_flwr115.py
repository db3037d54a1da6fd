"""Reverse interop: the REAL flwr 1.15.2 ``start_client`` against our reference server.

The server speaks the Flower 1.15 wire (``ServerConfig(wire="1.15")``). Each test runs a
3-round FedAvg federation of two real Flower clients (isolated venv) and asserts the
server's per-round results: both nodes answered fit and evaluate, the aggregated model
moved by exactly the FedAvg step, the fit config reached the clients.

grpc-rere: the 1.15.2 client signs every call (a fresh key pair per connection, or the
given keys against an allow-list); the server binds each key to the node it registered.
REST: the 1.15.2 client requests ``//api/v0/fleet/pull-messages`` (and push, get-run,
get-fab); the reference server tolerates that bug in 1.15 mode, so these runs complete
(against the real 1.15.2 SuperLink they poll forever).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from server_harness import (
    assert_shift_rounds,
    server_thread,
    shift_strategy,
    start_flwr_client,
    stop_fleet_clients,
    tls_config,
    write_ec_key_pair,
)
from support.federation import processes
from support.flower_env import FlowerEnv

from flwr_sdk.server import ServerConfig, SignedTimestampAuthenticator

pytestmark = pytest.mark.interop

ROUNDS = 3


def _run(env: FlowerEnv, tmp: Path, config: ServerConfig, client_args: list[list[str]]) -> None:
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
        state = server.server.state
        assert state is not None
        # Both real clients registered once each, with their own key on grpc-rere.
        nodes = server.in_loop(lambda: dict(state.nodes))
        assert len(nodes) == 2, nodes
        keys = server.in_loop(lambda: dict(state.key_to_node))
        if config.transport == "grpc-rere":
            assert sorted(keys.values()) == sorted(nodes), (keys, nodes)
        else:
            assert keys == {}
        # The 1.15 client polls forever; let it finish its last reply, then stop it.
        time.sleep(4)
        stop_fleet_clients(procs)
        logs = "\n".join(proc.output()[-2000:] for proc in procs)
        assert "Traceback" not in logs, logs


def _config(transport: str, **kwargs: object) -> ServerConfig:
    return ServerConfig(
        transport=transport,
        port=0,
        num_rounds=ROUNDS,
        strategy=shift_strategy(2),
        round_timeout=120,
        record_parameters=True,
        wire="1.15",
        **kwargs,  # type: ignore[arg-type]
    )


def test_grpc_rere(flwr_1_15: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_15, tmp_path, _config("grpc-rere"), [[], []])


def test_grpc_rere_tls_allow_list(flwr_1_15: FlowerEnv, tmp_path: Path) -> None:
    tls, ca = tls_config(tmp_path)
    keys = [write_ec_key_pair(tmp_path / "keys", f"client{i}") for i in range(2)]
    auth = SignedTimestampAuthenticator.create([key.public_key() for key, _, _ in keys])
    client_args = [
        ["--root-cert", str(ca), "--auth-private-key", str(priv), "--auth-public-key", str(pub)]
        for _, priv, pub in keys
    ]
    _run(flwr_1_15, tmp_path, _config("grpc-rere", tls=tls, auth=auth), client_args)


def test_rest(flwr_1_15: FlowerEnv, tmp_path: Path) -> None:
    _run(flwr_1_15, tmp_path, _config("rest"), [[], []])
