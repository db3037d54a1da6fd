"""Our client against a real flwr 1.15.2 deployment: SuperLink + ``flwr run`` (Exec API).

Each run is the recording FedAvg ServerApp (3 rounds, 2 flwr-sdk nodes) started the way
1.15 starts runs: ``flwr run <app> <federation>`` against the SuperLink's Exec API, which
spawns ``flwr-serverapp``. The clients get no ``wire`` argument: they detect the 1.15
line. Assertions are on the ServerApp's per-round report (results/failures, examples,
aggregated parameters) and on what each node's Context held (run_config = the FAB's
config overlaid with the run's overrides, so GetRun and GetFab with run_id both worked).
One SuperLink per configuration, shared by the module.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import (
    assert_fedavg_rounds,
    processes,
    run_sdk_client,
    start_sdk_client,
)
from support.flower_env import FlowerEnv
from support.superlink import (
    FEDAVG_FAB_CONFIG,
    AuthMaterial,
    FederationResult,
    SuperLink,
    assert_context_rounds,
    assert_registers_again_after_restart,
    flwr_run,
    flwr_stop,
    make_auth,
    make_node_key,
    make_tls,
    run_federation,
    start_superlink,
)

pytestmark = pytest.mark.interop

ROUNDS = 3
RERE = ["--transport", "grpc-rere", "--report-context"]
REST = ["--transport", "rest", "--report-context"]
OVERRIDES = {"label": "overridden", "nested.lr": 0.25}
DETECTED = "SuperLink speaks the Flower 1.15 Fleet API"


def _link(
    env: FlowerEnv,
    factory: pytest.TempPathFactory,
    name: str,
    *,
    api: str = "grpc-rere",
    tls: bool = False,
    auth: AuthMaterial | None = None,
) -> Iterator[SuperLink]:
    work = factory.mktemp(name)
    material = make_tls(work / "tls") if tls else None
    superlink = start_superlink(env, work, fleet_api_type=api, tls=material, auth=auth)
    try:
        yield superlink
    finally:
        superlink.process.stop()


@pytest.fixture(scope="module")
def rere_plain(
    flwr_1_15: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink]:
    yield from _link(flwr_1_15, tmp_path_factory, "rere-plain")


@pytest.fixture(scope="module")
def rere_tls(flwr_1_15: FlowerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuperLink]:
    yield from _link(flwr_1_15, tmp_path_factory, "rere-tls", tls=True)


@pytest.fixture(scope="module")
def rere_auth(
    flwr_1_15: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SuperLink, AuthMaterial]]:
    """A key allow-list (2 node keys) on a plaintext Fleet API: 1.15 auth needs no TLS."""
    auth = make_auth(tmp_path_factory.mktemp("rere-auth-keys"), nodes=2)
    for superlink in _link(flwr_1_15, tmp_path_factory, "rere-auth", auth=auth):
        yield superlink, auth


@pytest.fixture(scope="module")
def rest_plain(
    flwr_1_15: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink]:
    yield from _link(flwr_1_15, tmp_path_factory, "rest-plain", api="rest")


@pytest.fixture(scope="module")
def rest_tls(flwr_1_15: FlowerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuperLink]:
    yield from _link(flwr_1_15, tmp_path_factory, "rest-tls", api="rest", tls=True)


def _federation(superlink: SuperLink, tmp: Path, client_args: list[list[str]]) -> FederationResult:
    """One FAB run with OVERRIDES; checks rounds, Context, detection and registration."""
    logged_before = len(superlink.log_text())  # the SuperLink is shared by the module
    result = run_federation(superlink, tmp, client_args, run_config=OVERRIDES)
    report = result.report
    assert_fedavg_rounds(report, ROUNDS)
    expected = {**FEDAVG_FAB_CONFIG, **OVERRIDES}
    # report-path is overridden per run too; the node must see the ServerApp's value.
    expected["report-path"] = report["run_config"]["report-path"]
    assert report["run_config"] == expected, report["run_config"]
    assert_context_rounds(report, ROUNDS, expected)
    log = superlink.log_text()[logged_before:]
    if superlink.fleet_api_type == "rest":  # uvicorn's access log; the handlers log nothing
        for path in ("create-node", "get-run", "get-fab", "delete-node"):
            assert log.count(f'"POST /api/v0/fleet/{path} HTTP/1.1" 200') == 2, (path, log)
        # No '//api/…' requests (flwr 1.15.2's bug); the one 404 allowed per connection is
        # detection's probe of the 1.42 line (POST /v1/fleet/activate-node).
        probes = log.count('"POST /v1/fleet/activate-node HTTP/1.1" 404')
        assert log.count('HTTP/1.1" 404') == probes, log
    else:
        for node_id in report["fit"]["1"]["by_node"]:
            assert f"[Fleet.CreateNode] Created node_id={node_id}" in log, log
    for client_log in result.client_logs:
        assert DETECTED in client_log, client_log
        assert "Ping failed" not in client_log, client_log  # the heartbeat is accepted
        assert "Unregistered node" in client_log, client_log
    return result


def test_grpc_rere_plaintext(rere_plain: SuperLink, tmp_path: Path) -> None:
    result = _federation(rere_plain, tmp_path, [RERE, RERE])
    log = rere_plain.log_text()
    # DeleteNode passed the SuperLink's auto-auth (it logs only after the interceptor).
    for node_id in result.report["fit"]["1"]["by_node"]:
        assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in log, log


def test_grpc_rere_tls(rere_tls: SuperLink, tmp_path: Path) -> None:
    """Root certificates as bytes (node 0) and as a path (node 1)."""
    assert rere_tls.tls is not None
    ca = str(rere_tls.tls.ca_cert)
    _federation(
        rere_tls, tmp_path, [[*RERE, "--root-cert-bytes", ca], [*RERE, "--root-cert-path", ca]]
    )


def _key_args(auth: AuthMaterial, index: int) -> list[str]:
    key = auth.nodes[index]
    return ["--auth-private-key", str(key.private_path), "--auth-public-key", str(key.public_path)]


def test_grpc_rere_key_allow_list(
    rere_auth: tuple[SuperLink, AuthMaterial], tmp_path: Path
) -> None:
    superlink, auth = rere_auth
    result = _federation(superlink, tmp_path, [[*RERE, *_key_args(auth, i)] for i in range(2)])
    log = superlink.log_text()
    assert "Node authentication enabled with 2 known public keys" in log, log
    for node_id in result.report["fit"]["1"]["by_node"]:
        assert f"[Fleet.DeleteNode] Delete node_id={node_id}" in log, log


def test_unlisted_key_raises_authentication_error_fast(
    rere_auth: tuple[SuperLink, AuthMaterial], tmp_path: Path
) -> None:
    superlink, _ = rere_auth
    stranger = make_node_key(tmp_path / "keys", "stranger")
    args = [*RERE, "--auth-private-key", str(stranger.private_path)]
    args += ["--auth-public-key", str(stranger.public_path)]
    code, output, elapsed = run_sdk_client(tmp_path, superlink.fleet_address, *args)
    assert code == 3, output
    assert "RAISED AuthenticationError" in output, output
    assert "UNAUTHENTICATED" in output and "Public key not recognized" in output, output
    assert "retrying" not in output, output  # never retried
    assert elapsed < 10.0, (elapsed, output)
    assert DETECTED in output, output


def test_rest_plaintext(rest_plain: SuperLink, tmp_path: Path) -> None:
    result = _federation(rest_plain, tmp_path, [REST, REST])
    for log in result.client_logs:
        assert f"POST {rest_plain.fleet_address}/api/v0/fleet/pull-messages" in log, log
        assert "//api" not in log.replace("http://", ""), log


def test_rest_tls(rest_tls: SuperLink, tmp_path: Path) -> None:
    """https:// served by the SuperLink itself; root certificates as bytes and as a path."""
    assert rest_tls.tls is not None and rest_tls.fleet_address.startswith("https://")
    ca = str(rest_tls.tls.ca_cert)
    result = _federation(
        rest_tls, tmp_path, [[*REST, "--root-cert-bytes", ca], [*REST, "--root-cert-path", ca]]
    )
    for log in result.client_logs:
        assert f"POST {rest_tls.fleet_address}/api/v0/fleet/pull-messages" in log, log


@pytest.mark.parametrize("link", ["rere_plain", "rest_plain"])
def test_reply_to_a_stopped_run_is_dropped_and_node_keeps_serving(
    link: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``flwr stop`` while a node computes: its reply is refused because the run is no
    longer RUNNING (grpc-rere PERMISSION_DENIED "Run is finished. Stopped by user.",
    REST HTTP 500). That is the run's end, not the node's: Flower logs it and keeps
    polling, so must we (no AuthenticationError/TransportError out of start_client)."""
    superlink: SuperLink = request.getfixturevalue(link)
    transport = REST if superlink.fleet_api_type == "rest" else RERE
    report = tmp_path / "report.json"
    with processes() as procs:
        run_id = flwr_run(superlink, {"report-path": str(report)})
        slow = start_sdk_client(
            tmp_path, superlink.fleet_address, 0, *transport, "--fit-delay", "5"
        )
        procs.append(slow)
        procs.append(start_sdk_client(tmp_path, superlink.fleet_address, 1, *transport))
        slow.wait_for_output("FIT round 1: sleeping", timeout=60)
        flwr_stop(superlink, run_id)
        time.sleep(8)  # the slow node has pushed its reply to the stopped run by now
        output = slow.output()
        assert slow.proc.poll() is None, output
        assert "RAISED" not in output, output
        for client in procs:
            client.signal(signal.SIGTERM)
        for client in procs:
            assert client.wait(timeout=10) == 0, client.output()
            assert "RETURNED" in client.output(), client.output()


def test_superlink_restart_registers_a_new_node(flwr_1_15: FlowerEnv, tmp_path: Path) -> None:
    """As on 1.12 (test_fleet_grpc_rere): a restarted SuperLink has forgotten the node, so
    the node registers again. On 1.15 the SuperLink says so differently: its always-on
    auth interceptor answers every call of the unknown key/node with UNAUTHENTICATED
    "Invalid node ID" (Ping included), before any servicer could answer success=false."""
    assert_registers_again_after_restart(flwr_1_15, tmp_path, RERE)
