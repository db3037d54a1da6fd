"""Quickstart (NumPy): a tiny linear model trained with plain NumPy on every client.

Written the way Flower 1.12's quickstart examples are: a ``NumPyClient`` that takes the
global parameters it receives and trains them in place, started with
``fl.client.start_client``. Run two of them against a Flower server::

    python quickstart_numpy.py --server-address 127.0.0.1:8080 --partition-id 0
    python quickstart_numpy.py --server-address 127.0.0.1:8080 --partition-id 1
"""

import argparse

import flwr as fl
import numpy as np

LEARNING_RATE = 0.1
LOCAL_STEPS = 5
TRUE_W = np.array([1.5, -2.0, 0.5], dtype=np.float32)
TRUE_M = np.array([[1.0, 0.0], [0.5, -1.0]])


def load_partition(partition_id: int):
    """A small regression dataset, different for every partition, split 3:1."""
    rng = np.random.default_rng(seed=partition_id)
    n = 24 + 8 * partition_id
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x * TRUE_W).sum(axis=1) + 0.1 * rng.normal(size=n).astype(np.float32)
    z = rng.normal(size=(n, 2))
    t = (z[:, :, None] * TRUE_M[None, :, :]).sum(axis=1)
    split = 3 * n // 4
    train = (x[:split], y[:split], z[:split], t[:split])
    test = (x[split:], y[split:], z[split:], t[split:])
    return train, test


def loss_and_gradients(w, m, data):
    """Mean squared error of both heads and its gradients with respect to w and m."""
    x, y, z, t = data
    err_y = (x * w).sum(axis=1) - y
    err_t = (z[:, :, None] * m[None, :, :]).sum(axis=1) - t
    loss = float(np.mean(err_y * err_y)) + float(np.mean((err_t * err_t).sum(axis=1)))
    grad_w = 2.0 * (err_y[:, None] * x).mean(axis=0)
    grad_m = 2.0 * (z[:, :, None] * err_t[:, None, :]).mean(axis=0)
    return loss, grad_w, grad_m


class FlowerClient(fl.client.NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.train, self.test = load_partition(partition_id)
        self.w = np.zeros(3, dtype=np.float32)
        self.m = np.zeros((2, 2))

    def get_parameters(self, config):
        return [self.w, self.m]

    def fit(self, parameters, config):
        self.w = parameters[0]
        self.m = parameters[1]
        for _ in range(LOCAL_STEPS):
            loss, grad_w, grad_m = loss_and_gradients(self.w, self.m, self.train)
            self.w -= LEARNING_RATE * grad_w
            self.m -= LEARNING_RATE * grad_m
        return [self.w, self.m], len(self.train[0]), {"train_loss": loss}

    def evaluate(self, parameters, config):
        loss, _, _ = loss_and_gradients(parameters[0], parameters[1], self.test)
        return loss, len(self.test[0]), {"mse": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower quickstart client (NumPy)")
    parser.add_argument("--server-address", default="127.0.0.1:8080")
    parser.add_argument("--partition-id", type=int, default=0)
    parser.add_argument("--transport", default=None, help="grpc-bidi, grpc-rere or rest")
    args = parser.parse_args()

    fl.client.start_client(
        server_address=args.server_address,
        client=FlowerClient(args.partition_id).to_client(),
        transport=args.transport,
    )


if __name__ == "__main__":
    main()
