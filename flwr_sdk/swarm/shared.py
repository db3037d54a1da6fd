"""Connections that the nodes of a swarm share, where the transport allows it.

* ``grpc-rere``: one HTTP/2 channel (a :class:`~flwr_sdk.net.grpc_tuning.TunedChannel`)
  carries every node's unary calls as separate streams; each node still has its own
  session, node-auth object (its own keys and, on 1.12, its own shared secret), retry
  budget and heartbeat.
* ``rest``: one ``httpx.AsyncClient`` whose pool (:data:`REST_POOL` connections, HTTP/1.1
  keep-alive) serves every node's calls.
* ``grpc-bidi``: not shared; each node has its own channel (the legacy server ties a
  node to its stream's connection).

A node's session never closes a shared connection; :meth:`SharedConnections.aclose`
does, once every node has stopped.
"""

from __future__ import annotations

import random

import httpx
from grpclib.client import Channel

from flwr_sdk.transport import connector_for
from flwr_sdk.transport.address import parse_rest_address
from flwr_sdk.transport.base import Connection, Connector, TransportSettings
from flwr_sdk.transport.fleet_session import FleetCaller, FleetConnector
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory
from flwr_sdk.transport.grpc_rere import GrpcRereCaller
from flwr_sdk.transport.rest import RestCaller, http_client
from flwr_sdk.wire.base import FleetLine, NodeAuth

__all__ = ["REST_POOL", "SHARED_TRANSPORTS", "PollJitter", "SharedConnections"]

REST_POOL = 64
"""Connections of the HTTP pool the REST nodes of a swarm share."""

SHARED_TRANSPORTS = ("grpc-rere", "rest")
"""Transports whose nodes share one connection (pool)."""


class _OneChannelFactory(GrpcChannelFactory):
    """A channel factory that hands out the same channel every time."""

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        self._channel: Channel | None = None

    def create(self) -> Channel:
        """The shared channel (made on first use)."""
        if self._channel is None:
            self._channel = super().create()
        return self._channel

    def close(self) -> None:
        """Close the shared channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class _BorrowedChannelCaller(GrpcRereCaller):
    """A session's grpc-rere caller on the shared channel: closing it leaves the channel."""

    async def close(self) -> None:
        """Nothing: the shared channel outlives the session."""


class PollJitter(Connector):
    """Wraps a connector: each session polls every ``interval * U(0.9, 1.1)`` s.

    ``interval`` None keeps the line's cadence (Flower's 3 s) and only adds the jitter,
    so that nodes started together do not keep polling in step.
    """

    def __init__(self, inner: Connector, interval: float | None, rng: random.Random) -> None:
        self.name = inner.name
        self._inner = inner
        self._interval = interval
        self._rng = rng

    async def connect(self) -> Connection:
        """The inner connector's session, with its poll interval set."""
        connection = await self._inner.connect()
        base = connection.poll_interval if self._interval is None else self._interval
        if base > 0:
            connection.poll_interval = base * self._rng.uniform(0.9, 1.1)
        return connection


class SharedConnections:
    """The connection(s) all nodes of one swarm share, and their connectors."""

    def __init__(self, transport: str, settings: TransportSettings, *, share: bool = True) -> None:
        self.transport = transport
        self.shared = share and transport in SHARED_TRANSPORTS
        self._grpc: _OneChannelFactory | None = None
        self._http: httpx.AsyncClient | None = None
        if self.shared and transport == "grpc-rere":
            self._grpc = _OneChannelFactory(settings)
        elif self.shared:
            target = parse_rest_address(settings.server_address)
            limits = httpx.Limits(max_connections=REST_POOL, max_keepalive_connections=REST_POOL)
            self._http = http_client(target, settings, limits=limits)

    def connector(self, settings: TransportSettings, line: FleetLine | None) -> Connector:
        """A node's connector: its own sessions (``settings``: its keys, retry policy)."""
        grpc, http = self._grpc, self._http
        if grpc is not None:

            def grpc_caller(auth: NodeAuth) -> FleetCaller:
                return _BorrowedChannelCaller(grpc, auth)

            return FleetConnector(self.transport, settings, grpc_caller, line)
        if http is not None:
            target = parse_rest_address(settings.server_address)

            def rest_caller(auth: NodeAuth) -> FleetCaller:
                return RestCaller(target, settings, auth, client=http)

            return FleetConnector(self.transport, settings, rest_caller, line)
        return connector_for(self.transport, settings, line)

    async def aclose(self) -> None:
        """Close the shared connection (after every node stopped)."""
        if self._grpc is not None:
            self._grpc.close()
        if self._http is not None:
            await self._http.aclose()
