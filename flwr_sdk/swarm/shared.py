"""Connections that the nodes of a swarm share, where the transport allows it.

* ``grpc-rere``: one HTTP/2 channel (a :class:`~flwr_sdk.net.grpc_tuning.TunedChannel`)
  carries every node's unary calls as separate streams; each node still has its own
  session, node-auth object (its own keys and, on 1.12, its own shared secret), retry
  budget and heartbeat. At most :data:`GRPC_STREAMS` calls are open at once, the others
  wait their turn in order: an HTTP/2 server allows only so many streams (h2, hence
  grpclib: 100), and grpclib wakes *every* waiting call each time a stream closes, which
  with 2,000 nodes starting together cost minutes of CPU and timed calls out.
  Heartbeats and the calls that take a node off the server wait too, but ahead of
  every other call (:class:`PriorityGate`): behind a round's thousands of pushes a ping
  came too late and the server took its node for gone; skipping the gate instead, the
  first pings of 10,000 nodes registering at once went past the server's 100 streams and
  waited inside grpclib, which woke all of them at every closed stream (53 to 74 % of
  the swarm's CPU, pings timed out and nodes failed).
* ``rest``: :data:`REST_POOL` HTTP/1.1 keep-alive connections, held by
  ``REST_POOL // REST_SHARD`` ``httpx.AsyncClient`` s of :data:`REST_SHARD` connections
  each (a node's session is given one, in turn): httpcore checks every connection of a
  client's pool for expiry, a socket probe each, whenever it places a request or a
  response ends, so one client of 64 connections spent ~80 % of a 1.42 swarm's CPU
  there. At most ``REST_POOL`` calls are under way, the others wait in order
  (httpcore's own queue costs CPU in proportion to its length for every request it
  places: 500 nodes took minutes to register through it). Heartbeats (and leaving
  calls) wait too, but ahead of every other call: skipping the gate, they waited in
  httpcore's queue behind a round's pushes; with a pool of their own (16 connections),
  a swarm whose event loop was saturated by polls got 16 pings through per round trip
  (~1 s there) for 100 due a second, and 2,000 REST nodes went offline.
* ``grpc-bidi``: not shared; each node has its own channel (the legacy server ties a
  node to its stream's connection).

A node's session never closes a shared connection; :meth:`SharedConnections.aclose`
does, once every node has stopped.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
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
    "PriorityGate",
    "REST_POOL",
    "REST_SHARD",
    "SHARED_TRANSPORTS",
    "PollJitter",
    "SharedConnections",
]

GRPC_STREAMS = 90
"""Calls open at once on a swarm's shared gRPC channel (below h2's 100 streams)."""

REST_POOL = 64
"""Connections of the HTTP pool the REST nodes of a swarm share (calls under way at once)."""

REST_SHARD = 8
"""Connections per HTTP client of that pool (see the module docs)."""

SHARED_TRANSPORTS = ("grpc-rere", "rest")
"""Transports whose nodes share one connection (pool)."""


class PriorityGate:
    """At most ``slots`` calls at once; waiting urgent calls get the next free slot first.

    Among urgent calls (heartbeats, leaves), and among the others, first come first
    served. The waiting lines are deques: admitting or releasing costs the same however
    many wait.
    """

    def __init__(self, slots: int) -> None:
        """A gate of ``slots`` slots."""
        self._free = slots
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._other: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._urgent) + len(self._other)

    async def acquire(self, urgent: bool) -> None:
        """Take a slot (``urgent``: a heartbeat or a leave, ahead of every other call)."""
        line = self._urgent if urgent else self._other
        if self._free and not self._urgent and (urgent or not self._other):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as this call was cancelled
            elif waiter in line:  # a release() may have passed over it already
                line.remove(waiter)
            raise

    def release(self) -> None:
        """Give the slot to the next waiting call (an urgent one first), or free it."""
        for line in (self._urgent, self._other):
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


class _OneChannelFactory(GrpcChannelFactory):
    """A channel factory that hands out the same channel every time, and its call gate."""

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        self._channel: Channel | None = None
        self.gate = PriorityGate(GRPC_STREAMS)

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
def _urgent_paths() -> frozenset[str]:
    """The gRPC paths of every line's heartbeat and leaving (deactivate, unregister) RPCs.

    A late heartbeat costs the node its place; a late leave, a node the server still
    counts after the swarm stopped.
    """
    paths = set()
    for line in all_lines():
        rpcs = line.rpcs
        for rpc in (rpcs.heartbeat, rpcs.unregister, rpcs.deactivate):
            if rpc is not None:
                paths.add(rpc.grpc_path)
    return frozenset(paths)


class _GatedCaller(FleetCaller):
    """Calls that wait for one of the shared connection's slots (:class:`PriorityGate`).

    Heartbeats and leaving calls (:func:`_urgent_paths`) go first in the gate.
    """

    _gate: PriorityGate

    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """The call, once a slot of the shared connection is free (see the class docs)."""
        await self._gate.acquire(urgent=rpc.grpc_path in _urgent_paths())
        try:
            return await super().call(rpc, request, timeout)  # type: ignore[safe-super]
        finally:
            self._gate.release()

    async def probe(self, *args: Any, **kwargs: Any) -> Probe:
        """The probe, once a slot of the shared connection is free."""
        await self._gate.acquire(urgent=False)
        try:
            return await super().probe(*args, **kwargs)  # type: ignore[safe-super]
        finally:
            self._gate.release()


class _BorrowedChannelCaller(_GatedCaller, GrpcRereCaller):
    """A session's grpc-rere caller on the shared channel: closing it leaves the channel."""

    def __init__(self, factory: _OneChannelFactory, auth: NodeAuth) -> None:
        GrpcRereCaller.__init__(self, factory, auth)
        self._gate = factory.gate

    async def close(self) -> None:
        """Nothing: the shared channel outlives the session."""


class _PooledRestCaller(_GatedCaller, RestCaller):
    """A session's REST caller on the shared HTTP client (which it never closes)."""

    def __init__(
        self,
        target: RestTarget,
        settings: TransportSettings,
        auth: NodeAuth,
        client: httpx.AsyncClient,
        gate: PriorityGate,
    ) -> None:
        RestCaller.__init__(self, target, settings, auth, client=client)
        self._gate = gate


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
        self._http: list[httpx.AsyncClient] = []
        if self.shared and transport == "grpc-rere":
            self._grpc = _OneChannelFactory(settings)
        elif self.shared:
            target = parse_rest_address(settings.server_address)
            limits = httpx.Limits(max_connections=REST_SHARD, max_keepalive_connections=REST_SHARD)
            self._http = [
                http_client(target, settings, limits=limits) for _ in range(REST_POOL // REST_SHARD)
            ]
        self._next_http = itertools.cycle(self._http)
        self._http_gate = PriorityGate(REST_POOL)

    def _callers(self, settings: TransportSettings) -> CallerFactory | None:
        """How a node's sessions make calls (``settings``: the node's); None: grpc-bidi."""
        grpc = self._grpc
        if grpc is not None:
            return lambda auth: _BorrowedChannelCaller(grpc, auth)
        if self._http:
            target = parse_rest_address(settings.server_address)
            gate, clients = self._http_gate, self._next_http
            return lambda auth: _PooledRestCaller(target, settings, auth, next(clients), gate)
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

    @property
    def backlog(self) -> int:
        """Calls waiting for a slot of the shared connection now (0 when not shared)."""
        if self._grpc is not None:
            return self._grpc.gate.waiting
        if self._http:
            return self._http_gate.waiting
        return 0

    async def aclose(self) -> None:
        """Close the shared connection (after every node stopped)."""
        if self._grpc is not None:
            self._grpc.close()
        for client in self._http:
            await client.aclose()
