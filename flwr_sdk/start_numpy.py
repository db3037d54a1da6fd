"""``start_numpy_client``: Flower's deprecated way to run a :class:`NumPyClient`.

Kept so that Flower programs written before ``to_client()`` existed run unchanged. It
logs a deprecation warning, converts the client with ``client.to_client()`` and calls
:func:`flwr_sdk.app.start_client` with the same arguments.
"""

from __future__ import annotations

import logging

from flwr_sdk.app import start_client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH

__all__ = ["start_numpy_client"]

log = logging.getLogger("flwr_sdk")


def start_numpy_client(
    *,
    server_address: str,
    client: NumPyClient,
    grpc_max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
) -> None:
    """Start a node for a :class:`NumPyClient` (deprecated: use ``start_client``).

    Same as ``start_client(server_address=..., client=client.to_client(), ...)`` with the
    arguments Flower 1.12's ``start_numpy_client`` takes; logs a deprecation WARNING
    first. See :func:`flwr_sdk.start_client` for the arguments and errors.

    Raises:
        TypeError: ``client`` is not a :class:`NumPyClient` (or another argument is
            invalid, as :func:`flwr_sdk.start_client` raises).

    """
    if not isinstance(client, NumPyClient):
        raise TypeError(
            f"client must be a flwr_sdk.client.NumPyClient, got {type(client).__name__}"
        )
    log.warning(
        "start_numpy_client() is deprecated: call start_client(server_address=..., "
        "client=%s().to_client()) instead",
        type(client).__name__,
    )
    start_client(
        server_address=server_address,
        client=client.to_client(),
        grpc_max_message_length=grpc_max_message_length,
        root_certificates=root_certificates,
        insecure=insecure,
        transport=transport,
    )
