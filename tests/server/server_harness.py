"""Run the reference server in a background thread (its own event loop) for a test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.federation import REPO, Process
from support.flower_env import FlowerEnv

from flwr_sdk.server import FedAvg, History, NodeAuthenticator, ReferenceServer, ServerConfig
from flwr_sdk.server.app import ServerTLS
from flwr_sdk.server.tls_material import TLSMaterial, make_tls_material

T = TypeVar("T")

FLWR_CLIENT = REPO / "tests" / "support" / "flwr_client.py"
STEP_TWO_CLIENTS = 5.0 / 3.0


def shift_strategy(clients: int = 2) -> FedAvg:
    """FedAvg for the ShiftClient federations: every node every round, round in config."""
    return FedAvg(
        min_fit_clients=clients,
        min_evaluate_clients=clients,
        min_available_clients=clients,
        on_fit_config=lambda rnd: {"round": rnd, "lr": 0.5, "tag": "fit"},
        on_evaluate_config=lambda rnd: {"round": rnd},
        seed=0,
    )


class ServerThread:
    """A :class:`ReferenceServer` on a private event loop in a daemon thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = ReferenceServer(config)
        self.call(self.server.start())
        self._history: Future[History] | None = None

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_loop(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Call ``fn`` on the server's loop (to read state safely)."""

        async def wrapper() -> T:
            return fn()

        result: T = self.call(wrapper(), timeout)
        return result

    @property
    def address(self) -> str:
        return self.server.address

    def start_rounds(self) -> None:
        self._history = asyncio.run_coroutine_threadsafe(self.server.run(), self.loop)

    def history(self, timeout: float) -> History:
        assert self._history is not None
        return self._history.result(timeout)

    def close(self) -> None:
        try:
            if self._history is not None and not self._history.done():
                self._history.cancel()
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextmanager
def server_thread(config: ServerConfig) -> Iterator[ServerThread]:
    server = ServerThread(config)
    try:
        yield server
    finally:
        server.close()


def tls_config(tmp: Path) -> tuple[ServerTLS, Path]:
    """Server TLS from a throwaway CA; returns it and the CA certificate path."""
    material: TLSMaterial = make_tls_material()
    paths = material.write(tmp / "tls")
    return ServerTLS(material.server_cert_pem, material.server_key_pem), paths.ca_cert


def write_ec_key_pair(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path, Path]:
    """A P-384 key pair as OpenSSH files ``name`` and ``name.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / name
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return key, private, public


def auth_config(tmp: Path, clients: int) -> tuple[NodeAuthenticator, list[tuple[Path, Path]]]:
    """A server key, ``clients`` allowed client key pairs (files) and the authenticator."""
    server_key, _, _ = write_ec_key_pair(tmp / "keys", "server")
    pairs = []
    public_keys = []
    for i in range(clients):
        key, private, public = write_ec_key_pair(tmp / "keys", f"client{i}")
        pairs.append((private, public))
        public_keys.append(key.public_key())
    return NodeAuthenticator.create(server_key, public_keys), pairs


def start_flwr_client(
    env: FlowerEnv, tmp: Path, address: str, index: int, *extra: str, name: str = "flwr-client"
) -> Process:
    """The real flwr ``start_client`` (tests/support/flwr_client.py) in ``env``."""
    args: list[str | os.PathLike[str]] = [
        env.python,
        FLWR_CLIENT,
        "--address",
        address,
        "--index",
        str(index),
        *extra,
    ]
    env_vars = env.environ({"FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
    return Process(
        args,
        tmp / f"{name}{index}.log",
        lambda a, **kw: subprocess.Popen(a, env=env_vars, **kw),
    )


def stop_fleet_clients(procs: Sequence[Process], timeout: float = 30.0) -> list[int]:
    """SIGTERM Fleet API clients (they never stop by themselves) and collect exit codes."""
    for proc in procs:
        if proc.proc.poll() is None:
            proc.signal(signal.SIGTERM)
    return [proc.wait(timeout) for proc in procs]


def assert_shift_rounds(history: History, rounds: int, clients: int = 2) -> None:
    """Every round: all nodes answered, FedAvg moved the model by the expected step."""
    import numpy as np

    data = history.to_dict()
    assert len(data["rounds"]) == rounds, data
    step = sum((i + 1) * 10 * (i + 1) for i in range(clients)) / sum(
        10 * (i + 1) for i in range(clients)
    )
    loss = sum(float(i + 1) for i in range(clients)) / clients
    for rnd in range(1, rounds + 1):
        r = data["rounds"][str(rnd)]
        assert r["fit_results"] == clients and r["fit_failures"] == 0, r
        assert r["fit_num_examples"] == [10 * (i + 1) for i in range(clients)], r
        assert r["fit_metrics"]["seen_round"] == rnd, r
        np.testing.assert_allclose(np.asarray(r["parameters"][0]), np.full(3, rnd * step), 1e-5)
        assert r["evaluate_results"] == clients and r["evaluate_failures"] == 0, r
        assert abs(r["evaluate_loss"] - loss) < 1e-6, r
