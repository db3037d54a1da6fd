"""ServerApp side of the round benchmark on Flower 1.15 (grpc-rere; flwr 1.15.2 venv).

    BENCH_CONTROL=DIR BENCH_ROUNDS=N python rere_driver_1_15.py --serverappio 127.0.0.1:PORT

Flower 1.15 starts runs through the Exec API (``flwr run`` builds a FAB, the SuperLink
spawns ``flwr-serverapp``, which installs and loads it). The benchmark needs none of
that: this process connects to the SuperLink's ServerAppIo API directly with Flower's own
``GrpcDriver``, creates a run without a FAB (``CreateRun``), moves it to ``running``
(``UpdateRunStatus``: pending → starting → running, as ``flwr-serverapp`` does) and then
works like the 1.12 Driver-API ServerApp (``rere_app``). The SuperLink runs with
``--isolation process``, so it launches no ServerApp of its own.

The round loop is ``rere_app.rounds.serve_rounds``, shared with the 1.12 ServerApp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flwr.proto.run_pb2 import CreateRunRequest, RunStatus, UpdateRunStatusRequest
from flwr.server.driver.grpc_driver import GrpcDriver

sys.path.insert(0, str(Path(__file__).resolve().parent / "rere_app"))
from rere_app.rounds import serve_rounds


def start_run(driver: GrpcDriver) -> int:
    """A new running run without a FAB (the benchmark's clients need no app code)."""
    stub = driver._stub  # the ServerAppIo stub (connects on first use)
    run_id = int(
        stub.CreateRun(CreateRunRequest(fab_id="flwrsdk/bench", fab_version="1.0.0")).run_id
    )
    for status in ("starting", "running"):
        stub.UpdateRunStatus(
            UpdateRunStatusRequest(run_id=run_id, run_status=RunStatus(status=status))
        )
    driver.set_run(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serverappio", required=True)
    args = parser.parse_args()
    driver = GrpcDriver(serverappio_service_address=args.serverappio)
    run_id = start_run(driver)
    print(f"run {run_id} running", flush=True)
    serve_rounds(driver)
    driver.close()


if __name__ == "__main__":
    main()
