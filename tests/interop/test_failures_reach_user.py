"""User-code failures reach the user, against real Flower 1.12 servers.

* legacy ``start_server`` (grpc-bidi): a ``fit`` that raises every round is logged once
  per failure with its traceback and summarised with counts when the node stops; the
  default console shows one line per message with logging left unconfigured, and the
  root logger gets no handler;
* the same with ``fail_fast=True``: ``start_client`` raises the user's exception;
* SuperLink (grpc-rere): the failure summary after a whole run, and ``fail_fast``
  leaving the SuperLink cleanly (DeleteNode) before raising, with the typed events.

The client is the script below, run by this interpreter in a fresh process (so that
logging is really unconfigured).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import (
    Process,
    free_port,
    processes,
    read_report,
    sdk_env,
    start_legacy_server,
    start_sdk_client,
)
from support.flower_env import FlowerEnv
from support.superlink import SuperLink, run_federation, start_server_app, start_superlink

pytestmark = pytest.mark.interop

ROUNDS = 3

CLIENT = """
import json, logging, sys, traceback
import numpy as np
import flwr_sdk

address, transport, mode = sys.argv[1:4]
raised = []
events = []


class Failing(flwr_sdk.NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(3, dtype=np.float32), np.zeros((2, 2))]

    def fit(self, parameters, config):
        raised.append(ValueError(f"bad shape in round {config.get('round')}"))
        raise raised[-1]

    def evaluate(self, parameters, config):
        return 1.0, 10, {}


def on_event(event):
    events.append(type(event).__name__)
    if type(event).__name__ == "Registered":
        print(f"NODE {event.node_id}", file=sys.stderr, flush=True)


try:
    flwr_sdk.start_client(
        server_address=address,
        client=Failing().to_client(),
        transport=transport,
        fail_fast=mode == "fail-fast",
        on_event=on_event,
    )
except ValueError as exc:
    frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    print(f"RAISED {exc!r} same={exc is raised[0]} in_fit={'fit' in frames}", file=sys.stderr)
    code = 3
else:
    print("RETURNED", file=sys.stderr)
    code = 0
print(f"ROOT HANDLERS {logging.getLogger().handlers}", file=sys.stderr)
print(f"EVENTS {json.dumps(events)}", file=sys.stderr, flush=True)
sys.exit(code)
"""


def start_client(tmp: Path, address: str, transport: str, mode: str) -> Process:
    script = tmp / "failing_client.py"
    script.write_text(CLIENT)
    args = [sys.executable, str(script), address, transport, mode]
    return Process(
        args,
        tmp / f"failing-client-{mode}.log",
        lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw),
    )


def events_of(output: str) -> list[str]:
    match = re.search(r"^EVENTS (.*)$", output, re.MULTILINE)
    assert match, output
    events: list[str] = json.loads(match.group(1))
    return events


def test_every_fit_failing_is_summarised_and_printed_by_default(
    flwr_1_12: FlowerEnv, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    with processes() as procs:
        server, report = start_legacy_server(flwr_1_12, tmp_path, address, clients=1)
        procs.append(server)
        client = start_client(tmp_path, address, "grpc-bidi", "keep-going")
        procs.append(client)
        assert server.wait(timeout=180) == 0, server.output()
        assert client.wait(timeout=30) == 0, client.output()
        output = client.output(tail=None)
    data = read_report(report)
    for rnd in range(1, ROUNDS + 1):
        fit = data["fit"][str(rnd)]
        assert (fit["results"], fit["failures"]) == (0, 1), fit
        assert data["evaluate"][str(rnd)]["results"] == 1, data["evaluate"]
    assert "RETURNED" in output
    # The summary, with counts, message type and the first error, at ERROR.
    summary = (
        f"ERROR flwr_sdk.node: Node stopped: {ROUNDS} of {ROUNDS} train instructions failed "
        "(first: ValueError: bad shape in round 1)"
    )
    assert summary in output, output
    # Each failure logged once with its traceback, and nowhere else.
    assert output.count("Traceback (most recent call last)") == ROUNDS, output
    assert output.count("Client code raised ValueError: bad shape in round") == ROUNDS
    # Logging was left unconfigured: flwr-sdk's console lines, one per message…
    assert output.count("INFO flwr_sdk.node: Received a train instruction") == ROUNDS
    assert output.count("INFO flwr_sdk.node: Received an evaluate instruction") == ROUNDS
    assert output.count("INFO flwr_sdk.node: Sent the evaluate reply") == ROUNDS
    # …while the root logger stayed untouched.
    assert "ROOT HANDLERS []" in output, output
    events = events_of(output)
    assert events.count("InstructionFailed") == ROUNDS
    assert events.count("Disconnected") == ROUNDS + 1  # a dropped stream per failure
    assert events[-2:] == ["Disconnected", "Stopped"]


def test_fail_fast_raises_the_users_exception_on_grpc_bidi(
    flwr_1_12: FlowerEnv, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    with processes() as procs:
        server, _report = start_legacy_server(flwr_1_12, tmp_path, address, clients=1)
        procs.append(server)
        client = start_client(tmp_path, address, "grpc-bidi", "fail-fast")
        procs.append(client)
        assert client.wait(timeout=60) == 3, client.output()
        output = client.output(tail=None)
    assert "RAISED ValueError('bad shape in round 1') same=True in_fit=True" in output, output
    assert "stopping (fail_fast)" in output
    assert "Traceback (most recent call last)" not in output  # the caller gets it instead
    assert events_of(output)[-3:] == ["InstructionFailed", "Disconnected", "Stopped"]


@pytest.fixture(scope="module")
def superlink(
    flwr_1_12: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink]:
    link = start_superlink(flwr_1_12, tmp_path_factory.mktemp("failures-link"))
    try:
        yield link
    finally:
        link.process.stop()


def test_failure_summary_after_a_superlink_run(superlink: SuperLink, tmp_path: Path) -> None:
    rere = ["--transport", "grpc-rere"]
    fail_all = [arg for rnd in range(1, ROUNDS + 1) for arg in ("--fail-fit-round", str(rnd))]
    result = run_federation(superlink, tmp_path, [[*rere, *fail_all], rere])
    for rnd in range(1, ROUNDS + 1):
        fit = result.report["fit"][str(rnd)]
        assert (fit["results"], fit["failures"]) == (1, 1), fit
    failing, healthy = result.client_logs
    assert (
        f"Node stopped: {ROUNDS} of {ROUNDS} train instructions failed "
        "(first: RuntimeError: injected failure in round 1)"
    ) in failing, failing
    assert "RETURNED" in failing  # start_client returned: the failures were the user's
    assert re.search(r"Node stopped: \d+ instructions handled \(.*\), none failed", healthy)


def test_fail_fast_leaves_the_superlink_then_raises(superlink: SuperLink, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with processes() as procs:
        procs.append(start_server_app(superlink, report))
        failing = start_client(tmp_path, superlink.fleet_address, "grpc-rere", "fail-fast")
        procs.append(failing)
        procs.append(
            start_sdk_client(tmp_path, superlink.fleet_address, 1, "--transport", "grpc-rere")
        )
        assert failing.wait(timeout=120) == 3, failing.output()
        output = failing.output(tail=None)
    assert "RAISED ValueError('bad shape in round 1') same=True in_fit=True" in output, output
    node = re.search(r"^NODE (\d+)$", output, re.MULTILINE)
    assert node, output
    # It sent the error reply, unregistered, and only then raised.
    deleted = f"[Fleet.DeleteNode] Delete node_id={node.group(1)}"
    for _ in range(50):  # the SuperLink's log may trail a little
        if deleted in superlink.log_text():
            break
        time.sleep(0.1)
    assert deleted in superlink.log_text()
    events = events_of(output)
    assert events[:2] == ["Connected", "Registered"], events
    assert events[-4:] == ["InstructionFailed", "ReplySent", "Disconnected", "Stopped"], events
