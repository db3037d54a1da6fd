"""Legacy client layer: :class:`Client`, :class:`NumPyClient` and the message adapter."""

from flwr_sdk.clientapp.client import Client, not_implemented_status
from flwr_sdk.clientapp.dispatch import (
    AnyClientFn,
    ClientFn,
    adapt_client_fn,
    error_reply_for,
    handle_message,
    load_error_reply_for,
    to_client,
)
from flwr_sdk.clientapp.numpy_client import NumPyClient, NumPyClientAdapter
from flwr_sdk.common import legacy_types as _legacy_types
from flwr_sdk.common.legacy_types import *  # noqa: F403  (all of legacy_types.__all__)
from flwr_sdk.common.ndarrays import (
    NDArray,
    NDArrays,
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

__all__ = [
    "AnyClientFn",
    "Client",
    "ClientFn",
    "NDArray",
    "NDArrays",
    "NumPyClient",
    "NumPyClientAdapter",
    "adapt_client_fn",
    "bytes_to_ndarray",
    "error_reply_for",
    "handle_message",
    "load_error_reply_for",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "not_implemented_status",
    "parameters_to_ndarrays",
    "to_client",
]
__all__ += _legacy_types.__all__
