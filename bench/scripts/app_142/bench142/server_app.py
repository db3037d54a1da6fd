"""ServerApp of the round benchmark on Flower 1.42 (Grid API, started by ``flwr run``).

For measurement ``r`` it waits for ``<control>/go-<r>.json`` (payload size), picks the
online node it has not used yet, pushes one legacy ``FitIns`` message with the payload
(``push_messages`` returns once the SuperLink holds all of its objects) and polls for the
reply every 10 ms (``pull_messages`` returns it with all of its objects fetched). It writes
``done-<r>.json``: ``seconds`` from the push returning to the reply received,
``server_seconds`` from before the push to the reply received, the wall-clock times
(``time.time``) the push returned and the reply was received, and whether the reply
carried the payload back (``ok``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.common import Context, FitIns, ndarrays_to_parameters
from flwr.compat.common.recorddict_compat import fitins_to_recorddict, recorddict_to_fitres
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


def payload(nbytes: int, arrays: int) -> list[np.ndarray]:
    per = nbytes // arrays // 4
    return [np.full(per, i, dtype=np.float32) for i in range(arrays)]


def _fresh_node(grid: Grid, used: set[int]) -> int:
    while True:
        fresh = [n for n in grid.get_node_ids() if n not in used]
        if fresh:
            return fresh[0]
        time.sleep(0.02)


@app.main()
def main(grid: Grid, context: Context) -> None:
    control = Path(str(context.run_config["control"]))
    rounds = int(context.run_config["rounds"])
    used: set[int] = set()
    for r in range(1, rounds + 1):
        go = control / f"go-{r}.json"
        while not go.exists():
            time.sleep(0.01)
        plan = json.loads(go.read_text())
        node = _fresh_node(grid, used)
        used.add(node)
        content = fitins_to_recorddict(
            FitIns(ndarrays_to_parameters(payload(plan["nbytes"], plan["arrays"])), {}),
            keep_input=False,
        )
        message = grid.create_message(content, "train", node, str(r))
        del content
        t0 = time.perf_counter()
        (message_id,) = list(grid.push_messages([message]))
        t1 = time.perf_counter()
        pushed_at = time.time()
        del message
        replies: list = []
        while not replies:
            replies = list(grid.pull_messages([message_id]))
            if not replies:
                time.sleep(0.01)
        t2 = time.perf_counter()
        received_at = time.time()
        reply = replies[0]
        ok = not reply.has_error()
        if ok:
            tensors = recorddict_to_fitres(reply.content, keep_input=False).parameters.tensors
            ok = sum(len(t) for t in tensors) >= plan["nbytes"]
        del replies, reply
        done = {
            "round": r,
            "node": node,
            "seconds": t2 - t1,
            "server_seconds": t2 - t0,
            "pushed_at": pushed_at,
            "received_at": received_at,
            "ok": ok,
        }
        partial = control / f"done-{r}.json.partial"
        partial.write_text(json.dumps(done))
        partial.rename(control / f"done-{r}.json")
