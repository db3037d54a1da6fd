"""FedAvg over a whole swarm on a real SuperLink, with the low-level Driver / Grid API.

Runs INSIDE a Flower virtualenv: flwr 1.12.0 (``flower-server-app <this dir>``, the
``Driver`` API) or flwr 1.42.0 (``flwr run`` builds this folder into a FAB; the ``Grid``
API, the same calls). It waits for the run config's ``swarm-nodes`` nodes (or
``$SWARM_NODES``), then per round pushes one train instruction to every node at once,
pulls the replies until all are in, averages the models (weighted by ``num_examples``)
and does the same for evaluate. (The legacy ``ServerApp(server_fn=...)`` serves its
nodes a few at a time — a thread pool of ``cpu + 4`` proxies, each waiting for its
node's reply — about 1.5 replies per second here: hours for a swarm.)

After every phase it rewrites the JSON report at the run config's ``report-path`` (or
``$SWARM_REPORT``):

    {"fit": {"1": {"results": N, "failures": 0, "num_examples": [1, 2, ...],
                   "push_s": 0.4, "replies_s": 2.1}, ...},
     "evaluate": {"1": {"results": N, "failures": 0, "push_s": ..., "replies_s": ...}, ...},
     "nodes": N, "done": true}
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

try:  # Flower 1.42: the Grid API and RecordDict
    from flwr.compat.common.recorddict_compat import (
        evaluateins_to_recorddict as evaluateins_to_recordset,
    )
    from flwr.compat.common.recorddict_compat import fitins_to_recorddict as fitins_to_recordset
    from flwr.compat.common.recorddict_compat import (
        recorddict_to_evaluateres as recordset_to_evaluateres,
    )
    from flwr.compat.common.recorddict_compat import recorddict_to_fitres as recordset_to_fitres
    from flwr.serverapp import Grid as Driver
    from flwr.serverapp import ServerApp

    def reply_to(message) -> str:
        return message.metadata.reply_to_message_id

except ImportError:  # Flower 1.12: the Driver API and RecordSet
    from flwr.common.recordset_compat import (
        evaluateins_to_recordset,
        fitins_to_recordset,
        recordset_to_evaluateres,
        recordset_to_fitres,
    )
    from flwr.server import Driver, ServerApp

    def reply_to(message) -> str:
        return message.metadata.reply_to_message


app = ServerApp()
PHASE_TIMEOUT = float(os.environ.get("SWARM_PHASE_TIMEOUT", "600"))


def exchange(
    driver: Driver, nodes: list[int], content, message_type: str, rnd: int
) -> tuple[list, dict]:
    """Send ``content`` to every node at once; the replies that came back in time, and
    the phase's timing: seconds the push took, and from its end to the last reply."""
    started = time.monotonic()
    messages = [
        driver.create_message(
            content=content,
            message_type=message_type,
            dst_node_id=node,
            group_id=str(rnd),
            ttl=PHASE_TIMEOUT,
        )
        for node in nodes
    ]
    ids = [i for i in driver.push_messages(messages) if i]
    pushed = time.monotonic()
    replies: dict[str, object] = {}
    deadline = time.time() + PHASE_TIMEOUT
    while len(replies) < len(ids) and time.time() < deadline:
        for reply in driver.pull_messages([i for i in ids if i not in replies]):
            replies[reply_to(reply)] = reply
        time.sleep(0.5)
    timing = {
        "push_s": round(pushed - started, 2),
        "replies_s": round(time.monotonic() - pushed, 2),
    }
    return [r for r in replies.values() if not r.has_error()], timing


@app.main()
def main(driver: Driver, context: Context) -> None:
    path = Path(str(context.run_config.get("report-path", "")) or os.environ["SWARM_REPORT"])
    wanted = int(context.run_config.get("swarm-nodes", 0)) or int(os.environ["SWARM_NODES"])
    rounds = int(context.run_config.get("num-server-rounds", 3))
    report: dict = {"fit": {}, "evaluate": {}}

    def flush() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(path)

    flush()
    nodes = driver.get_node_ids()
    while len(nodes) < wanted:
        time.sleep(1.0)
        nodes = driver.get_node_ids()
    report["nodes"] = len(nodes)
    weights = [np.zeros(2, dtype=np.float32)]
    for rnd in range(1, rounds + 1):
        parameters = ndarrays_to_parameters(weights)
        fit_ins = fitins_to_recordset(FitIns(parameters, {"round": rnd}), keep_input=True)
        good, timing = exchange(driver, nodes, fit_ins, MessageType.TRAIN, rnd)
        results = [recordset_to_fitres(r.content, keep_input=False) for r in good]
        report["fit"][str(rnd)] = {
            "results": len(results),
            "failures": len(nodes) - len(results),
            "num_examples": sorted(res.num_examples for res in results),
            **timing,
        }
        flush()
        total = sum(res.num_examples for res in results)
        weights = [
            sum(parameters_to_ndarrays(res.parameters)[0] * res.num_examples for res in results)
            / total
        ]
        eval_ins = evaluateins_to_recordset(
            EvaluateIns(ndarrays_to_parameters(weights), {"round": rnd}), keep_input=True
        )
        good, timing = exchange(driver, nodes, eval_ins, MessageType.EVALUATE, rnd)
        evaluated = [recordset_to_evaluateres(r.content) for r in good]
        report["evaluate"][str(rnd)] = {
            "results": len(evaluated),
            "failures": len(nodes) - len(evaluated),
            **timing,
        }
        if rnd == rounds:
            report["done"] = True
        flush()
