"""grpc-rere: a Fleet API as unary gRPC calls, over grpclib.

The session flow (register, heartbeat, pull, run info, push, unregister) lives in
:mod:`flwr_sdk.transport.fleet_session` and every line-specific rule in the line's
adapter under :mod:`flwr_sdk.wire`; this module only makes calls:

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
* node authentication: every call carries the metadata the session's
  :class:`~flwr_sdk.wire.base.NodeAuth` gives for it; where the scheme names a
  response-metadata key (the 1.12 scheme: the SuperLink's ``public-key`` in CreateNode's
  answer, :mod:`flwr_sdk.wire.v1_12_auth`), each response's *initial metadata* under it is
  read through grpclib's stream API and handed to the node-auth object.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import betterproto2
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from flwr_sdk.errors import ProtocolError, ServerUnavailableError
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import PROBE_TIMEOUT, FleetCaller, FleetConnector
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory
from flwr_sdk.transport.grpc_errors import map_grpc_error
from flwr_sdk.wire.base import FleetLine, Metadata, NodeAuth, ProbeCall, Rpc
from flwr_sdk.wire.detect import Probe, ProbeOutcome

__all__ = ["GrpcRereCaller", "connector"]

_PROBE_OUTCOMES = {
    Status.UNAUTHENTICATED: ProbeOutcome.UNAUTHENTICATED,
    Status.UNIMPLEMENTED: ProbeOutcome.ABSENT,
    Status.FAILED_PRECONDITION: ProbeOutcome.REFUSED,
}

log = logging.getLogger("flwr_sdk")


def _no_answer(rpc: Rpc, timeout: float) -> ServerUnavailableError:
    return ServerUnavailableError(f"{rpc.name} failed: no answer within {timeout:g} s")


class GrpcRereCaller(FleetCaller):
    """Unary Fleet calls over one grpclib channel, for one session."""

    def __init__(self, factory: GrpcChannelFactory, auth: NodeAuth) -> None:
        self._factory = factory
        self._channel = factory.create()
        self._auth = auth
        self._answered = False

    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """One unary Fleet call with a deadline; failures as :mod:`flwr_sdk.errors`."""
        metadata = self._auth.call_metadata(rpc, request)
        key = self._auth.response_metadata_key
        try:
            async with self._request(rpc, timeout, metadata) as stream:
                await stream.send_message(request, end=True)
                if key is not None:
                    await stream.recv_initial_metadata()
                    initial: Any = stream.initial_metadata
                    values = [] if initial is None else initial.getall(key, [])
                    self._auth.take_response_metadata(list(values))
                response = await stream.recv_message()
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise _no_answer(rpc, timeout) from exc
        except GRPCError as exc:
            if exc.status is Status.DEADLINE_EXCEEDED:
                raise _no_answer(rpc, timeout) from exc
            raise self._error(exc, rpc) from exc
        except Exception as exc:
            raise self._error(exc, rpc) from exc
        if response is None:
            raise ProtocolError(f"{rpc.name} failed: the server ended the call without a response")
        self._answered = True
        return response

    async def probe(self, rpc: Rpc, call: ProbeCall | None = None) -> Probe:
        """Call ``rpc`` with ``call``'s request and credentials (default: empty, none).

        The status classifies the answer.
        """
        request = rpc.request_type()
        metadata: Metadata | None = None
        if call is not None and call.request is not None:
            request = call.request
        if call is not None and call.auth is not None:
            metadata = call.auth.call_metadata(rpc, request)
        try:
            async with self._request(rpc, PROBE_TIMEOUT, metadata) as stream:
                await stream.send_message(request, end=True)
                await stream.recv_message()
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise _no_answer(rpc, PROBE_TIMEOUT) from exc
        except GRPCError as exc:
            outcome = _PROBE_OUTCOMES.get(exc.status)
            if outcome is None:
                if exc.status in (Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED):
                    raise self._error(exc, rpc) from exc
                outcome = ProbeOutcome.OTHER
            return Probe(outcome, f"{exc.status.name} {exc.message or ''!r}")
        except Exception as exc:
            raise self._error(exc, rpc) from exc
        self._answered = True
        return Probe(ProbeOutcome.ANSWERED, "OK")

    def _request(self, rpc: Rpc, timeout: float, metadata: Metadata | None) -> Any:
        return self._channel.request(
            rpc.grpc_path,
            rpc.cardinality,
            rpc.request_type,
            rpc.response_type,
            timeout=timeout,
            metadata=metadata,
        )

    def _error(self, exc: BaseException, rpc: Rpc) -> Exception:
        return map_grpc_error(
            exc,
            host=self._factory.target.host,
            what=rpc.name,
            tls_handshake=self._factory.uses_tls and not self._answered,
        )

    async def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def connector(settings: TransportSettings, line: FleetLine | None) -> FleetConnector:
    """Registers nodes on one SuperLink's gRPC Fleet API (``line``: None to detect)."""
    factory = GrpcChannelFactory(settings)
    return FleetConnector("grpc-rere", settings, lambda auth: GrpcRereCaller(factory, auth), line)
