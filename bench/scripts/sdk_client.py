"""flwr-sdk's client for the round benchmark (run with flwr-sdk's python).

    python sdk_client.py ADDRESS TRANSPORT

``flwr_sdk.start_client`` with the same NumPyClient as ``flwr_client.py``: ``fit`` returns
its input unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

import flwr_sdk
from flwr_sdk.client import NumPyClient


class NoopClient(NumPyClient):
    def fit(self, parameters: Any, config: Any) -> tuple[Any, int, dict[str, Any]]:
        return parameters, 1, {}


if __name__ == "__main__":
    flwr_sdk.start_client(
        server_address=sys.argv[1],
        client=NoopClient(),
        transport=sys.argv[2],
        insecure=True,
    )
