"""The round loop both benchmark ServerApps run (flwr 1.12 Driver API, flwr 1.15 GrpcDriver).

For measurement ``r`` it waits for ``$BENCH_CONTROL/go-<r>.json`` (payload size), pulls
(and so deletes) the previous round's reply, picks the registered node it has not used
yet, pushes one legacy ``FitIns`` message with the payload and writes the message id to
``done-<r>.json``. The round times are stamped by the SuperLink itself
(``scripts/flwr_superlink.py``) and matched to the message id by ``python -m bench``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.common.recordset_compat import fitins_to_recordset


def payload(nbytes: int, arrays: int) -> list[np.ndarray]:
    per = nbytes // arrays // 4
    return [np.full(per, i, dtype=np.float32) for i in range(arrays)]


def serve_rounds(driver: Any) -> None:
    """Push one payload per measurement to a fresh node, as ``python -m bench`` asks."""
    control = Path(os.environ["BENCH_CONTROL"])
    rounds = int(os.environ["BENCH_ROUNDS"])
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
