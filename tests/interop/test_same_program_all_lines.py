"""One client program, one argument list, three Flower lines (issue 15, done-when 2).

``tests/support/sdk_client.py`` (our ``start_client`` with the deterministic
ShiftClient) is started with exactly :data:`PROGRAM_ARGS` against a real REST/HTTP Fleet
API of flwr 1.12.0, 1.15.2 and 1.42.0: only ``--address`` (where the server listens) and
``--index`` (which of the two nodes) differ. Each run is the recording FedAvg ServerApp
(3 rounds, 2 of our nodes), started the way that release starts runs; the nodes detect
the line themselves and the ServerApp's per-round results are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.federation import assert_fedavg_rounds
from support.flower_env import FlowerEnv
from support.superlink import FederationResult, run_federation, start_superlink
from support.superlink_142 import run_federation_142, sdk_nodes, start_superlink_142

pytestmark = pytest.mark.interop

PROGRAM_ARGS = ("--transport", "rest", "--report-context")
ROUNDS = 3


def _run_rest_superlink(env: FlowerEnv, tmp: Path) -> FederationResult:
    """1.12 / 1.15: a REST SuperLink; the run from ``flower-server-app <app dir>`` (1.12)
    or ``flwr run`` against the SuperLink's Exec API (1.15), as ``run_federation`` does."""
    superlink = start_superlink(env, tmp / "link", fleet_api_type="rest")
    try:
        return run_federation(superlink, tmp, [PROGRAM_ARGS, PROGRAM_ARGS])
    finally:
        superlink.process.stop()


def _run_1_42(env: FlowerEnv, tmp: Path) -> FederationResult:
    """1.42: the SuperLink's Fleet HTTP API; the run from ``flwr run`` (Control API)."""
    superlink = start_superlink_142(env, tmp / "link")
    try:
        nodes = sdk_nodes(superlink.http_address, [PROGRAM_ARGS, PROGRAM_ARGS])
        return run_federation_142(superlink, tmp, nodes)
    finally:
        superlink.process.stop()


RUNS: dict[str, tuple[str, Callable[[FlowerEnv, Path], FederationResult]]] = {
    "1.12": ("flwr_1_12", _run_rest_superlink),
    "1.15": ("flwr_1_15", _run_rest_superlink),
    "1.42": ("flwr_1_42", _run_1_42),
}


@pytest.mark.parametrize("line", sorted(RUNS))
def test_same_program_same_arguments(
    line: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fixture, run = RUNS[line]
    result = run(request.getfixturevalue(fixture), tmp_path)
    assert_fedavg_rounds(result.report, ROUNDS)
    nodes = set(result.report["fit"]["1"]["by_node"])
    for rnd in range(1, ROUNDS + 1):
        by_node = result.report["fit"][str(rnd)]["by_node"]
        assert set(by_node) == nodes, (rnd, by_node)
        assert {m["fits_in_state"] for m in by_node.values()} == {rnd}, (rnd, by_node)
    for log in result.client_logs:
        assert f"SuperLink speaks the Flower {line} Fleet API" in log, log
        assert "RETURNED" in log, log
