"""Our node's lifecycle on a real flwr 1.42.0 SuperLink, over HTTP and the gRPC Fleet API.

One SuperLink (plain HTTP, gRPC Fleet service on) is shared by the module; the node is
``tests/support/sdk_client.py`` with no ``wire`` argument (the line is detected). What
the SuperLink says about the node (``flwr supernode ls``, its log) is the check:

* a node without keys registers itself and is ``online``; SIGTERM → it deactivates and
  unregisters (``unregistered``), exit code 0 (issue 15, done-when 3);
* heartbeats stopped (the node process frozen with SIGSTOP): the SuperLink reports the
  node ``offline`` once ``2 x heartbeat_interval`` has passed since its last heartbeat
  (the node announces 30 s, as Flower's SuperNode does: at most 60 s), and ``online``
  again when the resumed node (SIGCONT) heartbeats; it then still leaves cleanly
  (done-when 3);
* a node with an operator-registered key (``flwr supernode register``) activates as the
  node the operator got; SIGKILLed, its node stays ``online`` and the next process with
  that key takes it back at once; SIGTERM leaves it ``offline``, still registered;
* a key the SuperLink does not know ends ``start_client`` with ``AuthenticationError``
  in under 10 s over gRPC (over HTTP with ``--enable-supernode-auth``:
  ``test_fleet_1_42.py``); ``wire="1.15"`` against this SuperLink is a ``WireLineError``.

Rounds, TLS and ``--enable-supernode-auth`` runs are in ``test_fleet_1_42.py``.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.federation import processes, run_sdk_client, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import make_node_key
from support.superlink_142 import SuperLink142, start_superlink_142

pytestmark = pytest.mark.interop

REGISTERED = re.compile(r"Registered with the SuperLink as node (\d+)")
DETECTED = "SuperLink speaks the Flower 1.42 Fleet API"
# The node announces heartbeat_interval = 30 s; the SuperLink keeps it online 2 x that.
OFFLINE_WITHIN_S = 60 + 30  # margin for a loaded CI box; passing tests wait only as needed


@pytest.fixture(scope="module")
def superlink(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    link = start_superlink_142(flwr_1_42, tmp_path_factory.mktemp("link-142"), grpc_fleet=True)
    try:
        yield link
    finally:
        link.stop()


def _address(superlink: SuperLink142, transport: str) -> str:
    return superlink.http_address if transport == "rest" else superlink.grpc_address


def _registered_node(client: object, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = REGISTERED.search(client.output(tail=None))  # type: ignore[attr-defined]
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(client.output())  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_self_registered_node_unregisters_on_sigterm(
    superlink: SuperLink142, tmp_path: Path, transport: str
) -> None:
    with processes() as procs:
        client = start_sdk_client(
            tmp_path, _address(superlink, transport), 0, "--transport", transport
        )
        procs.append(client)
        node_id = _registered_node(client)
        superlink.wait_node_status(node_id, "online", timeout=20)
        client.signal(signal.SIGTERM)
        assert client.wait(timeout=15) == 0, client.output()
        log = client.output(tail=None)
    assert DETECTED in log, log
    assert "RETURNED" in log, log
    superlink.wait_node_status(node_id, "unregistered", timeout=10)
    entry = superlink.nodes()[node_id]
    assert entry["offline-at"] != "N/A" and entry["deleted-at"] != "N/A", entry
    link_log = superlink.log_text()
    assert f"[Fleet.DeactivateNode] Deactivated node_id={node_id}" in link_log, link_log


def test_unregistered_key_over_grpc_is_an_authentication_error_within_10_s(
    superlink: SuperLink142, tmp_path: Path
) -> None:
    key = make_node_key(tmp_path / "keys", "stranger")
    args = ["--transport", "grpc-rere", "--auth-private-key", str(key.private_path)]
    args += ["--auth-public-key", str(key.public_path), "--max-retries", "0"]
    code, log, seconds = run_sdk_client(tmp_path, superlink.grpc_address, *args)
    assert code == 3, log
    assert "RAISED AuthenticationError" in log, log
    assert "flwr supernode register" in log, log
    assert seconds < 10, (seconds, log)


def test_stopped_heartbeats_go_offline_and_recover(superlink: SuperLink142, tmp_path: Path) -> None:
    with processes() as procs:
        node = start_sdk_client(tmp_path, superlink.http_address, 0, "--transport", "rest")
        procs.append(node)
        node_id = _registered_node(node)
        superlink.wait_node_status(node_id, "online", timeout=20)
        node.signal(signal.SIGSTOP)  # no heartbeat (nor anything else) from now on
        try:
            superlink.wait_node_status(node_id, "offline", timeout=OFFLINE_WITHIN_S)
        finally:
            node.signal(signal.SIGCONT)
        # The resumed node's heartbeat loop is overdue: it heartbeats at once.
        superlink.wait_node_status(node_id, "online", timeout=20)
        assert node.proc.poll() is None, node.output()
        node.signal(signal.SIGTERM)
        assert node.wait(timeout=15) == 0, node.output()
        assert "RETURNED" in node.output(), node.output()
    assert superlink.node_status(node_id) == "unregistered"


def test_a_restart_after_a_crash_deactivates_the_old_node_and_activates(
    superlink: SuperLink142, tmp_path: Path
) -> None:
    """SIGKILL leaves the operator key's node online; the next process takes it back.

    The SuperLink refuses to activate a key whose node is online (412/2004, as for an
    unknown key); the node record of the first process lets the second deactivate that
    node first, instead of waiting up to 2 x 30 s for it to go offline.
    """
    key = make_node_key(tmp_path / "keys", "crashing")
    expected = superlink.register_node(key)
    args = ["--transport", "rest", "--auth-private-key", str(key.private_path)]
    args += ["--auth-public-key", str(key.public_path), "--max-retries", "0"]
    with processes() as procs:
        first = start_sdk_client(tmp_path, superlink.http_address, 0, *args)
        procs.append(first)
        assert _registered_node(first) == expected  # the node the operator was given
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert superlink.node_status(expected) == "online"
        started = time.monotonic()
        second = start_sdk_client(tmp_path, superlink.http_address, 0, *args)
        procs.append(second)
        assert _registered_node(second, timeout=10) == expected
        assert time.monotonic() - started < 10
        assert "did not stop cleanly" in second.output(tail=None)
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0, second.output()
    superlink.wait_node_status(expected, "offline", timeout=10)


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_an_older_wire_chosen_against_1_42_is_a_wire_line_error(
    superlink: SuperLink142, tmp_path: Path, transport: str
) -> None:
    args = ["--transport", transport, "--wire", "1.15", "--max-retries", "0"]
    code, log, seconds = run_sdk_client(tmp_path, _address(superlink, transport), *args)
    assert code == 3, log
    assert "RAISED WireLineError" in log, log
    assert "it speaks the Flower 1.42 Fleet API" in log, log
    assert seconds < 10, (seconds, log)
