"""A legacy FedAvg ServerApp (``ServerApp(server_fn=...)``) that records every round.

Runs INSIDE a flwr 1.12.0 virtualenv, started by ``flower-server-app`` (directly or by
SuperExec for ``flwr run``). The report (JSON, rewritten after every aggregation) goes to
the run config's ``report-path`` or, when that is empty, to ``$FEDAVG_REPORT``:

    {"fit": {"1": {"results": 2, "failures": 0, "failure_messages": [],
                   "num_examples": [10, 20], "client_metrics": [...],
                   "by_node": {"<node id>": {...metrics}}, "parameters": [...]}, ...},
     "evaluate": {"1": {"results": 2, "failures": 0, "loss": 1.5}, ...},
     "run_config": {...}, "done": true}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg

INITIAL = [np.zeros(3, dtype=np.float32), np.arange(4, dtype=np.float64).reshape(2, 2)]


class RecordingFedAvg(FedAvg):
    """FedAvg that writes what it aggregates to a JSON report."""

    def __init__(self, report_path: Path, report: dict, num_rounds: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report_path = report_path
        self.report = report
        self.num_rounds = num_rounds

    def flush(self) -> None:
        tmp = self.report_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report, indent=1))
        tmp.replace(self.report_path)

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        self.report["fit"][str(server_round)] = {
            "results": len(results),
            "failures": len(failures),
            "failure_messages": [
                str(f) if isinstance(f, BaseException) else "result" for f in failures
            ],
            "num_examples": sorted(r.num_examples for _, r in results),
            "client_metrics": sorted(
                json.dumps(dict(r.metrics), sort_keys=True) for _, r in results
            ),
            "by_node": {proxy.cid: dict(r.metrics) for proxy, r in results},
            "parameters": None
            if params is None
            else [a.tolist() for a in parameters_to_ndarrays(params)],
        }
        self.flush()
        return params, metrics

    def aggregate_evaluate(self, server_round, results, failures):
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        self.report["evaluate"][str(server_round)] = {
            "results": len(results),
            "failures": len(failures),
            "loss": loss,
        }
        if server_round == self.num_rounds:
            self.report["done"] = True
        self.flush()
        return loss, metrics


def server_fn(context: Context) -> ServerAppComponents:
    config = context.run_config
    path = str(config.get("report-path", "")) or os.environ["FEDAVG_REPORT"]
    report: dict = {"fit": {}, "evaluate": {}, "run_config": dict(config)}
    rounds = int(config["num-server-rounds"])
    strategy = RecordingFedAvg(
        Path(path),
        report,
        rounds,
        fraction_fit=float(config.get("fraction-fit", 1.0)),
        fraction_evaluate=1.0,
        min_fit_clients=2,
        min_evaluate_clients=2,
        min_available_clients=2,
        initial_parameters=ndarrays_to_parameters(INITIAL),
        on_fit_config_fn=lambda rnd: {"round": rnd, "lr": 0.5, "tag": "fit"},
        on_evaluate_config_fn=lambda rnd: {"round": rnd},
    )
    strategy.flush()
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
