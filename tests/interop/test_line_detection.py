"""Wire-line detection against real SuperLinks: flwr 1.12.0 and 1.15.2, grpc-rere and rest.

The same client invocation (only the address and transport differ; no ``wire``) must
find out which Flower Fleet API line each SuperLink speaks, say so at INFO, and register
(the SuperLink logs CreateNode — grpc-rere — or, over REST, where the SuperLink logs
nothing, answers a Ping for the node id with success). An explicit ``wire`` that
contradicts the server must fail fast with ``WireLineError`` naming both lines, from
``start_client`` and from ``flwr-sdk client --wire``. No run is needed: one SuperLink per
(release, Fleet API type), shared by the module.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import REPO, processes, run_sdk_client, sdk_env, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import REGISTERED, SuperLink, fleet_ping, start_superlink

pytestmark = pytest.mark.interop

SERVERS = [
    ("1.12", "grpc-rere"),
    ("1.12", "rest"),
    ("1.15", "grpc-rere"),
    ("1.15", "rest"),
]
OTHER = {"1.12": "1.15", "1.15": "1.12"}
ENV_FIXTURE = {"1.12": "flwr_1_12", "1.15": "flwr_1_15"}


def _speaks(line: str) -> str:
    return f"SuperLink speaks the Flower {line} Fleet API"


@pytest.fixture(scope="module", params=SERVERS, ids=[f"{line}-{api}" for line, api in SERVERS])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, SuperLink]]:
    """(line, SuperLink) for each supported line and Fleet API type."""
    line, api = request.param
    env: FlowerEnv = request.getfixturevalue(ENV_FIXTURE[line])
    superlink = start_superlink(
        env, tmp_path_factory.mktemp(f"link-{line}-{api}"), fleet_api_type=api
    )
    try:
        yield line, superlink
    finally:
        superlink.process.stop()


def test_detects_line_and_registers(server: tuple[str, SuperLink], tmp_path: Path) -> None:
    line, superlink = server
    with processes() as procs:
        client = start_sdk_client(
            tmp_path, superlink.fleet_address, 0, "--transport", superlink.fleet_api_type
        )
        procs.append(client)
        output = client.wait_for_output(REGISTERED, timeout=30)
        node_id = int(output.split(REGISTERED, 1)[1].split()[0])
        assert _speaks(line) in output, output
        assert _speaks(OTHER[line]) not in output, output
        if superlink.fleet_api_type == "rest":
            assert fleet_ping(superlink, node_id) is True
            assert fleet_ping(superlink, node_id ^ 1) is False  # control: an unknown node
        else:
            log = superlink.log_text()
            assert f"[Fleet.CreateNode] Created node_id={node_id}" in log, log
        client.signal(signal.SIGTERM)
        assert client.wait(timeout=10) == 0, client.output()
        assert "RETURNED" in client.output(), client.output()


def _assert_wire_line_error(output: str, line: str, elapsed: float) -> None:
    wanted = OTHER[line]
    assert "WireLineError" in output, output
    # The error's own line (the CLI prints a traceback that ends with it).
    raised = [text for text in output.splitlines() if "WireLineError" in text][-1]
    assert f"Flower {wanted} Fleet API" in raised and f"Flower {line} Fleet API" in raised, raised
    assert f"wire='{wanted}'" in raised, raised
    assert REGISTERED not in output, output
    assert elapsed < 10.0, (elapsed, output)


def test_contradicting_wire_fails_fast(server: tuple[str, SuperLink], tmp_path: Path) -> None:
    """``wire`` names the other line: WireLineError before registering, < 10 s."""
    line, superlink = server
    transport = ["--transport", superlink.fleet_api_type]
    code, output, elapsed = run_sdk_client(
        tmp_path, superlink.fleet_address, *transport, "--wire", OTHER[line]
    )
    assert code == 3, output
    assert "RAISED WireLineError" in output, output
    _assert_wire_line_error(output, line, elapsed)


def test_cli_wire_option_contradicting_server(
    server: tuple[str, SuperLink], tmp_path: Path
) -> None:
    """``flwr-sdk client --wire <other line>``: the CLI fails the same way."""
    line, superlink = server
    args = [sys.executable, "-m", "flwr_sdk.cli", "client", "--app", "examples.cli_client:client"]
    args += ["--server-address", superlink.fleet_address]
    args += ["--transport", superlink.fleet_api_type, "--wire", OTHER[line]]
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=REPO, env=sdk_env())
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    _assert_wire_line_error(output, line, elapsed)
