"""Start and stop the reference server: listeners for one transport plus the driver.

The Fleet API (grpc-rere, REST) speaks one Flower wire line per server,
``ServerConfig.wire``: ``"1.12"`` (TaskIns/TaskRes, opt-in HMAC node auth, the default)
or ``"1.15"`` (Messages, signed-timestamp node auth always on for grpc-rere).
grpc-bidi is the same on every line.

Example::

    config = ServerConfig(transport="grpc-rere", port=9092, num_rounds=3,
                          strategy=FedAvg(min_fit_clients=2, min_available_clients=2))
    history = run_server(config)            # blocks until the last round

or, inside an event loop::

    async with ReferenceServer(config) as server:
        print(server.address)
        history = await server.run()

``run()`` runs FedAvg (:class:`~flwr_sdk.server.fedavg_app.FedAvgApp` from the config's
strategy and rounds); ``run(main)`` runs any server app of
:mod:`flwr_sdk.server.app_api` instead and returns what it returns.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, overload

from flwr_sdk.common.fab import FabError, _read_pyproject
from flwr_sdk.common.legacy_records import LEGACY_KINDS_BY_TYPE
from flwr_sdk.common.legacy_types import Scalar
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH, TRANSPORTS
from flwr_sdk.net.grpc_tuning import TunedServer, tuned_server
from flwr_sdk.net.grpclib_internals import bound_port
from flwr_sdk.net.limits import validate_max_message_length
from flwr_sdk.net.tls import server_ssl_context
from flwr_sdk.server.app_api import AppContext, AppDriver, ServerAppMain
from flwr_sdk.server.bidi import BidiNodePool, FlowerServiceServicer
from flwr_sdk.server.driver import DriverListener, History, NodePool
from flwr_sdk.server.fedavg_app import FedAvgApp
from flwr_sdk.server.fleet_grpc import GuardedFleetService, RequestGuard
from flwr_sdk.server.fleet_line import FleetLineServicer, FleetRoute
from flwr_sdk.server.fleet_state import FleetNodePool, FleetState
from flwr_sdk.server.fleet_v1_12 import FleetServicerV1_12
from flwr_sdk.server.fleet_v1_15 import FleetServicerV1_15
from flwr_sdk.server.fleet_v1_42 import FleetServicerV1_42
from flwr_sdk.server.node_auth import NodeAuthenticator
from flwr_sdk.server.node_auth_v1_15 import SignedTimestampAuthenticator
from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator
from flwr_sdk.server.strategy import FedAvg
from flwr_sdk.server.wire_check import StrictFastProtoCodec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from flwr_sdk.server.fleet_rest import RestFleetServer

__all__ = [
    "DEFAULT_PORTS",
    "TRANSPORTS",
    "ReferenceServer",
    "ServerConfig",
    "ServerTLS",
    "WIRES",
    "run_server",
]

log = logging.getLogger("flwr_sdk.server")

T = TypeVar("T")

DEFAULT_PORTS = {"grpc-bidi": 8080, "grpc-rere": 9092, "rest": 9093}
"""Flower's default ports: legacy server 8080, Fleet grpc-rere 9092, Fleet REST 9093."""

CARRIED_MESSAGE_TYPES: dict[str, frozenset[str]] = {
    "grpc-bidi": frozenset(LEGACY_KINDS_BY_TYPE),
}
"""Transports that carry only some message types (the others carry any)."""

RUN_FAB_ID = "flwr-sdk/reference-server"
RUN_FAB_VERSION = "1.0.0"


@dataclass(frozen=True)
class ServerTLS:
    """The server's certificate chain and private key, PEM."""

    certificate_chain: bytes
    private_key: bytes

    @classmethod
    def from_files(cls, certificate: str | Path, private_key: str | Path) -> ServerTLS:
        """Read both from files."""
        return cls(Path(certificate).read_bytes(), Path(private_key).read_bytes())

    def ssl_context(self, alpn: str) -> ssl.SSLContext:
        """A server ``SSLContext`` offering ``alpn`` (``h2`` for gRPC, ``http/1.1`` for REST)."""
        return server_ssl_context(self.certificate_chain, self.private_key, alpn=[alpn])


def _rest_server(
    routes: Mapping[str, FleetRoute], max_body: int, guard: RequestGuard | None, state: FleetState
) -> RestFleetServer:
    from flwr_sdk.server.fleet_rest import RestFleetServer  # needs the server extra

    return RestFleetServer(routes, max_body_size=max_body)


def _http_server_v1_42(
    routes: Mapping[str, FleetRoute], max_body: int, guard: RequestGuard | None, state: FleetState
) -> RestFleetServer:
    from flwr_sdk.server.fleet_http_v1_42 import HttpFleetServer  # needs the server extra

    return HttpFleetServer(
        routes, max_body_size=max_body, guard=guard or SignedCallAuthenticator(), state=state
    )


@dataclass(frozen=True)
class _Wire:
    """What the server needs of one wire line: its servicer and its node-auth scheme."""

    title: str
    servicer: Callable[[FleetState, RequestGuard | None, int], FleetLineServicer]
    """Builds the line's servicer for the node auth in effect and the message size limit."""
    auth_type: type
    auth_needs_tls: bool
    default_guard: Callable[[], RequestGuard | None]
    """The guard when ``ServerConfig.auth`` is None (None: no node auth)."""
    auth_transports: tuple[str, ...] = ("grpc-rere",)
    """The transports whose Fleet API authenticates nodes on this line."""
    rest_server: Callable[
        [Mapping[str, FleetRoute], int, RequestGuard | None, FleetState], RestFleetServer
    ] = _rest_server
    """The HTTP front end of the line (``transport="rest"``)."""


def _no_guard() -> RequestGuard | None:
    return None


def _line_only(
    servicer: Callable[[FleetState], FleetLineServicer],
) -> Callable[[FleetState, RequestGuard | None, int], FleetLineServicer]:
    """A servicer factory for a line whose servicer does not depend on node auth."""
    return lambda state, guard, max_message_length: servicer(state)


WIRES: dict[str, _Wire] = {
    "1.12": _Wire(
        "Flower 1.12 Fleet API",
        _line_only(FleetServicerV1_12),
        NodeAuthenticator,
        True,
        _no_guard,
    ),
    "1.15": _Wire(
        "Flower 1.15 Fleet API",
        _line_only(FleetServicerV1_15),
        SignedTimestampAuthenticator,
        False,
        SignedTimestampAuthenticator,
    ),
    "1.42": _Wire(
        "Flower 1.42 Fleet API",
        FleetServicerV1_42.for_guard,
        SignedCallAuthenticator,
        True,
        SignedCallAuthenticator,
        auth_transports=("grpc-rere", "rest"),
        rest_server=_http_server_v1_42,
    ),
}
"""The wire lines the reference server's Fleet API speaks, by name."""


@dataclass
class ServerConfig:
    """Everything the reference server needs.

    Attributes:
        transport: ``grpc-bidi``, ``grpc-rere`` or ``rest``.
        host: address to listen on (loopback by default).
        port: TCP port; ``None`` = Flower's default for the transport, 0 = any free port.
        num_rounds: FedAvg rounds (the default app).
        strategy: sampling, configs and aggregation (the default app).
        round_timeout: seconds a node gets per instruction (``None``: no limit); an app's
            default request timeout.
        wait_timeout: seconds to wait for enough nodes before a round (``None``: forever);
            an app's default for ``wait_for_nodes``.
        tls: certificate and key; ``None`` = plaintext.
        auth: node authentication of the wire line: 1.12, a
            :class:`NodeAuthenticator` (grpc-rere; ``None`` = off; needs TLS); 1.15, a
            :class:`SignedTimestampAuthenticator` with an allow-list (grpc-rere; ``None``
            = any key: 1.15 authenticates every grpc-rere call regardless); 1.42, a
            :class:`~flwr_sdk.server.node_auth_v1_42.SignedCallAuthenticator` with
            operator-registered keys (grpc-rere and rest; needs TLS, as
            ``--enable-supernode-auth``; ``None`` = nodes register their own keys, every
            call is authenticated regardless).
        max_message_length: largest gRPC message / REST body accepted or sent, in bytes.
        record_parameters: keep every round's model in the history (tests).
        run_config: what a server app reads from ``context.run_config``.
        fab: a FAB (ZIP bytes) the run names (its hash is the run's ``fab_hash``); the
            1.42 Fleet API serves it with GetFab, so Flower's own ``flower-supernode``
            can run its ClientApp. ``None``: the run names no FAB.
        wire: the Flower wire line of the Fleet API, ``"1.12"``, ``"1.15"`` or ``"1.42"``
            (grpc-bidi is the same on every line).

    """

    transport: str = "grpc-bidi"
    host: str = "127.0.0.1"
    port: int | None = None
    num_rounds: int = 3
    strategy: FedAvg = field(default_factory=FedAvg)
    round_timeout: float | None = None
    wait_timeout: float | None = None
    tls: ServerTLS | None = None
    auth: NodeAuthenticator | SignedTimestampAuthenticator | SignedCallAuthenticator | None = None
    max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH
    record_parameters: bool = False
    wire: str = "1.12"
    run_config: Mapping[str, Scalar] = field(default_factory=dict)
    fab: bytes | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}"
            )
        if self.wire not in WIRES:
            raise ValueError(f"wire must be one of {', '.join(WIRES)}, got {self.wire!r}")
        wire = WIRES[self.wire]
        if self.auth is not None:
            if self.transport not in wire.auth_transports:
                raise ValueError(
                    f"the {wire.title} authenticates nodes only on "
                    f"{' and '.join(wire.auth_transports)}"
                )
            if not isinstance(self.auth, wire.auth_type):
                raise ValueError(
                    f"the {wire.title} authenticates nodes with a {wire.auth_type.__name__}, "
                    f"got a {type(self.auth).__name__}"
                )
            if wire.auth_needs_tls and self.tls is None:
                raise ValueError("node authentication requires TLS (as on the Flower SuperLink)")
        validate_max_message_length(self.max_message_length, name="max_message_length")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    def guard(self) -> RequestGuard | None:
        """The grpc-rere node authentication in effect (the line's default without auth)."""
        if self.auth is not None:
            return self.auth
        return WIRES[self.wire].default_guard()


def _fleet_line(
    state: FleetState, config: ServerConfig, guard: RequestGuard | None
) -> FleetLineServicer:
    """The Fleet API servicer of the wire line this server speaks."""
    return WIRES[config.wire].servicer(state, guard, config.max_message_length)


def fab_identity(fab: bytes) -> tuple[str, str]:
    """``("<publisher>/<name>", version)`` of a FAB, from its ``pyproject.toml``.

    Flower's SuperNode installs a run's FAB under these and finds it by them again.

    Raises:
        FabError: the FAB has no usable ``pyproject.toml``.

    """
    try:
        project = tomllib.loads(_read_pyproject(fab).decode("utf-8"))
        publisher = project["tool"]["flwr"]["app"]["publisher"]
        name, version = project["project"]["name"], project["project"]["version"]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise FabError(f"the FAB's pyproject.toml names no publisher/name/version: {exc}") from exc
    return f"{publisher}/{name}", str(version)


def _format_address(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


class ReferenceServer:
    """The listeners of one transport and the driver that runs the rounds."""

    def __init__(self, config: ServerConfig, listener: DriverListener | None = None) -> None:
        self.config = config
        self.listener = listener
        self.state: FleetState | None = None
        self.pool: NodePool
        self.run_id = 0
        self._grpc: TunedServer | None = None
        self._rest: RestFleetServer | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        """``host:port`` (gRPC) or ``http(s)://host:port`` (REST) clients connect to."""
        if self.port is None:
            raise RuntimeError("the server is not started")
        hostport = _format_address(self.config.host, self.port)
        if self.config.transport == "rest":
            return f"{'https' if self.config.tls else 'http'}://{hostport}"
        return hostport

    async def start(self) -> None:
        """Open the listener (returns once it accepts connections)."""
        config = self.config
        port = DEFAULT_PORTS[config.transport] if config.port is None else config.port
        rest_routes: Mapping[str, FleetRoute] = {}
        if config.transport == "grpc-bidi":
            pool = BidiNodePool()
            self.pool = pool
            handlers: list[object] = [FlowerServiceServicer(pool)]
        else:
            state = FleetState()
            self.state = state
            fab_id, fab_version = (
                (RUN_FAB_ID, RUN_FAB_VERSION) if config.fab is None else fab_identity(config.fab)
            )
            self.run_id = state.create_run(fab_id, fab_version, config.fab)
            wire = WIRES[config.wire]
            guard = config.guard() if config.transport in wire.auth_transports else None
            line = _fleet_line(state, config, guard)
            self.pool = FleetNodePool(state, line.server_node_id)
            handlers = [GuardedFleetService(line, state, guard)]
            rest_routes = line.rest_routes()
        if config.transport == "rest":
            self._rest = WIRES[config.wire].rest_server(
                rest_routes, config.max_message_length, guard, state
            )
            ssl_context = config.tls.ssl_context("http/1.1") if config.tls else None
            self.port = await self._rest.start(config.host, port, ssl_context)
        else:
            self._grpc = tuned_server(
                handlers,
                codec=StrictFastProtoCodec(),
                max_message_length=config.max_message_length,
            )
            ssl_context = config.tls.ssl_context("h2") if config.tls else None
            await self._grpc.start(config.host, port, ssl=ssl_context, reuse_address=True)
            self.port = bound_port(self._grpc)
        log.info(
            "reference server (%s%s%s%s) listening on %s",
            config.transport,
            "" if config.transport == "grpc-bidi" else f", {WIRES[config.wire].title}",
            ", TLS" if config.tls else "",
            ", node auth" if config.auth else "",
            self.address,
        )

    @overload
    async def run(self, app: None = None) -> History: ...

    @overload
    async def run(self, app: ServerAppMain[T]) -> T: ...

    async def run(self, app: ServerAppMain[T] | None = None) -> History | T:
        """Run ``app`` (default: FedAvg from the config) to its end; return its result.

        The nodes are told the run is over afterwards (grpc-bidi: ``ReconnectIns``).

        Raises:
            TypeError: ``app`` did not return an awaitable (a synchronous function).

        """
        config = self.config
        main: ServerAppMain[History | T] = app or FedAvgApp(
            config.strategy,
            num_rounds=config.num_rounds,
            record_parameters=config.record_parameters,
        )
        driver = AppDriver(
            self.pool,
            run_id=self.run_id,
            timeout=config.round_timeout,
            wait_timeout=config.wait_timeout,
            message_types=CARRIED_MESSAGE_TYPES.get(config.transport),
        )
        context = AppContext(
            run_id=self.run_id,
            run_config=dict(config.run_config),
            transport=config.transport,
            listener=self.listener or DriverListener(),
        )
        try:
            pending = main(driver, context)
            if not inspect.isawaitable(pending):
                raise TypeError(
                    "a server app must be an async function (it runs on the server's event "
                    f"loop), got a {type(main).__name__} returning {type(pending).__name__}"
                )
            return await pending
        finally:
            await self.pool.finish()

    async def stop(self) -> None:
        """Close the listener and the open connections (held node log lines are written)."""
        if self.state is not None:
            self.state.events.flush()
        if self._grpc is not None:
            self._grpc.close()
            try:
                await asyncio.wait_for(self._grpc.wait_closed(), 5.0)
            except TimeoutError:
                log.warning("gRPC server did not close within 5 s")
            self._grpc = None
        if self._rest is not None:
            await self._rest.stop()
            self._rest = None

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@overload
async def serve(
    config: ServerConfig, listener: DriverListener | None = None, app: None = None
) -> History: ...


@overload
async def serve(
    config: ServerConfig, listener: DriverListener | None, app: ServerAppMain[T]
) -> T: ...


async def serve(
    config: ServerConfig,
    listener: DriverListener | None = None,
    app: ServerAppMain[T] | None = None,
) -> History | T:
    """Start, run ``app`` (default: FedAvg), stop; return the app's result."""
    async with ReferenceServer(config, listener) as server:
        return await server.run(app)


@overload
def run_server(
    config: ServerConfig, listener: DriverListener | None = None, app: None = None
) -> History: ...


@overload
def run_server(
    config: ServerConfig, listener: DriverListener | None, app: ServerAppMain[T]
) -> T: ...


def run_server(
    config: ServerConfig,
    listener: DriverListener | None = None,
    app: ServerAppMain[T] | None = None,
) -> History | T:
    """Blocking :func:`serve`."""
    if app is None:
        return asyncio.run(serve(config, listener))
    return asyncio.run(serve(config, listener, app))
