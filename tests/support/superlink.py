"""Run a real Flower 1.12.0 deployment on loopback: SuperLink, ServerApp, SuperExec.

Everything runs in the isolated flwr 1.12.0 venv (:class:`FlowerEnv`), bound to
127.0.0.1 (or ::1) on free ports (:func:`~support.federation.free_port`); a server whose
port was taken meanwhile is started again on fresh ones. Two ways to start a run, as 1.12 does:

* :func:`start_server_app`: ``flower-server-app <app dir> --superlink D`` — the run has
  no FAB (``fab_id``/``fab_version`` only);
* :func:`start_superexec` + :func:`flwr_run`: SuperExec installs the FAB built by
  ``flwr run`` and starts ``flower-server-app --run-id N`` itself; the run has a
  ``fab_hash`` and the ``--run-config`` overrides, so GetFab and ``run_config`` matter.

The ServerApp is ``tests/support/apps/fedavg_app`` (recording FedAvg); its JSON report
path is given by run config (``report-path``) or by ``$FEDAVG_REPORT``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.net.tls_material import TLSMaterial, TLSPaths, make_ca, make_server_certificate
from support.federation import (
    Process,
    free_port,
    read_report,
    start_listening,
    start_sdk_client,
)
from support.flower_env import FlowerEnv

SUPPORT = Path(__file__).resolve().parent
FEDAVG_APP = SUPPORT / "apps" / "fedavg_app"
# How often a server whose port was taken (or that exited) is started again on fresh ports.
START_ATTEMPTS = 3


# ---------------------------------------------------------------------------- material


def make_tls(directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")) -> TLSPaths:
    """A fresh CA and server certificate (SAN: ``hosts``) written to ``directory``."""
    ca = make_ca()
    cert, key = make_server_certificate(ca, hosts=hosts)
    return TLSMaterial(ca.cert_pem, cert, key).write(directory)


@dataclass(frozen=True)
class NodeKey:
    """One node's EC P-384 key pair, as files (OpenSSH format) and as objects."""

    private_path: Path
    public_path: Path

    def load(self) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
        private = serialization.load_ssh_private_key(self.private_path.read_bytes(), None)
        public = serialization.load_ssh_public_key(self.public_path.read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return private, public


def make_node_key(directory: Path, name: str) -> NodeKey:
    """Write an OpenSSH EC P-384 key pair ``name`` / ``name.pub`` (like ``ssh-keygen``)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private_path = directory / name
    public_path = directory / f"{name}.pub"
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return NodeKey(private_path, public_path)


@dataclass(frozen=True)
class AuthMaterial:
    """SuperLink key pair, the CSV of allowed node keys, and the node keys."""

    superlink: NodeKey
    allowed_csv: Path
    nodes: tuple[NodeKey, ...]


def make_auth(directory: Path, nodes: int) -> AuthMaterial:
    """A SuperLink key pair and ``nodes`` node key pairs, all listed in the CSV."""
    superlink = make_node_key(directory, "superlink")
    node_keys = tuple(make_node_key(directory, f"node{i}") for i in range(nodes))
    allowed = directory / "allowed_keys.csv"
    with allowed.open("w", newline="") as handle:
        csv.writer(handle).writerow(k.public_path.read_text().strip() for k in node_keys)
    return AuthMaterial(superlink, allowed, node_keys)


# --------------------------------------------------------------------------- SuperLink


@dataclass
class SuperLink:
    """A running ``flower-superlink``."""

    env: FlowerEnv
    process: Process
    host: str
    driver_port: int
    fleet_port: int
    fleet_api_type: str
    tls: TLSPaths | None
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def _bracketed(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def driver_address(self) -> str:
        """Driver API address for ``flower-server-app --superlink``."""
        return f"{self._bracketed}:{self.driver_port}"

    @property
    def fleet_address(self) -> str:
        """What our client's ``server_address`` is (``http://…`` for REST)."""
        hostport = f"{self._bracketed}:{self.fleet_port}"
        return f"http://{hostport}" if self.fleet_api_type == "rest" else hostport

    def security_args(self) -> list[str]:
        """``--insecure`` or ``--root-certificates CA`` for Driver API clients."""
        if self.tls is None:
            return ["--insecure"]
        return ["--root-certificates", str(self.tls.ca_cert)]

    def log_text(self) -> str:
        """The SuperLink's log so far."""
        return self.process.output()


def start_superlink(
    env: FlowerEnv,
    workdir: Path,
    *,
    fleet_api_type: str = "grpc-rere",
    tls: TLSPaths | None = None,
    auth: AuthMaterial | None = None,
    host: str = "127.0.0.1",
    name: str = "superlink",
    ports: tuple[int, int] | None = None,
) -> SuperLink:
    """Start a SuperLink and wait until it listens on its Driver and Fleet ports.

    Ready means the SuperLink process itself listens on both ports and is still running
    (see :func:`~support.federation.await_listening`), not merely that something accepts
    connections there. If it exits during startup (e.g. "Port ... is already in use")
    or another process holds a port, it is started again on fresh ports, up to
    :data:`START_ATTEMPTS` times; each attempt keeps its own log.

    ``ports`` (driver, fleet) reuses given ports, e.g. to restart a SuperLink in place
    (one attempt only).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    bracketed = f"[{host}]" if ":" in host else host

    def launch(attempt: int) -> tuple[Process, list[int]]:
        driver_port, fleet_port = ports if ports is not None else (free_port(host), free_port(host))
        args = _superlink_args(
            fleet_api_type, f"{bracketed}:{driver_port}", f"{bracketed}:{fleet_port}", workdir
        )
        args += _superlink_security_args(tls, auth)
        log = workdir / (f"{name}.log" if attempt == 1 else f"{name}-attempt{attempt}.log")
        return Process(args, log, _popen(env, workdir)), [driver_port, fleet_port]

    process, (driver_port, fleet_port) = start_listening(
        launch,
        host,
        what="SuperLink",
        attempts=1 if ports is not None else START_ATTEMPTS,
        timeout=60,
    )
    return SuperLink(env, process, host, driver_port, fleet_port, fleet_api_type, tls, workdir)


def _superlink_args(
    fleet_api_type: str, driver_address: str, fleet_address: str, workdir: Path
) -> list[str]:
    return [
        "flower-superlink",
        "--fleet-api-type",
        fleet_api_type,
        "--driver-api-address",
        driver_address,
        "--fleet-api-address",
        fleet_address,
        "--storage-dir",
        str(workdir / "ffs"),
    ]


def _superlink_security_args(tls: TLSPaths | None, auth: AuthMaterial | None) -> list[str]:
    args: list[str] = []
    if tls is None:
        args.append("--insecure")
    else:
        args += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if auth is not None:
        args += [
            "--auth-list-public-keys",
            str(auth.allowed_csv),
            "--auth-superlink-private-key",
            str(auth.superlink.private_path),
            "--auth-superlink-public-key",
            str(auth.superlink.public_path),
        ]
    return args


def _popen(env: FlowerEnv, workdir: Path, extra_env: dict[str, str] | None = None) -> Any:
    environ = env.environ(
        {
            "FLWR_HOME": str(workdir / "flwr_home"),
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )

    def popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return env.popen(list(args), env=environ, **kwargs)

    return popen


# --------------------------------------------------------------------------- ServerApp


def start_server_app(superlink: SuperLink, report: Path, *, name: str = "serverapp") -> Process:
    """``flower-server-app <fedavg_app> --superlink D``: a run without FAB."""
    args = [
        "flower-server-app",
        str(FEDAVG_APP),
        "--superlink",
        superlink.driver_address,
        *superlink.security_args(),
    ]
    return Process(
        args,
        superlink.workdir / f"{name}.log",
        _popen(superlink.env, superlink.workdir, {"FEDAVG_REPORT": str(report)}),
    )


@dataclass
class SuperExec:
    """A running ``flower-superexec`` bound to one SuperLink."""

    process: Process
    address: str
    superlink: SuperLink


def start_superexec(superlink: SuperLink, *, name: str = "superexec") -> SuperExec:
    """Start SuperExec (deployment executor) for ``superlink`` on a free loopback port.

    Like :func:`start_superlink`, retried on a fresh port if its port was taken.
    """
    host = superlink.host
    bracketed = f"[{host}]" if ":" in host else host
    executor_config = f'superlink="{superlink.driver_address}"'
    security = ["--insecure"]
    if superlink.tls is not None:
        executor_config += f' root-certificates="{superlink.tls.ca_cert}"'
        security = [
            "--ssl-ca-certfile",
            str(superlink.tls.ca_cert),
            "--ssl-certfile",
            str(superlink.tls.server_cert),
            "--ssl-keyfile",
            str(superlink.tls.server_key),
        ]
    base_args = [
        "--executor",
        "flwr.superexec.deployment:executor",
        "--executor-config",
        executor_config,
        *security,
    ]
    # SuperExec runs `pip install -e <app> --no-deps` with the first `pip` on PATH after
    # unpacking the FAB; the ServerApp is then loaded from the unpacked folder anyway. A
    # no-op `pip` first on PATH keeps that step offline and fast.
    fakebin = superlink.workdir / "fakebin"
    fakebin.mkdir(exist_ok=True)
    fake_pip = fakebin / "pip"
    fake_pip.write_text("#!/bin/sh\necho 'pip skipped by flwr-sdk tests:' \"$@\"\nexit 0\n")
    fake_pip.chmod(0o755)
    path = superlink.env.environ()["PATH"]
    extra = {"PATH": os.pathsep.join([str(fakebin), path])}

    def launch(attempt: int) -> tuple[Process, list[int]]:
        port = free_port(host)
        args = ["flower-superexec", "--address", f"{bracketed}:{port}", *base_args]
        log = superlink.workdir / (
            f"{name}.log" if attempt == 1 else f"{name}-attempt{attempt}.log"
        )
        return Process(args, log, _popen(superlink.env, superlink.workdir, extra)), [port]

    process, (port,) = start_listening(
        launch, host, what="SuperExec", attempts=START_ATTEMPTS, timeout=60
    )
    return SuperExec(process, f"{bracketed}:{port}", superlink)


def flwr_run(superexec: SuperExec, run_config: dict[str, Any]) -> int:
    """Copy the app, point a federation at ``superexec`` and ``flwr run`` it; the run id."""
    superlink = superexec.superlink
    app = superlink.workdir / "fedavg-app-run"  # flwr run wants letters, digits, "-"
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(FEDAVG_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    federation = [
        "",
        "[tool.flwr.federations]",
        'default = "local"',
        "",
        "[tool.flwr.federations.local]",
        f'address = "{superexec.address}"',
    ]
    if superlink.tls is None:
        federation.append("insecure = true")
    else:
        federation.append(f'root-certificates = "{superlink.tls.ca_cert}"')
    with (app / "pyproject.toml").open("a") as handle:
        handle.write("\n".join(federation) + "\n")
    overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())
    done = superlink.env.run(
        ["flwr", "run", str(app), "local", "--run-config", overrides],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=superlink.workdir,
        env=superlink.env.environ(
            {"FLWR_HOME": str(superlink.workdir / "flwr_home"), "FLWR_TELEMETRY_ENABLED": "0"}
        ),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for line in output.splitlines():
        if "Successfully started run" in line:
            return int(line.rsplit(" ", 1)[-1])
    raise AssertionError(f"flwr run printed no run id:\n{output}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def wait_for_report(report: Path, *, timeout: float, proc: Process | None = None) -> dict[str, Any]:
    """Wait until the ServerApp's report says ``done``; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if report.exists():
            try:
                data = read_report(report)
            except ValueError:
                data = {}
            if data.get("done"):
                return data
        time.sleep(0.5)
    detail = proc.output() if proc is not None else ""
    existing = report.read_text() if report.exists() else "<no report>"
    raise AssertionError(
        f"ServerApp did not finish in {timeout:.0f}s; report: {existing}\n{detail}"
    )


# ------------------------------------------------------------------ whole federations


def start_tls_proxy(
    superlink: SuperLink, tls: TLSPaths, *, name: str = "tls-proxy"
) -> tuple[Process, str]:
    """An https:// endpoint (``tls_proxy.py``) in front of a plaintext REST SuperLink.

    Retried on a fresh port if its port was taken, like :func:`start_superlink`.
    """
    host = superlink.host

    def launch(attempt: int) -> tuple[Process, list[int]]:
        port = free_port(host)
        args = [
            sys.executable,
            str(SUPPORT / "tls_proxy.py"),
            "--listen-host",
            host,
            "--listen-port",
            str(port),
            "--target-host",
            host,
            "--target-port",
            str(superlink.fleet_port),
            "--cert",
            str(tls.server_cert),
            "--key",
            str(tls.server_key),
        ]
        log = superlink.workdir / (
            f"{name}.log" if attempt == 1 else f"{name}-attempt{attempt}.log"
        )
        return Process(args, log, lambda a, **kw: subprocess.Popen(a, **kw)), [port]

    proc, (port,) = start_listening(
        launch, host, what="TLS proxy", attempts=START_ATTEMPTS, timeout=30
    )
    bracketed = f"[{host}]" if ":" in host else host
    return proc, f"https://{bracketed}:{port}"


@dataclass
class FederationResult:
    """What a finished run left: the ServerApp's report and our clients' logs."""

    report: dict[str, Any]
    client_logs: list[str]


def run_federation(
    superlink: SuperLink,
    tmp: Path,
    client_args: Sequence[Sequence[str]],
    *,
    address: str | None = None,
    run_config: dict[str, Any] | None = None,
    superexec: SuperExec | None = None,
    timeout: float = 150.0,
) -> FederationResult:
    """Run the recording FedAvg app with one flwr-sdk client per ``client_args`` entry.

    Without ``superexec`` the run is started by ``flower-server-app <app dir>`` (no FAB);
    with it, by ``flwr run`` with ``run_config`` overrides (FAB). Clients connect to
    ``address`` (default: the SuperLink's Fleet address), are stopped with SIGTERM once
    the report says ``done``, and must have exited cleanly (``RETURNED``).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / f"report-{time.monotonic_ns()}.json"
    started: list[Process] = []
    try:
        if superexec is None:
            server_app: Process | None = start_server_app(superlink, report)
            started.append(server_app)
        else:
            server_app = None
            flwr_run(superexec, {**(run_config or {}), "report-path": str(report)})
        for index, extra in enumerate(client_args):
            started.append(start_sdk_client(tmp, address or superlink.fleet_address, index, *extra))
        clients = started[1:] if server_app is not None else started
        data = wait_for_report(report, timeout=timeout, proc=server_app)
        if server_app is not None:
            assert server_app.wait(timeout=60) == 0, server_app.output()
        for client in clients:
            client.signal(signal.SIGTERM)
        logs = []
        for client in clients:
            assert client.wait(timeout=10) == 0, client.output()
            logs.append(client.output())
            assert "RETURNED" in logs[-1], logs[-1]
        return FederationResult(data, logs)
    finally:
        for proc in started:
            proc.stop()


def assert_context_rounds(report: dict[str, Any], rounds: int, run_config: dict[str, Any]) -> None:
    """Every round's results come from the same two nodes; state counts fits; run_config."""
    seen_nodes: set[str] | None = None
    for rnd in range(1, rounds + 1):
        by_node = report["fit"][str(rnd)]["by_node"]
        for node_id, metrics in by_node.items():
            assert metrics["node_id"] == node_id, (rnd, by_node)
            assert int(node_id) >= 0, node_id
            assert metrics["fits_in_state"] == rnd, (rnd, by_node)
            assert json.loads(metrics["run_config"]) == run_config, (rnd, metrics)
        if seen_nodes is None:
            seen_nodes = set(by_node)
        assert set(by_node) == seen_nodes, (rnd, by_node)
