"""Flower's own ``flower-supernode`` 1.42.0 against the reference server on the 1.42 wire.

Two real SuperNodes (the cached flwr 1.42.0 venv) join ``wire="1.42"`` over the HTTP
Fleet API (``/v1/fleet/…``, signed calls, content-addressed objects): they register,
activate, heartbeat, fetch the run and its FAB (built here with ``flwr build`` from the
recording FedAvg app, whose ClientApp is the 1.42 ShiftClient), run a FedAvg round through
their own ``flwr-clientapp`` processes, and on SIGTERM deactivate and unregister.

One round only: every message costs a SuperNode a 3 s poll and a ClientApp process
(about 18 s for the round).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from server_harness import assert_shift_rounds, server_thread, shift_strategy, stop_fleet_clients
from support.federation import Process, free_port, processes
from support.flower_env import FlowerEnv
from support.superlink import _popen
from support.superlink_142 import QUIET_ENV, fedavg_app_142

from flwr_sdk.server import ServerConfig


def _build_fab(env: FlowerEnv, workdir: Path) -> bytes:
    """``flwr build`` of the recording FedAvg app (1.42 ClientApp); the FAB's bytes."""
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


def test_flower_supernodes_complete_a_fedavg_round(flwr_1_42: FlowerEnv, tmp_path: Path) -> None:
    config = ServerConfig(
        transport="rest",
        port=0,
        wire="1.42",
        num_rounds=1,
        strategy=shift_strategy(2),
        round_timeout=60,
        record_parameters=True,
        fab=_build_fab(flwr_1_42, tmp_path),
    )
    with server_thread(config) as server, processes() as procs:
        hostport = server.address.split("://", 1)[1]
        for index in range(2):
            home = tmp_path / f"supernode{index}-home"
            home.mkdir()
            args = ["flower-supernode", "--superlink", hostport, "--insecure"]
            args += ["--port", str(free_port("127.0.0.1")), "--node-config", f"index={index}"]
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
        # SIGTERM: each SuperNode deactivated and unregistered its node
        assert server.in_loop(lambda: (dict(state.nodes), len(state.key_to_node))) == ({}, 2)
        for proc in procs:
            assert "Traceback" not in proc.output(), proc.output()
