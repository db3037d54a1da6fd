"""The ClientApp Flower's ``flower-supernode`` runs in the benchmark: a no-op ``fit``.

The same NumPyClient logic as ``bench/scripts/flwr_client.py`` (and flwr-sdk's
``bench/scripts/sdk_client.py``): ``fit`` returns its input unchanged.
"""

from flwr.client import ClientApp, NumPyClient
from flwr.common import Context


class NoopClient(NumPyClient):
    def fit(self, parameters, config):
        return parameters, 1, {}


def client_fn(context: Context):
    return NoopClient().to_client()


app = ClientApp(client_fn=client_fn)
