"""Our client against a real flwr 1.42.0 deployment: SuperLink + ``flwr run``.

Each run is the recording FedAvg ServerApp (3 rounds, 2 flwr-sdk nodes) started the way
1.42 starts runs: ``flwr run <app> <connection>`` against the SuperLink's Control API,
which spawns ``flwr-serverapp`` through its SuperExec. The clients get no ``wire``
argument: they detect the 1.42 line. Assertions are on the ServerApp's per-round report
(results/failures, examples, aggregated parameters), on what each node's Context held
(run_config = the FAB's config overlaid with the run's overrides, so GetRun and GetFab
worked), on the SuperLink's own log, and on the node table the operator sees with
``flwr supernode ls``. Three SuperLinks, each shared by the module: plain HTTP with the
gRPC Fleet service on too, HTTPS, and HTTPS with ``--enable-supernode-auth`` (keys the
operator registered with ``flwr supernode register``).

The plain-HTTP run is also the 1.42 case of issue 15's done-when 2: its nodes get exactly
:data:`~support.superlink_142.SAME_PROGRAM_ARGS`, the argument list
``test_same_program_all_lines.py`` gives them against 1.12 and 1.15.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import assert_fedavg_rounds, run_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import (
    FEDAVG_FAB_CONFIG,
    NodeKey,
    assert_context_rounds,
    make_node_key,
    make_tls,
)
from support.superlink_142 import (
    SAME_PROGRAM_ARGS,
    SuperLink142,
    run_federation_142,
    sdk_nodes,
    start_superlink_142,
)

pytestmark = pytest.mark.interop

ROUNDS = 3
HTTP = list(SAME_PROGRAM_ARGS)  # --transport rest --report-context
GRPC = ["--transport", "grpc-rere", "--report-context"]
OVERRIDES = {"label": "overridden", "nested.lr": 0.25}
DETECTED = "SuperLink speaks the Flower 1.42 Fleet API"
# Fleet calls the SuperLink does not log (below DEBUG); our client's HTTP log shows them.
ROUTINE_CALLS = (
    "pull-messages",
    "pull-object",
    "confirm-message-received",
    "push-messages",
    "push-object",
    "send-node-heartbeat",
)


def _link(
    env: FlowerEnv,
    factory: pytest.TempPathFactory,
    name: str,
    *,
    tls: bool = False,
    grpc_fleet: bool = False,
    supernode_auth: bool = False,
) -> Iterator[SuperLink142]:
    work = factory.mktemp(name)
    material = make_tls(work / "tls") if tls else None
    superlink = start_superlink_142(
        env, work, tls=material, grpc_fleet=grpc_fleet, supernode_auth=supernode_auth
    )
    try:
        yield superlink
    finally:
        superlink.stop()


@pytest.fixture(scope="module")
def http_plain(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    """Plain HTTP, with the gRPC Fleet service on too (FLWR_INTERNAL_GRPC_FLEET_API=1)."""
    yield from _link(flwr_1_42, tmp_path_factory, "http-plain", grpc_fleet=True)


@pytest.fixture(scope="module")
def http_tls(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    yield from _link(flwr_1_42, tmp_path_factory, "http-tls", tls=True)


@pytest.fixture(scope="module")
def auth_link(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    """TLS + ``--enable-supernode-auth``: only keys the operator registered may join."""
    yield from _link(flwr_1_42, tmp_path_factory, "auth", tls=True, supernode_auth=True)


def _federation(
    superlink: SuperLink142, tmp: Path, address: str, client_args: list[list[str]]
) -> dict[int, dict[str, str]]:
    """One FAB run with OVERRIDES; checks rounds, Context, detection and the node table.

    Returns ``flwr supernode ls``'s entries of the run's two nodes after they stopped.
    """
    logged_before = len(superlink.log_text())  # the SuperLink is shared by the module
    result = run_federation_142(
        superlink, tmp, sdk_nodes(address, client_args), run_config=OVERRIDES
    )
    report = result.report
    assert_fedavg_rounds(report, ROUNDS)
    expected = {**FEDAVG_FAB_CONFIG, **OVERRIDES}
    # report-path is overridden per run too; the node must see the ServerApp's value.
    expected["report-path"] = report["run_config"]["report-path"]
    assert report["run_config"] == expected, report["run_config"]
    assert_context_rounds(report, ROUNDS, expected)
    log = superlink.log_text()[logged_before:]
    node_ids = [int(node_id) for node_id in report["fit"]["1"]["by_node"]]
    for node_id in node_ids:
        assert f"[Fleet.ActivateNode] Activated node_id={node_id}" in log, log
    for client_log in result.client_logs:
        assert DETECTED in client_log, client_log
        if address.startswith("http"):  # the routine calls, as the client logs them
            for rpc in ROUTINE_CALLS:
                assert f'/v1/fleet/{rpc} "HTTP/1.1 200 OK"' in client_log, (rpc, client_log)
    table = superlink.nodes()
    return {node_id: table[node_id] for node_id in node_ids}


def _http_calls(log: str, rpc: str) -> int:
    """How many ``POST /v1/fleet/<rpc>`` the SuperLink answered 200 (uvicorn access log)."""
    return log.count(f'"POST /v1/fleet/{rpc} HTTP/1.1" 200')


def test_http_plaintext(http_plain: SuperLink142, tmp_path: Path) -> None:
    """http:// address; the nodes register themselves and unregister on SIGTERM.

    The nodes' arguments are exactly SAME_PROGRAM_ARGS (done-when 2's 1.42 case)."""
    before = len(http_plain.log_text())
    nodes = _federation(http_plain, tmp_path, http_plain.http_address, [HTTP, HTTP])
    log = http_plain.log_text()[before:]
    for rpc in ("register-node", "activate-node", "deactivate-node", "unregister-node"):
        assert _http_calls(log, rpc) == 2, (rpc, log)
    for rpc in ("get-run", "get-fab"):
        assert _http_calls(log, rpc) == 2, (rpc, log)
    # Nothing refused but the line-detection probe (an unsigned ActivateNode: 412).
    refused = re.findall(r'"POST /v1/fleet/([a-z-]+) HTTP/1.1" ([45]\d\d)', log)
    assert set(refused) <= {("activate-node", "412")}, (refused, log)
    assert {node["status"] for node in nodes.values()} == {"unregistered"}, nodes


def test_http_tls(http_tls: SuperLink142, tmp_path: Path) -> None:
    """https:// served by the SuperLink; root certificates as bytes and as a path."""
    assert http_tls.tls is not None and http_tls.http_address.startswith("https://")
    ca = str(http_tls.tls.ca_cert)
    args = [[*HTTP, "--root-cert-bytes", ca], [*HTTP, "--root-cert-path", ca]]
    nodes = _federation(http_tls, tmp_path, http_tls.http_address, args)
    assert {node["status"] for node in nodes.values()} == {"unregistered"}, nodes


def test_grpc_fleet(http_plain: SuperLink142, tmp_path: Path) -> None:
    """The gRPC Fleet service (FLWR_INTERNAL_GRPC_FLEET_API=1): no HTTP Fleet call."""
    before = len(http_plain.log_text())
    nodes = _federation(http_plain, tmp_path, http_plain.grpc_address, [GRPC, GRPC])
    assert "/v1/fleet/" not in http_plain.log_text()[before:]
    assert {node["status"] for node in nodes.values()} == {"unregistered"}, nodes


def _key_args(key: NodeKey) -> list[str]:
    return ["--auth-private-key", str(key.private_path), "--auth-public-key", str(key.public_path)]


def test_supernode_auth_with_operator_registered_keys(
    auth_link: SuperLink142, tmp_path: Path
) -> None:
    """Keys registered by ``flwr supernode register``: the nodes only ActivateNode, get
    exactly the node ids the operator was given, and on SIGTERM deactivate (only the
    operator may unregister them): ``flwr supernode ls`` shows them offline."""
    assert auth_link.tls is not None
    keys = [make_node_key(tmp_path / "keys", f"node{i}") for i in range(2)]
    registered = {auth_link.register_node(key) for key in keys}
    assert {auth_link.node_status(node_id) for node_id in registered} == {"registered"}
    ca = str(auth_link.tls.ca_cert)
    args = [[*HTTP, "--root-cert-path", ca, *_key_args(key)] for key in keys]
    before = len(auth_link.log_text())
    nodes = _federation(auth_link, tmp_path, auth_link.http_address, args)
    assert set(nodes) == registered, (nodes, registered)
    assert {node["status"] for node in nodes.values()} == {"offline"}, nodes
    log = auth_link.log_text()[before:]
    assert _http_calls(log, "register-node") == 0, log
    assert _http_calls(log, "deactivate-node") == 2, log


def test_unregistered_key_raises_authentication_error_fast(
    auth_link: SuperLink142, tmp_path: Path
) -> None:
    assert auth_link.tls is not None
    stranger = make_node_key(tmp_path / "keys", "stranger")
    args = [*HTTP, "--root-cert-path", str(auth_link.tls.ca_cert), *_key_args(stranger)]
    code, output, elapsed = run_sdk_client(tmp_path, auth_link.http_address, *args)
    assert code == 3, output
    assert "RAISED AuthenticationError" in output, output
    assert "flwr supernode register" in output, output  # the message says what to do
    assert "retrying" not in output, output  # never retried
    assert elapsed < 10.0, (elapsed, output)
