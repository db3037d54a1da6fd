"""The app the swarm tests run: every node trains on its own slice of one shared array.

Node ``partition-id = i`` of ``num-partitions = n`` sees ``i + 1`` values (a read-only
view of one array shared by every node in the process; no per-node copy) and reports
``num_examples = i + 1``: a server that aggregated every node exactly once in a round
saw the sizes ``1..n``, which proves both that every node contributed and that their
partitions differ.
"""

from __future__ import annotations

import threading

import numpy as np

from flwr_sdk import Client, NumPyClient
from flwr_sdk.common.context import Context

_DATA: dict[int, np.ndarray] = {}
_LOCK = threading.Lock()


def shared_data(partitions: int) -> np.ndarray:
    """The array all partitions are views of (made once per process)."""
    with _LOCK:
        data = _DATA.get(partitions)
        if data is None:
            size = partitions * (partitions + 1) // 2
            data = np.random.default_rng(7).normal(1.0, 1.0, size).astype(np.float32)
            data.setflags(write=False)
            _DATA[partitions] = data
        return data


def partition(partition_id: int, partitions: int) -> np.ndarray:
    """Partition ``partition_id``: ``partition_id + 1`` values, a view of the shared array."""
    start = partition_id * (partition_id + 1) // 2
    return shared_data(partitions)[start : start + partition_id + 1]


class SliceClient(NumPyClient):
    """Moves a 2-value model towards its partition's mean."""

    def __init__(self, partition_id: int, partitions: int) -> None:
        self.partition_id = partition_id
        self.data = partition(partition_id, partitions)

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        return [np.zeros(2, dtype=np.float32)]

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, object]
    ) -> tuple[list[np.ndarray], int, dict[str, object]]:
        model = parameters[0] + 0.5 * (float(self.data.mean()) - parameters[0])
        return [model.astype(np.float32)], len(self.data), {"partition": self.partition_id}

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, object]
    ) -> tuple[float, int, dict[str, object]]:
        loss = float(np.mean((self.data.mean() - parameters[0]) ** 2))
        return loss, len(self.data), {}


def client_fn(context: Context) -> Client:
    """The node's client, on its partition."""
    config = context.node_config
    return SliceClient(int(config["partition-id"]), int(config["num-partitions"])).to_client()
