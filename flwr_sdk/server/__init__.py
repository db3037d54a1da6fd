"""A reference Flower server: grpc-bidi, and the Fleet API over grpc-rere and REST.

Built from the same generated server bases as the SDK's clients; the Fleet API speaks
the Flower 1.12, 1.15 or 1.42 wire line (``ServerConfig.wire``) as that line's SuperLink
does, so real Flower clients of those releases can use it (1.42: Flower's own
``flower-supernode``, given a FAB to serve). FedAvg weighted by ``num_examples``,
federated evaluation, per-round fit config, TLS, node authentication (1.12: opt-in ECDH
+ HMAC; 1.15: signed timestamps, always on for grpc-rere; 1.42: signed timestamps on
every call of both transports, optionally operator-registered keys) and message-size
limits enforced before allocation.

Server apps: ``main(driver, context)`` coroutines on the typed app API of
:mod:`~flwr_sdk.server.app_api` (:class:`AppDriver`: typed requests to nodes, fan-out,
legacy ``fit``/``evaluate``, typed errors); FedAvg is the default app
(:mod:`~flwr_sdk.server.fedavg_app`). See ``docs/server-apps.md``.

Modules: :mod:`~flwr_sdk.server.strategy` (FedAvg), :mod:`~flwr_sdk.server.driver` (the
node pool apps run on, FedAvg's history), :mod:`~flwr_sdk.server.bidi`
(``FlowerService.Join``),
:mod:`~flwr_sdk.server.fleet_state` (Fleet API state and rules over the SDK's own
Messages, line-neutral), :mod:`~flwr_sdk.server.fleet_line` (what a wire line's Fleet
servicer provides), :mod:`~flwr_sdk.server.fleet_servicer` (what every line's servicer
shares), :mod:`~flwr_sdk.server.fleet_v1_12`, :mod:`~flwr_sdk.server.fleet_v1_15` and
:mod:`~flwr_sdk.server.fleet_v1_42` (the Flower 1.12, 1.15 and 1.42 Fleet APIs: the only
line-specific Fleet modules; 1.42 keeps payloads in :mod:`~flwr_sdk.server.object_store`),
:mod:`~flwr_sdk.server.fleet_grpc`, :mod:`~flwr_sdk.server.fleet_rest` and
:mod:`~flwr_sdk.server.fleet_http_v1_42` (front ends serving a line's typed methods),
:mod:`~flwr_sdk.server.node_auth`, :mod:`~flwr_sdk.server.node_auth_v1_15` and
:mod:`~flwr_sdk.server.node_auth_v1_42` (each line's node authentication),
:mod:`~flwr_sdk.server.app` (start/stop from a :class:`ServerConfig`).
"""

from flwr_sdk.server.app import ReferenceServer, ServerConfig, ServerTLS, run_server, serve
from flwr_sdk.server.app_api import AppContext, AppDriver, NodeResult, ServerAppMain
from flwr_sdk.server.driver import DriverListener, History, RoundResult
from flwr_sdk.server.fedavg_app import FedAvgApp
from flwr_sdk.server.node_auth import NodeAuthenticator, load_public_keys
from flwr_sdk.server.node_auth_v1_15 import SignedTimestampAuthenticator
from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator
from flwr_sdk.server.strategy import FedAvg

__all__ = [
    "AppContext",
    "AppDriver",
    "DriverListener",
    "FedAvg",
    "FedAvgApp",
    "History",
    "NodeAuthenticator",
    "NodeResult",
    "ReferenceServer",
    "RoundResult",
    "ServerAppMain",
    "ServerConfig",
    "ServerTLS",
    "SignedCallAuthenticator",
    "SignedTimestampAuthenticator",
    "load_public_keys",
    "run_server",
    "serve",
]
