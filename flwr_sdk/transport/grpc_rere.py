"""grpc-rere: the Flower 1.12 Fleet API as unary gRPC calls, over grpclib.

The session flow (CreateNode, heartbeat, PullTaskIns, GetRun/GetFab, PushTaskRes,
DeleteNode) lives in :mod:`flwr_sdk.transport.fleet_session`; this module only makes
calls:

* one HTTP/2 channel per session (:class:`~flwr_sdk.net.grpc_tuning.TunedChannel`
  from :class:`~flwr_sdk.transport.grpc_channel.GrpcChannelFactory`: TLS, size limits);
  every call is ``/flwr.proto.Fleet/<Rpc>`` with a deadline; the channel is closed
  when the session closes, so the process exits promptly (Flower 1.12 never closes it
  and hangs at exit);
* failures map onto :mod:`flwr_sdk.errors` by
  :func:`~flwr_sdk.transport.grpc_errors.map_grpc_error`; a call that gets no answer
  within its deadline counts as "unavailable" (retryable);
  ``UNAUTHENTICATED``/``PERMISSION_DENIED`` become
  :class:`~flwr_sdk.errors.AuthenticationError` (never retried);
* node authentication (``authentication_keys``, Flower 1.12 scheme,
  :mod:`flwr_sdk.wire.v1_12_auth`): every call carries ``public-key``; CreateNode's
  response carries the SuperLink's ``public-key`` as *initial metadata*, read through
  grpclib's stream API; ECDH + HKDF-SHA256 give the HMAC key, and every later call
  carries ``auth-token`` = HMAC-SHA256 over the request's deterministic serialization.
  A SuperLink that answers CreateNode without a key has no node authentication: the
  node is deleted again and :class:`~flwr_sdk.errors.AuthenticationError` raised
  (Flower 1.12 leaves a half-registered node and fails later).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import betterproto2
from flwr_sdk_proto.v1_12 import fleet_api
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from flwr_sdk.errors import AuthenticationError, ProtocolError, ServerUnavailableError
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import CALL_TIMEOUT, FleetConnector, FleetSession
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory
from flwr_sdk.transport.grpc_errors import map_grpc_error
from flwr_sdk.wire import v1_12_auth as auth

__all__ = ["GrpcRereConnector", "GrpcRereSession"]

log = logging.getLogger("flwr_sdk")

CREATE_NODE = fleet_api.FLEET_CREATE_NODE


class GrpcRereSession(FleetSession):
    """A Fleet session over one grpclib channel."""

    def __init__(self, factory: GrpcChannelFactory, settings: TransportSettings) -> None:
        super().__init__(retry=settings.retry)
        self._factory = factory
        self._channel = factory.create()
        self._keys = settings.authentication_keys
        self._public_key_header = (
            auth.public_key_to_header(self._keys[1]) if self._keys is not None else None
        )
        self._hmac_key: bytes | None = None
        self._answered = False

    # ------------------------------------------------------------------ metadata

    def _metadata(self, rpc: fleet_api.Rpc, request: betterproto2.Message) -> dict[str, str]:
        if self._public_key_header is None:
            return {}
        metadata = {auth.PUBLIC_KEY_HEADER: self._public_key_header}
        if rpc is not CREATE_NODE and self._hmac_key is not None:
            metadata[auth.AUTH_TOKEN_HEADER] = auth.auth_token(self._hmac_key, request)
        return metadata

    async def _create_node(self, request: pb.CreateNodeRequest) -> pb.CreateNodeResponse:
        response: pb.CreateNodeResponse = await self._call(
            CREATE_NODE, request, timeout=CALL_TIMEOUT, read_server_key=self._keys is not None
        )
        return response

    async def _after_create_node(self) -> None:
        if self._keys is not None and self._hmac_key is None:
            raise AuthenticationError(
                "authentication_keys were given, but the SuperLink sent no public key in "
                "its CreateNode response: it does not have node authentication enabled "
                "(start it with --auth-list-public-keys, --auth-superlink-private-key and "
                "--auth-superlink-public-key, or connect without authentication_keys)"
            )

    def _take_server_key(self, values: list[str]) -> None:
        assert self._keys is not None
        if not values:
            return
        try:
            server_key = auth.public_key_from_header(values[-1])
            self._hmac_key = auth.shared_hmac_key(self._keys[0], server_key)
        except ValueError as exc:
            raise AuthenticationError(f"the SuperLink sent an unusable public key: {exc}") from exc

    # ---------------------------------------------------------------------- calls

    async def _call(
        self,
        rpc: fleet_api.Rpc,
        request: betterproto2.Message,
        timeout: float,
        *,
        read_server_key: bool = False,
    ) -> Any:
        """One unary Fleet call with a deadline; failures as :mod:`flwr_sdk.errors`."""
        metadata = self._metadata(rpc, request)
        try:
            async with self._channel.request(
                rpc.grpc_path,
                rpc.cardinality,
                rpc.request_type,
                rpc.response_type,
                timeout=timeout,
                metadata=metadata,
            ) as stream:
                await stream.send_message(request, end=True)
                if read_server_key:
                    await stream.recv_initial_metadata()
                    initial: Any = stream.initial_metadata
                    values = [] if initial is None else initial.getall(auth.PUBLIC_KEY_HEADER, [])
                    self._take_server_key(list(values))
                response = await stream.recv_message()
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise ServerUnavailableError(f"{rpc.name} got no answer within {timeout:g} s") from exc
        except GRPCError as exc:
            if exc.status is Status.DEADLINE_EXCEEDED:
                raise ServerUnavailableError(
                    f"{rpc.name} got no answer within {timeout:g} s"
                ) from exc
            raise self._error(exc, rpc) from exc
        except Exception as exc:
            raise self._error(exc, rpc) from exc
        if response is None:
            raise ProtocolError(f"{rpc.name}: the server ended the call without a response")
        self._answered = True
        return response

    def _error(self, exc: BaseException, rpc: fleet_api.Rpc) -> Exception:
        return map_grpc_error(
            exc,
            host=self._factory.target.host,
            what=rpc.name,
            tls_handshake=self._factory.uses_tls and not self._answered,
        )

    async def _close_transport(self) -> None:
        self._channel.close()


class GrpcRereConnector(FleetConnector):
    """Registers nodes on one Flower 1.12 SuperLink's gRPC Fleet API."""

    name = "grpc-rere"

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__()
        self._settings = settings
        self._factory = GrpcChannelFactory(settings)

    def _new_session(self) -> FleetSession:
        return GrpcRereSession(self._factory, self._settings)
