"""Flower's ``flwr.client`` names under the same path: ``flwr_sdk.client``.

A Flower 1.12 client program keeps working with ``flwr`` renamed to ``flwr_sdk`` in its
imports: ``fl.client.start_client(...)``, ``from flwr_sdk.client import ClientApp,
NumPyClient``. This module only re-exports; the implementations live in
:mod:`flwr_sdk.clientapp` and :mod:`flwr_sdk.app`.
"""

from flwr_sdk.app import start_client
from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.dispatch import ClientFn
from flwr_sdk.clientapp.numpy_client import NumPyClient

__all__ = ["Client", "ClientApp", "ClientFn", "NumPyClient", "start_client"]
