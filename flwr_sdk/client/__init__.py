"""Flower's ``flwr.client`` names under the same path: ``flwr_sdk.client``.

A Flower 1.12 client program keeps working with ``flwr`` renamed to ``flwr_sdk`` in its
imports: ``fl.client.start_client(...)``, ``from flwr_sdk.client import ClientApp,
NumPyClient``, ``from flwr_sdk.client.mod import LocalDpMod``. This package only
re-exports (the names of ``flwr.client.__all__`` in Flower 1.12, plus the submodules
``mod`` and ``typing``); the implementations live in :mod:`flwr_sdk.clientapp`,
:mod:`flwr_sdk.app` and :mod:`flwr_sdk.start_numpy`. ``docs/flower-api.md`` lists what
differs from Flower.
"""

from flwr_sdk.app import start_client
from flwr_sdk.client import mod
from flwr_sdk.client.typing import ClientFn, ClientFnExt
from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.start_numpy import start_numpy_client

__all__ = [
    "Client",
    "ClientApp",
    "ClientFn",
    "ClientFnExt",
    "NumPyClient",
    "mod",
    "start_client",
    "start_numpy_client",
]
