"""flwr-sdk: a protocol-first, code-generated client SDK for Flower servers.

Start a node with :func:`start_client` (or :func:`start_client_async` inside an event
loop); implement a :class:`Client` or a :class:`NumPyClient`, or build a
:class:`ClientApp`.

Flower's module paths are here too: ``import flwr_sdk as fl`` gives ``fl.client``
(``flwr.client``: ``start_client``, ``ClientApp``, ``NumPyClient``, ``mod``, …) and
``fl.common`` (``flwr.common``), so Flower client code runs with ``flwr`` renamed to
``flwr_sdk`` (see ``docs/flower-api.md``).
"""

from flwr_sdk import client, common
from flwr_sdk.app import start_client, start_client_async
from flwr_sdk.clientapp.app import ClientApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common import legacy_types as _legacy_types
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_types import *  # noqa: F403  (all of legacy_types.__all__)
from flwr_sdk.common.message import Error, Message, MessageType, Metadata
from flwr_sdk.common.ndarrays import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr_sdk.common.records import Array, ConfigsRecord, MetricsRecord, ParametersRecord, RecordSet

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Client",
    "ClientApp",
    "ConfigsRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricsRecord",
    "NumPyClient",
    "ParametersRecord",
    "RecordSet",
    "__version__",
    "bytes_to_ndarray",
    "client",
    "common",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
    "start_client",
    "start_client_async",
]
__all__ += _legacy_types.__all__
