"""dropin-app: A Flower / NumPy app, laid out the way ``flwr new`` (1.12) lays one out.

The module defines ``app = ClientApp(client_fn=client_fn, mods=[...])``: ``client_fn``
reads the node's partition from ``context.node_config`` and its hyper-parameters from
``context.run_config``; the mods are one of our own (it counts, in the node's
``context.state``, the messages this node handled) and two that Flower ships. Run it
with ``flower-supernode`` against a SuperLink that runs the app::

    flower-supernode --insecure --superlink 127.0.0.1:9092 \
        --node-config "partition-id=0 num-partitions=2"
"""

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import message_size_mod, parameters_size_mod
from flwr.client.typing import ClientAppCallable
from flwr.common import Context, Message, MetricsRecord


def load_data(partition_id: int, num_partitions: int):
    """This node's share of a synthetic regression dataset."""
    rng = np.random.default_rng(seed=1000 * num_partitions + partition_id)
    n = 20 + 10 * partition_id
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x * np.array([-1.0, 2.0, 0.25], dtype=np.float32)).sum(axis=1)
    z = rng.normal(size=(n, 2))
    t = np.stack([z[:, 0] - z[:, 1], 2.0 * z[:, 1]], axis=1)
    return x, y, z, t


def train(w, m, data, epochs: int, learning_rate: float) -> float:
    """Full-batch gradient descent on ``w`` and ``m``, in place; the last loss."""
    x, y, z, t = data
    loss = 0.0
    for _ in range(epochs):
        err_y = (x * w).sum(axis=1) - y
        err_t = (z[:, :, None] * m[None, :, :]).sum(axis=1) - t
        loss = float(np.mean(err_y * err_y)) + float(np.mean(err_t * err_t))
        w -= learning_rate * 2.0 * (err_y[:, None] * x).mean(axis=0)
        m -= learning_rate * (z[:, :, None] * err_t[:, None, :]).mean(axis=0)
    return loss


def test(w, m, data) -> float:
    x, y, z, t = data
    err_y = (x * w).sum(axis=1) - y
    err_t = (z[:, :, None] * m[None, :, :]).sum(axis=1) - t
    return float(np.mean(err_y * err_y)) + float(np.mean(err_t * err_t))


# Define Flower Client
class FlowerClient(NumPyClient):
    def __init__(self, data, local_epochs, learning_rate, messages_seen):
        self.data = data
        self.local_epochs = local_epochs
        self.learning_rate = learning_rate
        self.messages_seen = messages_seen

    def fit(self, parameters, config):
        w, m = parameters
        train_loss = train(w, m, self.data, self.local_epochs, self.learning_rate)
        return (
            [w, m],
            len(self.data[0]),
            {"train_loss": train_loss, "messages_seen": self.messages_seen},
        )

    def evaluate(self, parameters, config):
        w, m = parameters
        loss = test(w, m, self.data)
        return loss, len(self.data[0]), {"loss": loss}


def client_fn(context: Context):
    partition_id = context.node_config["partition-id"]
    num_partitions = context.node_config["num-partitions"]
    data = load_data(partition_id, num_partitions)
    local_epochs = context.run_config["local-epochs"]
    learning_rate = context.run_config["learning-rate"]
    messages_seen = context.state.metrics_records["message-counter"]["messages"]

    # Return Client instance
    return FlowerClient(data, local_epochs, learning_rate, messages_seen).to_client()


def count_messages(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Count, in the node's state, every message this node handled."""
    if "message-counter" not in context.state.metrics_records:
        context.state.metrics_records["message-counter"] = MetricsRecord({"messages": 0})
    context.state.metrics_records["message-counter"]["messages"] += 1
    return call_next(msg, context)


# Flower ClientApp
app = ClientApp(
    client_fn=client_fn,
    mods=[count_messages, message_size_mod, parameters_size_mod],
)
