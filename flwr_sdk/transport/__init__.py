"""Transports that connect a client node to a Flower server (layer 5).

Each transport is one module (``grpc_bidi``, ``grpc_rere``, ``rest``) with a
``connector(settings, line)`` function; :func:`connector_for` picks it by the name
``start_client`` takes, from the table :data:`TRANSPORT_MODULES`, and imports only that
module. Shared pieces: ``base`` (the connection interface and settings),
``fleet_session`` (the Fleet API session every line and transport shares), ``retry``,
``address``, ``grpc_channel`` and ``grpc_errors``. Network plumbing shared with the
server lives in :mod:`flwr_sdk.net`; everything line-specific in :mod:`flwr_sdk.wire`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flwr_sdk.constants import TRANSPORTS

if TYPE_CHECKING:
    from flwr_sdk.transport.base import Connector, TransportSettings
    from flwr_sdk.wire.base import FleetLine

__all__ = ["TRANSPORT_MODULES", "connector_for"]

TRANSPORT_MODULES: dict[str, str] = {
    "grpc-bidi": "flwr_sdk.transport.grpc_bidi",
    "grpc-rere": "flwr_sdk.transport.grpc_rere",
    "rest": "flwr_sdk.transport.rest",
}
"""Transport name → the module that implements it."""

assert tuple(TRANSPORT_MODULES) == TRANSPORTS


def connector_for(name: str, settings: TransportSettings, line: FleetLine | None) -> Connector:
    """The connector of transport ``name`` (imports only that transport).

    ``line`` is the wire line the user chose, or None to detect it per connection.
    """
    module = importlib.import_module(TRANSPORT_MODULES[name])
    made: Connector = module.connector(settings, line)
    return made
