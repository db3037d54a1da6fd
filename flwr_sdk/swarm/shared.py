"""Connections that the nodes of a swarm share, where the transport allows it.

* ``grpc-rere``: one HTTP/2 channel (a :class:`~flwr_sdk.net.grpc_tuning.TunedChannel`)
  carries every node's unary calls as separate streams; each node still has its own
  session, node-auth object (its own keys and, on 1.12, its own shared secret), retry
  budget and heartbeat. At most :data:`GRPC_STREAMS` calls are open at once, the others
  wait their turn in order: an HTTP/2 server allows only so many streams (h2, hence
  grpclib: 100), and grpclib wakes *every* waiting call each time a stream closes, which
  with 2,000 nodes starting together cost minutes of CPU and timed calls out. Heartbeats
  skip the queue: behind a round's thousands of pushes a ping came too late and the
  server took its node for gone.
* ``rest``: one ``httpx.AsyncClient`` whose pool (:data:`REST_POOL` connections, HTTP/1.1
  keep-alive) serves every node's calls; at most that many calls are under way, the
  others wait in order (httpcore's own queue costs CPU in proportion to its length for
  every request it places: 500 nodes took minutes to register through it). Heartbeats
  have a second client, a pool of :data:`HEARTBEAT_POOL` connections of their own:
  skipping the queue was not enough, they then waited in the one pool behind a round's
  pushes, and 2,000 REST nodes lost nodes to late heartbeats.
* ``grpc-bidi``: not shared; each node has its own channel (the legacy server ties a
  node to its stream's connection).

A node's session never closes a shared connection; :meth:`SharedConnections.aclose`
does, once every node has stopped.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any

import betterproto2
import httpx
from grpclib.client import Channel

from flwr_sdk.transport import connector_for
from flwr_sdk.transport.address import RestTarget, parse_rest_address
from flwr_sdk.transport.base import Connection, Connector, TransportSettings
from flwr_sdk.transport.fleet_session import CallerFactory, FleetCaller, FleetConnector
from flwr_sdk.transport.grpc_channel import GrpcChannelFactory
from flwr_sdk.transport.grpc_rere import GrpcRereCaller
from flwr_sdk.transport.rest import RestCaller, http_client
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.base import FleetLine, NodeAuth, Rpc
from flwr_sdk.wire.detect import Probe
from flwr_sdk.wire.lines import all_lines

__all__ = [
    "GRPC_STREAMS",
    "HEARTBEAT_POOL",
    "REST_POOL",
    "SHARED_TRANSPORTS",
    "PollJitter",
    "SharedConnections",
]

GRPC_STREAMS = 90
"""Calls open at once on a swarm's shared gRPC channel (below h2's 100 streams)."""

REST_POOL = 64
"""Connections of the HTTP pool the REST nodes of a swarm share."""

HEARTBEAT_POOL = 16
"""Connections of the second HTTP pool, heartbeats only, of a swarm's REST nodes."""

SHARED_TRANSPORTS = ("grpc-rere", "rest")
"""Transports whose nodes share one connection (pool)."""


class _OneChannelFactory(GrpcChannelFactory):
    """A channel factory that hands out the same channel every time, and its call gate."""

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        self._channel: Channel | None = None
        self.gate = asyncio.Semaphore(GRPC_STREAMS)

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


@functools.cache
def _heartbeat_paths() -> frozenset[str]:
    """The gRPC paths of every line's heartbeat RPC."""
    return frozenset(line.rpcs.heartbeat.grpc_path for line in all_lines())


class _GatedCaller(FleetCaller):
    """Calls that wait for one of the shared connection's slots (heartbeats do not).

    ``_lane``: where heartbeats go instead, with the gate of its own slots, when the
    connection has a lane for them (REST: a second HTTP client); None: they skip the
    gate on the shared connection.
    """

    _gate: asyncio.Semaphore
    _lane: tuple[FleetCaller, asyncio.Semaphore] | None = None

    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """The call, once a slot of the shared connection is free; a heartbeat at once."""
        if rpc.grpc_path in _heartbeat_paths():
            if self._lane is not None:
                lane, slots = self._lane
                async with slots:
                    return await lane.call(rpc, request, timeout)
            return await super().call(rpc, request, timeout)  # type: ignore[safe-super]
        async with self._gate:
            return await super().call(rpc, request, timeout)  # type: ignore[safe-super]

    async def probe(self, *args: Any, **kwargs: Any) -> Probe:
        """The probe, once a slot of the shared connection is free."""
        async with self._gate:
            return await super().probe(*args, **kwargs)  # type: ignore[safe-super]


class _BorrowedChannelCaller(_GatedCaller, GrpcRereCaller):
    """A session's grpc-rere caller on the shared channel: closing it leaves the channel."""

    def __init__(self, factory: _OneChannelFactory, auth: NodeAuth) -> None:
        GrpcRereCaller.__init__(self, factory, auth)
        self._gate = factory.gate

    async def close(self) -> None:
        """Nothing: the shared channel outlives the session."""


class _PooledRestCaller(_GatedCaller, RestCaller):
    """A session's REST caller on the shared HTTP clients (which it never closes).

    Heartbeats go through the second client, a pool of its own: in the main pool they
    waited behind a round's pushes and reached the server too late. Each pool has its
    gate (``gates``: main, heartbeats), as many slots as connections, so that httpcore
    never queues a request (its queue costs CPU in proportion to its length for every
    request it places).
    """

    def __init__(
        self,
        target: RestTarget,
        settings: TransportSettings,
        auth: NodeAuth,
        pools: tuple[httpx.AsyncClient, httpx.AsyncClient],
        gates: tuple[asyncio.Semaphore, asyncio.Semaphore],
    ) -> None:
        calls, heartbeats = pools
        RestCaller.__init__(self, target, settings, auth, client=calls)
        self._gate = gates[0]
        self._lane = (RestCaller(target, settings, auth, client=heartbeats), gates[1])


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
        self._http: tuple[httpx.AsyncClient, httpx.AsyncClient] | None = None
        if self.shared and transport == "grpc-rere":
            self._grpc = _OneChannelFactory(settings)
        elif self.shared:
            target = parse_rest_address(settings.server_address)
            self._http = (
                http_client(target, settings, limits=_pool(REST_POOL)),
                http_client(target, settings, limits=_pool(HEARTBEAT_POOL)),
            )
        self._http_gates = (asyncio.Semaphore(REST_POOL), asyncio.Semaphore(HEARTBEAT_POOL))

    def _callers(self, settings: TransportSettings) -> CallerFactory | None:
        """How a node's sessions make calls (``settings``: the node's); None: grpc-bidi."""
        grpc, http = self._grpc, self._http
        if grpc is not None:
            return lambda auth: _BorrowedChannelCaller(grpc, auth)
        if http is not None:
            target = parse_rest_address(settings.server_address)
            gates = self._http_gates
            return lambda auth: _PooledRestCaller(target, settings, auth, http, gates)
        if self.transport == "grpc-rere":
            factory = GrpcChannelFactory(settings)
            return lambda auth: GrpcRereCaller(factory, auth)
        if self.transport == "rest":
            target = parse_rest_address(settings.server_address)
            return lambda auth: RestCaller(target, settings, auth)
        return None

    def connector(
        self,
        settings: TransportSettings,
        line: FleetLine | None,
        *,
        detected_line: FleetLine | None = None,
        heartbeat_interval: float | None = None,
    ) -> Connector:
        """A node's connector: its own sessions (``settings``: its keys, retry policy).

        ``detected_line``: the line the swarm found out once (:meth:`detect`); the node
        then registers without a probe of its own. ``heartbeat_interval``: each
        session's; None: the line's. (See
        :class:`~flwr_sdk.transport.fleet_session.FleetConnector`; grpc-bidi has neither.)
        """
        callers = self._callers(settings)
        if callers is None:
            return connector_for(self.transport, settings, line)
        return FleetConnector(
            self.transport,
            settings,
            callers,
            line,
            detected_line=detected_line,
            heartbeat_interval=heartbeat_interval,
        )

    async def detect(
        self, settings: TransportSettings, line: FleetLine | None, policy: RetryPolicy
    ) -> FleetLine | None:
        """The line the server speaks, probed once for the whole swarm; None on grpc-bidi.

        Retried under ``policy`` while the server cannot be reached, as a node's
        connection would be.

        Raises:
            flwr_sdk.errors.WireLineError: the server speaks no supported line, or not
                the chosen ``line``.
            flwr_sdk.errors.RetriesExhaustedError: the server stayed unreachable.

        """
        connector = self.connector(settings, line)
        if not isinstance(connector, FleetConnector):
            return None
        return await policy.run(
            connector.line, describe=f"finding out the line of {settings.server_address}"
        )

    async def aclose(self) -> None:
        """Close the shared connection (after every node stopped)."""
        if self._grpc is not None:
            self._grpc.close()
        if self._http is not None:
            for client in self._http:
                await client.aclose()


def _pool(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)
