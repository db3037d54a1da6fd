"""A ``NumPyClient`` started with the older ``start_numpy_client`` entry point.

Flower 1.12 still ships ``fl.client.start_numpy_client`` (deprecated in favour of
``start_client(client=...to_client())``), and plenty of client code written for earlier
releases calls it. The client estimates a centroid and a second-moment matrix: each fit
moves the received estimates towards the local ones by the server's ``lr``::

    python numpy_client_legacy.py --server-address 127.0.0.1:8080 --partition-id 0
"""

import argparse

import flwr as fl
import numpy as np
from flwr.common import GRPC_MAX_MESSAGE_LENGTH, NDArrays, Scalar


class CentroidClient(fl.client.NumPyClient):
    """Local statistics of a cloud of 3-D points (centroid) and 2-D points (moments)."""

    def __init__(self, partition_id: int) -> None:
        rng = np.random.default_rng(seed=7 + partition_id)
        self.points = rng.normal(loc=partition_id, size=(12 + 6 * partition_id, 3))
        self.points = self.points.astype(np.float32)
        plane = rng.normal(size=(len(self.points), 2))
        self.moments = plane[:, :, None] * plane[:, None, :]

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return [self.points.mean(axis=0), self.moments.mean(axis=0)]

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        centroid, second_moment = parameters
        step = float(config["lr"])
        centroid += step * (self.points.mean(axis=0) - centroid)
        second_moment += step * (self.moments.mean(axis=0) - second_moment)
        metrics: dict[str, Scalar] = {
            "round": config["round"],
            "shift": float(np.abs(centroid).sum()),
        }
        return [centroid, second_moment], len(self.points), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        centroid, second_moment = parameters
        spread = ((self.points - centroid) ** 2).sum(axis=1)
        gap = ((self.moments - second_moment) ** 2).sum(axis=(1, 2))
        loss = float(spread.mean()) + float(gap.mean())
        return loss, len(self.points), {"spread": float(spread.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower NumPyClient (start_numpy_client)")
    parser.add_argument("--server-address", default="127.0.0.1:8080")
    parser.add_argument("--partition-id", type=int, default=0)
    parser.add_argument("--transport", default=None, help="grpc-bidi, grpc-rere or rest")
    args = parser.parse_args()

    fl.client.start_numpy_client(
        server_address=args.server_address,
        client=CentroidClient(args.partition_id),
        grpc_max_message_length=GRPC_MAX_MESSAGE_LENGTH,
        transport=args.transport,
    )


if __name__ == "__main__":
    main()
