"""FedAvg over a whole swarm: waits for ``$SWARM_NODES`` nodes, samples all of them.

Runs INSIDE a flwr 1.12.0 virtualenv (``flower-server-app``). After every aggregation it
rewrites the JSON report at ``$SWARM_REPORT``:

    {"fit": {"1": {"results": N, "failures": 0, "num_examples": [1, 2, ...]}, ...},
     "evaluate": {"1": {"results": N, "failures": 0}, ...}, "done": true}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg


class RecordingFedAvg(FedAvg):
    """FedAvg that writes how many results it got and their sizes."""

    def __init__(self, report_path: Path, num_rounds: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report_path = report_path
        self.num_rounds = num_rounds
        self.report: dict = {"fit": {}, "evaluate": {}}

    def flush(self) -> None:
        tmp = self.report_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report))
        tmp.replace(self.report_path)

    def aggregate_fit(self, server_round, results, failures):
        self.report["fit"][str(server_round)] = {
            "results": len(results),
            "failures": len(failures),
            "num_examples": sorted(r.num_examples for _, r in results),
        }
        self.flush()
        return super().aggregate_fit(server_round, results, failures)

    def aggregate_evaluate(self, server_round, results, failures):
        self.report["evaluate"][str(server_round)] = {
            "results": len(results),
            "failures": len(failures),
        }
        if server_round == self.num_rounds:
            self.report["done"] = True
        self.flush()
        return super().aggregate_evaluate(server_round, results, failures)


def server_fn(context: Context) -> ServerAppComponents:
    nodes = int(os.environ["SWARM_NODES"])
    rounds = int(context.run_config["num-server-rounds"])
    strategy = RecordingFedAvg(
        Path(os.environ["SWARM_REPORT"]),
        rounds,
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=nodes,
        min_evaluate_clients=nodes,
        min_available_clients=nodes,
        initial_parameters=ndarrays_to_parameters([np.zeros(2, dtype=np.float32)]),
    )
    strategy.flush()
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
