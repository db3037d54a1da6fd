"""Flower's own ``flower-supernode`` 1.42.0 against the reference server on the 1.42 wire.

Two real SuperNodes (the cached flwr 1.42.0 venv) join ``wire="1.42"`` over the HTTP
Fleet API (``/v1/fleet/…``, signed calls, content-addressed objects): they register
(or, with operator-registered keys over HTTPS, as ``--enable-supernode-auth``, only
activate), heartbeat, fetch the run and its FAB (built here with ``flwr build`` from the
recording FedAvg app, whose ClientApp is the 1.42 ShiftClient), run a FedAvg round
through their own ``flwr-clientapp`` processes, and on SIGTERM deactivate (and
unregister what they registered).

One round only: every message costs a SuperNode a 3 s poll and a ClientApp process
(about 18 s per test).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from server_harness import (
    assert_shift_rounds,
    server_thread,
    shift_strategy,
    stop_fleet_clients,
    tls_config,
    write_ec_key_pair,
)
from support.federation import Process, free_port, processes
from support.flower_env import FlowerEnv
from support.superlink import _popen
from support.superlink_142 import QUIET_ENV, fedavg_app_142

from flwr_sdk.server import ServerConfig, SignedCallAuthenticator


@pytest.fixture(scope="module")
def fab(flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """``flwr build`` of the recording FedAvg app (1.42 ClientApp); the FAB's bytes."""
    env, workdir = flwr_1_42, tmp_path_factory.mktemp("fab")
    app = fedavg_app_142(workdir)
    out = workdir / "fab"
    out.mkdir()
    subprocess.run(
        [str(env.bin_dir / "flwr"), "build", "--app", str(app)],
        cwd=out,
        env=env.environ(QUIET_ENV),
        check=True,
        capture_output=True,
        timeout=120,
    )
    (fab,) = out.glob("*.fab")
    return fab.read_bytes()


@pytest.mark.parametrize("registered_keys", [False, True], ids=["http", "https-registered-keys"])
def test_flower_supernodes_complete_a_fedavg_round(
    flwr_1_42: FlowerEnv, fab: bytes, tmp_path: Path, registered_keys: bool
) -> None:
    tls, ca_cert, key_files, auth = None, None, [], None
    if registered_keys:
        tls, ca_cert = tls_config(tmp_path)
        pairs = [write_ec_key_pair(tmp_path / "keys", f"node{i}") for i in range(2)]
        key_files = [private for _, private, _ in pairs]
        auth = SignedCallAuthenticator.create([key.public_key() for key, _, _ in pairs])
    config = ServerConfig(
        transport="rest",
        port=0,
        wire="1.42",
        num_rounds=1,
        strategy=shift_strategy(2),
        round_timeout=60,
        record_parameters=True,
        fab=fab,
        tls=tls,
        auth=auth,
    )
    with server_thread(config) as server, processes() as procs:
        hostport = server.address.split("://", 1)[1]
        for index in range(2):
            home = tmp_path / f"supernode{index}-home"
            home.mkdir()
            args = ["flower-supernode", "--superlink", hostport]
            args += ["--port", str(free_port("127.0.0.1")), "--node-config", f"index={index}"]
            if registered_keys:
                args += ["--root-certificates", str(ca_cert)]
                args += ["--auth-supernode-private-key", str(key_files[index])]
            else:
                args.append("--insecure")
            popen = _popen(flwr_1_42, tmp_path, {"FLWR_HOME": str(home), **QUIET_ENV})
            procs.append(Process(args, tmp_path / f"supernode{index}.log", popen))
        server.start_rounds()
        history = server.history(timeout=120)
        assert_shift_rounds(history, 1)
        fit_metrics = history.to_dict()["rounds"]["1"]["fit_metrics"]
        assert fit_metrics["fits_in_state"] == 1, fit_metrics  # the ClientApp's Context
        assert stop_fleet_clients(procs) == [0, 0], [p.output() for p in procs]
        state = server.server.state
        assert state is not None
        # SIGTERM: each SuperNode deactivated its node, and unregistered what it registered
        nodes = server.in_loop(lambda: (len(state.nodes), state.online_nodes()))
        assert nodes == ((2, []) if registered_keys else (0, [])), nodes
        assert server.in_loop(lambda: len(state.key_to_node)) == 2
        for proc in procs:
            assert "Traceback" not in proc.output(), proc.output()
