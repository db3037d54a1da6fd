"""A low-level Flower client: a ``Client`` built on ``flwr.common`` types.

Written the way Flower 1.12's docs write a ``Client`` by hand: ``FitIns`` / ``FitRes`` /
``EvaluateIns`` / ``EvaluateRes`` with a ``Status``, parameters converted with
``parameters_to_ndarrays`` / ``ndarrays_to_parameters``, and state that outlives a
round kept in ``context.state`` (a ``MetricsRecord`` counter and a ``ParametersRecord``
holding SGD momentum). The ``client_fn(context)`` is given to ``start_client``::

    python lowlevel_client.py --server-address 127.0.0.1:8080 --partition-id 0
"""

import argparse
from logging import INFO

import numpy as np
from flwr.client import Client, start_client
from flwr.common import (
    Code,
    Context,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    MetricsRecord,
    ParametersRecord,
    Status,
    array_from_numpy,
    log,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

LEARNING_RATE = 0.05
MOMENTUM = 0.5
LOCAL_STEPS = 4


def load_partition(partition_id: int):
    """Inputs and targets of a two-headed linear problem, one partition of it."""
    rng = np.random.default_rng(seed=100 + partition_id)
    n = 16 + 16 * partition_id
    x = rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    y = (x * np.array([0.5, 1.0, -1.5], dtype=np.float32)).sum(axis=1)
    z = rng.uniform(-1.0, 1.0, size=(n, 2))
    t = z[:, ::-1] + 0.25 * partition_id
    return x, y, z, t


def gradients(w, m, data):
    x, y, z, t = data
    err_y = (x * w).sum(axis=1) - y
    err_t = (z[:, :, None] * m[None, :, :]).sum(axis=1) - t
    loss = float(np.mean(err_y * err_y)) + float(np.mean(err_t * err_t))
    grad_w = 2.0 * (err_y[:, None] * x).mean(axis=0)
    grad_m = (z[:, :, None] * err_t[:, None, :]).mean(axis=0)
    return loss, grad_w, grad_m


class FlowerClient(Client):
    def __init__(self, partition_id: int, context: Context) -> None:
        self.partition_id = partition_id
        self.data = load_partition(partition_id)
        self.client_state = context.state

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        arrays = [np.zeros(3, dtype=np.float32), np.zeros((2, 2))]
        return GetParametersRes(
            status=Status(code=Code.OK, message="Success"),
            parameters=ndarrays_to_parameters(arrays),
        )

    def fit(self, ins: FitIns) -> FitRes:
        w, m = parameters_to_ndarrays(ins.parameters)

        # SGD momentum carried over from earlier rounds (none in the first one).
        if "momentum" in self.client_state.parameters_records:
            momentum = self.client_state.parameters_records["momentum"]
            velocity_w = momentum["w"].numpy()
            velocity_m = momentum["m"].numpy()
        else:
            velocity_w = np.zeros_like(w)
            velocity_m = np.zeros_like(m)

        for _ in range(LOCAL_STEPS):
            loss, grad_w, grad_m = gradients(w, m, self.data)
            velocity_w *= MOMENTUM
            velocity_w += grad_w
            velocity_m *= MOMENTUM
            velocity_m += grad_m
            w -= LEARNING_RATE * velocity_w
            m -= LEARNING_RATE * velocity_m

        self.client_state.parameters_records["momentum"] = ParametersRecord(
            {"w": array_from_numpy(velocity_w), "m": array_from_numpy(velocity_m)}
        )
        if "progress" not in self.client_state.metrics_records:
            self.client_state.metrics_records["progress"] = MetricsRecord({"fit_rounds": 0})
        progress = self.client_state.metrics_records["progress"]
        progress["fit_rounds"] = int(progress["fit_rounds"]) + 1
        log(INFO, "fit %s: loss %.5f", progress["fit_rounds"], loss)

        return FitRes(
            status=Status(code=Code.OK, message="Success"),
            parameters=ndarrays_to_parameters([w, m]),
            num_examples=len(self.data[0]),
            metrics={"fit_rounds": progress["fit_rounds"], "train_loss": loss},
        )

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        w, m = parameters_to_ndarrays(ins.parameters)
        loss, _, _ = gradients(w, m, self.data)
        return EvaluateRes(
            status=Status(code=Code.OK, message="Success"),
            loss=loss,
            num_examples=len(self.data[0]),
            metrics={"round": ins.config["round"]},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower client (low-level Client API)")
    parser.add_argument("--server-address", default="127.0.0.1:8080")
    parser.add_argument("--partition-id", type=int, default=0)
    parser.add_argument("--transport", default=None, help="grpc-bidi, grpc-rere or rest")
    args = parser.parse_args()

    def client_fn(context: Context) -> Client:
        return FlowerClient(args.partition_id, context)

    start_client(server_address=args.server_address, client_fn=client_fn, transport=args.transport)


if __name__ == "__main__":
    main()
