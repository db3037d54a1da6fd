"""Run the REAL Flower 1.12 ``start_client`` with a deterministic NumPyClient.

Runs INSIDE an isolated flwr virtualenv (never imported by the test interpreter):

    python flwr_client.py --address 127.0.0.1:PORT --index 0 [--transport grpc-rere]
        [--root-cert PATH] [--auth-private-key KEY --auth-public-key KEY.pub]
        [--max-retries N] [--max-wait-time S]

Client *i* adds ``i + 1`` to every parameter and reports ``10 * (i + 1)`` examples and
the ``round`` of the fit config as metric ``seen_round``; evaluation reports loss
``i + 1`` on 10 examples (the same behaviour as examples/numpy_client.py's ShiftClient).
Prints ``RETURNED`` when ``start_client`` returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from flwr.client import NumPyClient, start_client


class ShiftClient(NumPyClient):
    def __init__(self, index: int) -> None:
        self.index = index

    def get_parameters(self, config):
        return [np.zeros(3, dtype=np.float32)]

    def fit(self, parameters, config):
        shifted = [p + np.asarray(self.index + 1, dtype=p.dtype) for p in parameters]
        metrics = {"client_index": self.index, "seen_round": int(config.get("round", -1))}
        return shifted, 10 * (self.index + 1), metrics

    def evaluate(self, parameters, config):
        return float(self.index + 1), 10, {"client_index": self.index}


def _load_private(path: str):
    data = Path(path).read_bytes()
    if data.startswith(b"-----BEGIN OPENSSH"):
        return serialization.load_ssh_private_key(data, password=None)
    return serialization.load_pem_private_key(data, password=None)


def _load_public(path: str):
    data = Path(path).read_bytes()
    if data.startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(data)
    return serialization.load_ssh_public_key(data)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--transport", default=None)
    parser.add_argument("--root-cert", default=None, help="CA certificate (PEM file)")
    parser.add_argument("--root-cert-bytes", action="store_true", help="pass it as bytes")
    parser.add_argument("--auth-private-key", default=None)
    parser.add_argument("--auth-public-key", default=None)
    parser.add_argument("--max-retries", type=int, default=None)
    parser.add_argument("--max-wait-time", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

    root = None
    if args.root_cert:
        root = Path(args.root_cert).read_bytes() if args.root_cert_bytes else args.root_cert
    keys = None
    if args.auth_private_key:
        keys = (_load_private(args.auth_private_key), _load_public(args.auth_public_key))
    start_client(
        server_address=args.address,
        client=ShiftClient(args.index).to_client(),
        transport=args.transport,
        root_certificates=root,
        insecure=None if root else True,
        authentication_keys=keys,
        max_retries=args.max_retries,
        max_wait_time=args.max_wait_time,
    )
    print("RETURNED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
