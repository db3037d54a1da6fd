"""How many nodes of a swarm a flwr 1.12 SuperLink holds: count them, then one round.

Runs INSIDE a flwr 1.12.0 virtualenv (``flower-server-app``), for
``bench/superlink_limit.py``, with ``tests/swarm/apps/swarm_fedavg`` on ``PYTHONPATH``
(its ``exchange`` pushes an instruction to every node at once and pulls the replies).
Phases, each stamped with the wall clock (``time.time()``) in the report:

1. **register**: ``Driver.get_node_ids()`` every second until it returns
   ``$PROBE_NODES`` nodes or ``$PROBE_REGISTER_CAP`` seconds passed;
2. **settle**: ``$PROBE_SETTLE`` seconds more, sampled every 2 s (longer than the nodes'
   30-s ping interval: a node whose pings no longer land drops out of the count);
3. **round**: one FedAvg round (train, then evaluate) over the nodes online now, each
   phase bounded by ``$SWARM_PHASE_TIMEOUT`` (the train results are in the report as
   soon as that phase ends); then the count once more.

The report (``$PROBE_REPORT``, rewritten after every phase) ends with ``"done": true``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.common import (
    Context,
    EvaluateIns,
    FitIns,
    MessageType,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.recordset_compat import (
    evaluateins_to_recordset,
    fitins_to_recordset,
    recordset_to_evaluateres,
    recordset_to_fitres,
)
from flwr.server import Driver, ServerApp
from swarm_fedavg.server_app import exchange

app = ServerApp()


@app.main()
def main(driver: Driver, context: Context) -> None:
    path = Path(os.environ["PROBE_REPORT"])
    wanted = int(os.environ["PROBE_NODES"])
    register_cap = float(os.environ.get("PROBE_REGISTER_CAP", "240"))
    settle = float(os.environ.get("PROBE_SETTLE", "40"))
    report: dict = {"timeline": [], "marks": {"start": time.time()}}

    def flush() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(path)

    def count() -> list[int]:
        nodes = sorted(driver.get_node_ids())
        report["timeline"].append([round(time.time() - report["marks"]["start"], 2), len(nodes)])
        return nodes

    started = time.monotonic()
    nodes = count()
    while len(nodes) < wanted and time.monotonic() - started < register_cap:
        time.sleep(1.0)
        nodes = count()
        if len(report["timeline"]) % 10 == 0:
            flush()
    report["registered"] = len(nodes)
    report["registered_seconds"] = time.monotonic() - started if len(nodes) >= wanted else None
    report["marks"]["registered"] = time.time()
    flush()

    samples = []
    settle_end = time.monotonic() + settle
    while time.monotonic() < settle_end:
        time.sleep(2.0)
        samples.append(len(count()))
    nodes = count()
    report["settle"] = {"min": min(samples, default=len(nodes)), "last": len(nodes)}
    report["marks"]["settled"] = time.time()
    flush()

    weights = [np.zeros(2, dtype=np.float32)]
    tick = time.monotonic()
    fit_ins = fitins_to_recordset(FitIns(ndarrays_to_parameters(weights), {"round": 1}), True)
    fits = [
        recordset_to_fitres(r.content, keep_input=False)
        for r in exchange(driver, nodes, fit_ins, MessageType.TRAIN, 1)
    ]
    fit_seconds = time.monotonic() - tick
    report["marks"]["fit_done"] = time.time()
    sizes = sorted(res.num_examples for res in fits)
    report["round"] = {"nodes": len(nodes), "fit_results": len(fits), "fit_seconds": fit_seconds}
    flush()
    total = sum(sizes)
    if total:
        weights = [
            sum(parameters_to_ndarrays(res.parameters)[0] * res.num_examples for res in fits)
            / total
        ]
    tock = time.monotonic()
    eval_ins = evaluateins_to_recordset(EvaluateIns(ndarrays_to_parameters(weights), {}), True)
    evaluated = [
        recordset_to_evaluateres(r.content)
        for r in exchange(driver, nodes, eval_ins, MessageType.EVALUATE, 1)
    ]
    report["round"].update(
        {
            "distinct_partitions": len(set(sizes)),
            "evaluate_results": len(evaluated),
            "evaluate_seconds": time.monotonic() - tock,
            "seconds": time.monotonic() - tick,
        }
    )
    report["marks"]["round_done"] = time.time()
    report["after_round"] = len(count())
    report["done"] = True
    flush()
