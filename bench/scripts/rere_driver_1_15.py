"""ServerApp side of the round benchmark on Flower 1.15 (grpc-rere; flwr 1.15.2 venv).

    BENCH_CONTROL=DIR BENCH_ROUNDS=N python rere_driver_1_15.py --serverappio 127.0.0.1:PORT

Flower 1.15 starts runs through the Exec API (``flwr run`` builds a FAB, the SuperLink
spawns ``flwr-serverapp``, which installs and loads it). The benchmark needs none of
that: this process connects to the SuperLink's ServerAppIo API directly with Flower's own
``GrpcDriver``, creates a run without a FAB (``CreateRun``), moves it to ``running``
(``UpdateRunStatus``: pending → starting → running, as ``flwr-serverapp`` does) and then
works like the 1.12 Driver-API ServerApp (``rere_app``). The SuperLink runs with
``--isolation process``, so it launches no ServerApp of its own.

For measurement ``r`` it waits for ``$BENCH_CONTROL/go-<r>.json`` (payload size), pulls
(and so deletes) the previous round's reply, picks the registered node it has not used
yet, pushes one legacy ``FitIns`` message with the payload and writes the message id to
``done-<r>.json``. The round times are stamped by the SuperLink itself
(``flwr_superlink.py``) and matched to the message id by ``python -m bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.common.recordset_compat import fitins_to_recordset
from flwr.proto.run_pb2 import CreateRunRequest, RunStatus, UpdateRunStatusRequest
from flwr.server.driver.grpc_driver import GrpcDriver


def payload(nbytes: int, arrays: int) -> list[np.ndarray]:
    per = nbytes // arrays // 4
    return [np.full(per, i, dtype=np.float32) for i in range(arrays)]


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
    control = Path(os.environ["BENCH_CONTROL"])
    rounds = int(os.environ["BENCH_ROUNDS"])
    driver = GrpcDriver(serverappio_service_address=args.serverappio)
    run_id = start_run(driver)
    print(f"run {run_id} running", flush=True)
    used: set[int] = set()
    previous: list[str] = []
    for r in range(1, rounds + 1):
        go = control / f"go-{r}.json"
        while not go.exists():
            time.sleep(0.01)
        plan = json.loads(go.read_text())
        if previous:
            list(driver.pull_messages(previous))
        while True:
            fresh = [n for n in driver.get_node_ids() if n not in used]
            if fresh:
                break
            time.sleep(0.02)
        node = fresh[0]
        used.add(node)
        content = fitins_to_recordset(
            FitIns(ndarrays_to_parameters(payload(plan["nbytes"], plan["arrays"])), {}),
            keep_input=False,
        )
        message = driver.create_message(
            content=content, message_type="train", dst_node_id=node, group_id=str(r)
        )
        del content
        ids = list(driver.push_messages([message]))
        del message
        previous = ids
        (control / f"done-{r}.json").write_text(json.dumps({"round": r, "message_id": ids[0]}))
    driver.close()


if __name__ == "__main__":
    main()
