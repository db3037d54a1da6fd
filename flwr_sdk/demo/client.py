"""The demo's client: a NumPyClient that trains the logistic regression on its share.

``client_fn`` is what ``flwr-sdk client --app flwr_sdk.demo.client:client_fn`` runs. The
node finds its data share from the environment (the demo sets these for every client
process it starts):

* ``FLWR_SDK_DEMO_PARTITION_ID``: this node's share (default 0);
* ``FLWR_SDK_DEMO_NUM_PARTITIONS``: how many shares (default 1);
* ``FLWR_SDK_DEMO_SEED``: dataset seed (default 0).

The fit config carries ``lr`` and ``local_epochs`` (set per round by the server).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_types import Config, Metrics
from flwr_sdk.demo.model import Dataset, LogisticRegression, client_data

__all__ = ["DemoClient", "client_fn"]

NDArrays = list[npt.NDArray[np.generic]]


class DemoClient(NumPyClient):
    """Local SGD on one non-IID share; evaluation on the share's held-out rows."""

    def __init__(self, train: Dataset, test: Dataset, partition_id: int) -> None:
        self.train = train
        self.test = test
        self.partition_id = partition_id
        self.model = LogisticRegression()

    def get_parameters(self, config: Config) -> NDArrays:
        """The current local model."""
        return list(self.model.get_weights())

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        """Train ``local_epochs`` epochs of SGD with learning rate ``lr`` from the config."""
        self.model.set_weights(parameters)
        lr = float(config.get("lr", 0.1))
        epochs = int(config.get("local_epochs", 1))
        server_round = int(config.get("round", 0))
        loss = self.model.fit(
            self.train, epochs=epochs, lr=lr, seed=1000 * self.partition_id + server_round
        )
        return list(self.model.get_weights()), len(self.train), {"train_loss": loss}

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Metrics]:
        """Loss and accuracy of ``parameters`` on the local test rows."""
        self.model.set_weights(parameters)
        loss, accuracy = self.model.loss_and_accuracy(self.test)
        return loss, len(self.test), {"accuracy": accuracy}


def client_fn(context: Context) -> NumPyClient:
    """Build the demo client for this node's data share (see the module docs)."""
    partition_id = int(os.environ.get("FLWR_SDK_DEMO_PARTITION_ID", "0"))
    num_partitions = int(os.environ.get("FLWR_SDK_DEMO_NUM_PARTITIONS", "1"))
    seed = int(os.environ.get("FLWR_SDK_DEMO_SEED", "0"))
    train, test = client_data(partition_id, num_partitions, seed)
    return DemoClient(train, test, partition_id)
