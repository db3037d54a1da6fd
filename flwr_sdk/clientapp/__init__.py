"""The client layer: :class:`ClientApp` and its mods, :class:`Client`, :class:`NumPyClient`.

Also the adapter from a ``client_fn`` to Flower's message API (:func:`handle_message`)
and the typed handlers (:mod:`flwr_sdk.clientapp.handlers`). Flower users import these
from :mod:`flwr_sdk.client`, which re-exports them under Flower's names.
"""

from flwr_sdk.clientapp import mods
from flwr_sdk.clientapp.app import ClientApp, ClientAppCallable, MessageApp, Mod, make_ffn
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
    "ClientApp",
    "ClientAppCallable",
    "ClientFn",
    "NDArray",
    "MessageApp",
    "Mod",
    "NDArrays",
    "NumPyClient",
    "NumPyClientAdapter",
    "adapt_client_fn",
    "bytes_to_ndarray",
    "error_reply_for",
    "handle_message",
    "load_error_reply_for",
    "make_ffn",
    "mods",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "not_implemented_status",
    "parameters_to_ndarrays",
    "to_client",
]
__all__ += _legacy_types.__all__
