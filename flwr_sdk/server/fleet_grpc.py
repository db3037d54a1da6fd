"""The Fleet API over gRPC (grpc-rere), built on the generated ``FleetBase``.

Every method of ``flwr.proto.Fleet`` goes through one unary handler that reads the
request (the tuned server has already refused an oversized one with
``RESOURCE_EXHAUSTED``), authenticates it when node authentication is on, answers it from
the :class:`~flwr_sdk.server.fleet_servicer.FleetServicer` and maps failures to the
status a Flower 1.12 SuperLink sends:

* undecodable request body → ``INTERNAL "Exception deserializing request!"`` (grpcio's);
* failed node authentication → ``UNAUTHENTICATED "Access denied"``;
* a request the SuperLink fails on (unknown node in DeleteNode, empty PushTaskRes,
  non-UUID ancestry, unknown FAB) → ``UNKNOWN "Exception calling application: …"``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import grpclib
import grpclib.const
import grpclib.server
from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.const import Status

from flwr_sdk.errors import MessageTooLargeError
from flwr_sdk.server.fleet_servicer import FleetServicer
from flwr_sdk.server.fleet_state import FleetError, FleetState
from flwr_sdk.server.node_auth import ACCESS_DENIED, AccessDeniedError, NodeAuthenticator
from flwr_sdk.wire.v1_12_auth import PUBLIC_KEY_HEADER

__all__ = ["FleetGrpcServicer"]

log = logging.getLogger("flwr_sdk.server")


class FleetGrpcServicer(pb.FleetBase):
    """``flwr.proto.Fleet`` over gRPC for a :class:`FleetState`."""

    def __init__(self, state: FleetState, auth: NodeAuthenticator | None = None) -> None:
        self.state = state
        self.servicer = FleetServicer(state)
        self.auth = auth

    async def _handle(self, rpc: fleet_api.Rpc, stream: grpclib.server.Stream[Any, Any]) -> None:
        try:
            request = await stream.recv_message()
        except (MessageTooLargeError, grpclib.GRPCError):
            raise
        except Exception as exc:
            log.warning("%s: cannot decode the request: %s", rpc.name, exc)
            raise grpclib.GRPCError(Status.INTERNAL, "Exception deserializing request!") from exc
        if request is None:
            raise grpclib.GRPCError(Status.INTERNAL, "Exception deserializing request!")
        public_key: bytes | None = None
        if self.auth is not None:
            try:
                public_key = self.auth.check(rpc.name, request, stream.metadata or {}, self.state)
            except AccessDeniedError as exc:
                log.warning("%s refused: %s", rpc.name, exc.why)
                raise grpclib.GRPCError(Status.UNAUTHENTICATED, ACCESS_DENIED) from None
        try:
            response = self.servicer.handle(rpc.name, request, public_key)
        except FleetError as exc:
            log.warning("%s failed: %s", rpc.name, exc)
            raise grpclib.GRPCError(
                Status.UNKNOWN, f"Exception calling application: {exc}"
            ) from None
        if rpc.name == "CreateNode" and self.auth is not None:
            await stream.send_initial_metadata(
                metadata={PUBLIC_KEY_HEADER: self.auth.public_key_header}
            )
        await stream.send_message(response)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        """Every Fleet method → the shared unary handler."""
        return {
            rpc.grpc_path: grpclib.const.Handler(
                functools.partial(self._handle, rpc),
                rpc.cardinality,
                rpc.request_type,
                rpc.response_type,
            )
            for rpc in fleet_api.SERVICES["flwr.proto.Fleet"]
        }
