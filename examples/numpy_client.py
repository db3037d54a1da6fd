"""A NumPy client that uses only flwr-sdk's public API.

Its "training" is deterministic so a server can check the federated result: client *i*
adds ``i + 1`` to every parameter and reports ``10 * (i + 1)`` examples; evaluation
reports a loss of ``i + 1``.

Run it against a Flower server (legacy ``start_server`` or a SuperLink):

    python -m examples.numpy_client --server-address 127.0.0.1:8080 --index 0
    python -m examples.numpy_client --server-address 127.0.0.1:9092 --transport grpc-rere
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import numpy.typing as npt

import flwr_sdk
from flwr_sdk import Context, NumPyClient

NDArrays = list[npt.NDArray[np.generic]]


class ShiftClient(NumPyClient):
    """Adds ``index + 1`` to the parameters it is given."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.parameters: NDArrays = [np.zeros(3, dtype=np.float32)]

    def get_parameters(self, config: dict[str, flwr_sdk.common.legacy_types.Scalar]) -> NDArrays:
        return self.parameters

    def fit(
        self, parameters: NDArrays, config: dict[str, flwr_sdk.common.legacy_types.Scalar]
    ) -> tuple[NDArrays, int, dict[str, flwr_sdk.common.legacy_types.Scalar]]:
        shifted = [p + np.asarray(self.index + 1, dtype=p.dtype) for p in parameters]
        metrics: dict[str, flwr_sdk.common.legacy_types.Scalar] = {
            "client_index": self.index,
            "seen_round": config.get("round", -1),
        }
        return shifted, 10 * (self.index + 1), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, flwr_sdk.common.legacy_types.Scalar]
    ) -> tuple[float, int, dict[str, flwr_sdk.common.legacy_types.Scalar]]:
        return float(self.index + 1), 10, {"client_index": self.index}


def client_fn(context: Context) -> flwr_sdk.Client:
    """Build the client for this node (index 0 unless the node config says otherwise)."""
    index = int(context.node_config.get("index", 0))
    return ShiftClient(index).to_client()


def main() -> None:
    """Parse arguments and run one client node until the server ends the session."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--transport", default=None)
    parser.add_argument("--root-certificates", default=None, help="path to a PEM file")
    parser.add_argument("--max-retries", type=int, default=None)
    parser.add_argument("--max-wait-time", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    flwr_sdk.start_client(
        server_address=args.server_address,
        client=ShiftClient(args.index),
        transport=args.transport,
        root_certificates=args.root_certificates,
        max_retries=args.max_retries,
        max_wait_time=args.max_wait_time,
    )


if __name__ == "__main__":
    main()
