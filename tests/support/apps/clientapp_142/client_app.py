"""The recording FedAvg app's ClientApp for runs on Flower 1.42 (``flower-supernode``).

Copied over ``fedavg_app/client_app.py`` when a 1.42 run is built (the 1.12/1.15 FABs
keep the placeholder, their nodes are flwr-sdk processes). Runs INSIDE the flwr 1.42.0
venv, in the ``flwr-clientapp`` process the SuperNode starts. It does what
``tests/support/sdk_client.py --report-context`` does (the deterministic ShiftClient of
``examples/numpy_client.py``): node *i* (node config ``index``) adds ``i + 1`` to every
parameter, reports ``10 * (i + 1)`` examples and a loss of ``i + 1``, and its fit
metrics say what its Context holds (``node_id``, ``run_config``, ``fits_in_state``).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context


class ShiftClient(NumPyClient):
    """Adds ``index + 1`` to the parameters it is given; reports its Context."""

    def __init__(self, index: int, context: Context) -> None:
        self.index = index
        self.node_context = context

    def get_parameters(self, config):
        return [np.zeros(3, dtype=np.float32)]

    def fit(self, parameters, config):
        shifted = [p + np.asarray(self.index + 1, dtype=p.dtype) for p in parameters]
        state = self.node_context.state
        counter = state.config_records.get("sdk-test", ConfigRecord({"fits": 0}))
        counter["fits"] = int(counter["fits"]) + 1
        state.config_records["sdk-test"] = counter
        round_ = config.get("round", -1)
        metrics = {
            "client_index": self.index,
            "seen_round": round_,
            "seen": round_,
            "node_id": str(self.node_context.node_id),
            "run_config": json.dumps(dict(self.node_context.run_config), sort_keys=True),
            "fits_in_state": int(counter["fits"]),
        }
        return shifted, 10 * (self.index + 1), metrics

    def evaluate(self, parameters, config):
        return float(self.index + 1), 10, {"client_index": self.index}


def client_fn(context: Context):
    return ShiftClient(int(context.node_config.get("index", 0)), context).to_client()


app = ClientApp(client_fn=client_fn)
