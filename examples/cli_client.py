"""A client app for ``flwr-sdk client --app``: the deterministic ShiftClient.

    flwr-sdk client --app examples.cli_client:client_fn --server-address 127.0.0.1:8080
    flwr-sdk client --app examples.cli_client:client --server-address 127.0.0.1:8080

``client_fn`` builds ``ShiftClient(index)`` with the index from ``$FLWR_SDK_EXAMPLE_INDEX``
(default 0); ``client`` is a ready-made ``ShiftClient(0)`` instance.
"""

from __future__ import annotations

import os

import flwr_sdk
from examples.numpy_client import ShiftClient


def client_fn(context: flwr_sdk.Context) -> flwr_sdk.Client:
    """Build this node's client (index from ``$FLWR_SDK_EXAMPLE_INDEX``)."""
    index = int(os.environ.get("FLWR_SDK_EXAMPLE_INDEX", "0"))
    return ShiftClient(index).to_client()


client = ShiftClient(0)
"""A NumPyClient instance, for ``--app examples.cli_client:client``."""
