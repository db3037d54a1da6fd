"""A flwr-sdk node's lifecycle as a real flwr 1.42.0 SuperLink sees it (``flwr supernode ls``).

* SIGTERM: the node deactivates and unregisters before it exits (status ``unregistered``).
* Heartbeats stopped (the node process frozen with SIGSTOP): the SuperLink reports the
  node ``offline`` once ``2 x heartbeat_interval`` has passed since its last heartbeat
  (the node announces 30 s, as Flower's SuperNode does: at most 60 s), and ``online``
  again when the resumed node (SIGCONT) heartbeats; it then still leaves cleanly.

No run is needed: the node table is the SuperLink's, read with the operator's CLI. One
plain-HTTP SuperLink for the module.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import Process, processes, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink_142 import SuperLink142, start_superlink_142

pytestmark = pytest.mark.interop

HTTP = ["--transport", "rest"]
# The node announces heartbeat_interval = 30 s; the SuperLink keeps it online 2 x that.
OFFLINE_WITHIN_S = 60 + 30  # margin for a loaded CI box; passing tests wait only as needed


@pytest.fixture(scope="module")
def superlink(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    link = start_superlink_142(flwr_1_42, tmp_path_factory.mktemp("lifecycle"))
    try:
        yield link
    finally:
        link.process.stop()


def _join(superlink: SuperLink142, tmp: Path, procs: list[Process]) -> tuple[Process, int]:
    """Start one of our nodes; wait until the SuperLink lists a new online node: its id."""
    known = set(superlink.nodes())
    node = start_sdk_client(tmp, superlink.http_address, 0, *HTTP)
    procs.append(node)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, node.output()
        new = {i: n for i, n in superlink.nodes().items() if i not in known}
        if new:
            ((node_id, entry),) = new.items()
            assert entry["status"] == "online", entry
            return node, node_id
        time.sleep(0.5)
    raise AssertionError(f"no new node on the SuperLink after 30 s:\n{node.output()}")


def test_sigterm_deactivates_and_unregisters(superlink: SuperLink142, tmp_path: Path) -> None:
    with processes() as procs:
        node, node_id = _join(superlink, tmp_path, procs)
        before = len(superlink.log_text())
        node.signal(signal.SIGTERM)
        assert node.wait(timeout=10) == 0, node.output()
        assert "RETURNED" in node.output(), node.output()
    entry = superlink.nodes()[node_id]
    assert entry["status"] == "unregistered", entry
    assert entry["offline-at"] != "N/A" and entry["deleted-at"] != "N/A", entry
    log = superlink.log_text()[before:]
    assert f"[Fleet.DeactivateNode] Deactivated node_id={node_id}" in log, log
    assert '"POST /v1/fleet/unregister-node HTTP/1.1" 200' in log, log


def test_stopped_heartbeats_go_offline_and_recover(superlink: SuperLink142, tmp_path: Path) -> None:
    with processes() as procs:
        node, node_id = _join(superlink, tmp_path, procs)
        node.signal(signal.SIGSTOP)  # no heartbeat (nor anything else) from now on
        try:
            superlink.wait_node_status(node_id, "offline", timeout=OFFLINE_WITHIN_S)
        finally:
            node.signal(signal.SIGCONT)
        # The resumed node's heartbeat loop is overdue: it heartbeats at once.
        superlink.wait_node_status(node_id, "online", timeout=20)
        assert node.proc.poll() is None, node.output()
        node.signal(signal.SIGTERM)
        assert node.wait(timeout=10) == 0, node.output()
        assert "RETURNED" in node.output(), node.output()
    assert superlink.node_status(node_id) == "unregistered"
