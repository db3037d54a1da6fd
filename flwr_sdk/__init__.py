"""flwr-sdk: a protocol-first, code-generated client SDK for Flower servers.

Start a node with :func:`start_client` (or :func:`start_client_async` inside an event
loop); implement a :class:`Client` or a :class:`NumPyClient`.
"""

from flwr_sdk.app import start_client, start_client_async
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
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
    "start_client",
    "start_client_async",
]
__all__ += _legacy_types.__all__
