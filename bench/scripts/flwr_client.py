"""Flower's own client for the round benchmark (run with a Flower venv's python).

    python flwr_client.py ADDRESS TRANSPORT

``flwr.client.start_client`` with a NumPyClient whose ``fit`` returns its input unchanged;
the same script serves flwr 1.12.0 and flwr 1.15.2 (the call is the same in both).
"""

from __future__ import annotations

import sys

import flwr as fl


class NoopClient(fl.client.NumPyClient):
    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        return parameters, 1, {}


if __name__ == "__main__":
    fl.client.start_client(
        server_address=sys.argv[1],
        client=NoopClient().to_client(),
        transport=sys.argv[2],
        insecure=True,
    )
