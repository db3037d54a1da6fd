"""Our node's lifecycle on a real flwr 1.42.0 SuperLink, over HTTP and the gRPC Fleet API.

One SuperLink (plain HTTP, gRPC Fleet service on) is shared by the module; the node is
``tests/support/sdk_client.py`` with no ``wire`` argument (the line is detected). What
the SuperLink says about the node (``flwr supernode ls``) is the check:

* a node without keys registers itself and is ``online``; SIGTERM → it deactivates and
  unregisters (``unregistered``), exit code 0;
* a node with an operator-registered key (``flwr supernode register``) activates as the
  node the operator got, and SIGTERM leaves it ``offline``, still registered;
* a key the SuperLink does not know ends ``start_client`` with ``AuthenticationError``
  in under 10 s.

Rounds, TLS and ``--enable-supernode-auth`` runs are in ``test_fleet_1_42*.py``.
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


@pytest.fixture(scope="module")
def superlink(
    flwr_1_42: FlowerEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuperLink142]:
    link = start_superlink_142(flwr_1_42, tmp_path_factory.mktemp("link-142"), grpc_fleet=True)
    try:
        yield link
    finally:
        link.process.stop()


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
    superlink.wait_node_status(node_id, "unregistered", timeout=10)


def test_operator_key_activates_and_only_deactivates(
    superlink: SuperLink142, tmp_path: Path
) -> None:
    key = make_node_key(tmp_path / "keys", "node")
    expected = superlink.register_node(key)
    args = ["--transport", "rest", "--auth-private-key", str(key.private_path)]
    args += ["--auth-public-key", str(key.public_path)]
    with processes() as procs:
        client = start_sdk_client(tmp_path, superlink.http_address, 0, *args)
        procs.append(client)
        assert _registered_node(client) == expected
        superlink.wait_node_status(expected, "online", timeout=20)
        client.signal(signal.SIGTERM)
        assert client.wait(timeout=15) == 0, client.output()
    superlink.wait_node_status(expected, "offline", timeout=10)


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_unregistered_key_is_an_authentication_error_within_10_s(
    superlink: SuperLink142, tmp_path: Path, transport: str
) -> None:
    key = make_node_key(tmp_path / "keys", "stranger")
    args = ["--transport", transport, "--auth-private-key", str(key.private_path)]
    args += ["--auth-public-key", str(key.public_path), "--max-retries", "0"]
    code, log, seconds = run_sdk_client(tmp_path, _address(superlink, transport), *args)
    assert code == 3, log
    assert "RAISED AuthenticationError" in log, log
    assert "flwr supernode register" in log, log
    assert seconds < 10, (seconds, log)


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
        assert _registered_node(first) == expected
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
