"""A legacy FedAvg ServerApp that records when every round ended (fault suite).

Runs INSIDE a flwr 1.12.0 virtualenv, started by ``flower-server-app``. Environment:
``CHAOS_REPORT`` (JSON report path, rewritten after every round), ``CHAOS_ROUNDS``
(default 1000), ``CHAOS_ROUND_TIMEOUT`` (seconds; default 10) and ``CHAOS_CLIENTS``
(clients a round waits for; default 1). The report::

    {"fit": {"1": {"results": 1, "failures": 0, "at": <time.time()>, "nodes": [...]}}}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg

INITIAL = [np.zeros(3, dtype=np.float32), np.arange(4, dtype=np.float64).reshape(2, 2)]


class TimedFedAvg(FedAvg):
    """FedAvg that writes, per round, its result count and wall-clock end time."""

    def __init__(self, report_path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report_path = report_path
        self.report: dict = {"fit": {}}
        self.flush()

    def flush(self) -> None:
        tmp = self.report_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report))
        tmp.replace(self.report_path)

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        self.report["fit"][str(server_round)] = {
            "results": len(results),
            "failures": len(failures),
            "at": time.time(),
            "nodes": sorted(str(proxy.cid) for proxy, _ in results),
        }
        self.flush()
        return params, metrics


def server_fn(context: Context) -> ServerAppComponents:
    clients = int(os.environ.get("CHAOS_CLIENTS", "1"))
    strategy = TimedFedAvg(
        Path(os.environ["CHAOS_REPORT"]),
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=clients,
        min_evaluate_clients=0,
        min_available_clients=clients,
        accept_failures=True,
        initial_parameters=ndarrays_to_parameters(INITIAL),
        on_fit_config_fn=lambda rnd: {"round": rnd, "lr": 0.5, "tag": "fit"},
    )
    config = ServerConfig(
        num_rounds=int(os.environ.get("CHAOS_ROUNDS", "1000")),
        round_timeout=float(os.environ.get("CHAOS_ROUND_TIMEOUT", "10")),
    )
    return ServerAppComponents(strategy=strategy, config=config)


app = ServerApp(server_fn=server_fn)
