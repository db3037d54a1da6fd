"""What one wire line of the Fleet API provides to the front ends and the driver.

A line (Flower 1.12's TaskIns/TaskRes Fleet API, 1.15's Message Fleet API) is one
servicer class that implements its generated ``FleetBase``'s typed methods over the
line-neutral :class:`~flwr_sdk.server.fleet_state.FleetState`. The gRPC front end
(:mod:`~flwr_sdk.server.fleet_grpc`) serves its generated ``__mapping__``; the REST front
end (:mod:`~flwr_sdk.server.fleet_rest`) dispatches through its :meth:`rest_routes`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpclib.const

__all__ = ["FleetLineServicer", "FleetRoute"]


@dataclass(frozen=True)
class FleetRoute:
    """One Fleet call as the REST front end sees it: a request type and a typed method."""

    name: str
    """The method name (for logs), e.g. ``CreateNode``."""
    request_type: type[Any]
    call: Callable[[Any], Awaitable[Any]]


class FleetLineServicer(Protocol):
    """A wire line's Fleet servicer."""

    server_node_id: int
    """The node id instructions come from on this line."""

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        """The generated gRPC handlers (path → handler calling the typed methods)."""
        ...

    def rest_routes(self) -> Mapping[str, FleetRoute]:
        """HTTP path → the typed method answering it."""
        ...
