"""One client program, one argument list, three Flower lines (issue 15, done-when 2).

``tests/support/sdk_client.py`` (our ``start_client`` with the deterministic
ShiftClient) is started with exactly :data:`PROGRAM_ARGS` against a real REST/HTTP Fleet
API of flwr 1.12.0 and 1.15.2 here: only ``--address`` (where the server listens) and
``--index`` (which of the two nodes) differ. Each run is the recording FedAvg ServerApp
(3 rounds, 2 of our nodes), started the way that release starts runs; the nodes detect
the line themselves and the ServerApp's per-round results are checked.

The 1.42 case is ``test_fleet_1_42.py::test_http_plaintext``: its nodes get the same
:data:`PROGRAM_ARGS` on a real flwr 1.42.0 SuperLink (started with ``flwr run``), with
the same checks and more; running it here too would repeat that run on a SuperLink of
its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.federation import assert_fedavg_rounds
from support.flower_env import FlowerEnv
from support.superlink import run_federation, start_superlink
from support.superlink_142 import SAME_PROGRAM_ARGS

pytestmark = pytest.mark.interop

PROGRAM_ARGS = SAME_PROGRAM_ARGS  # --transport rest --report-context
ROUNDS = 3


# The fixture of each line's isolated venv. Both SuperLinks serve REST; the run comes from
# ``flower-server-app <app dir>`` (1.12) or ``flwr run`` against the Exec API (1.15), as
# ``run_federation`` does.
ENVS = {"1.12": "flwr_1_12", "1.15": "flwr_1_15"}


@pytest.mark.parametrize("line", sorted(ENVS))
def test_same_program_same_arguments(
    line: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env: FlowerEnv = request.getfixturevalue(ENVS[line])
    superlink = start_superlink(env, tmp_path / "link", fleet_api_type="rest")
    try:
        result = run_federation(superlink, tmp_path, [PROGRAM_ARGS, PROGRAM_ARGS])
    finally:
        superlink.process.stop()
    assert_fedavg_rounds(result.report, ROUNDS)
    nodes = set(result.report["fit"]["1"]["by_node"])
    for rnd in range(1, ROUNDS + 1):
        by_node = result.report["fit"][str(rnd)]["by_node"]
        assert set(by_node) == nodes, (rnd, by_node)
        assert {m["fits_in_state"] for m in by_node.values()} == {rnd}, (rnd, by_node)
    for log in result.client_logs:
        assert f"SuperLink speaks the Flower {line} Fleet API" in log, log
        assert "RETURNED" in log, log
