"""Run a real Flower deployment (1.12.0 or 1.15.2) on loopback: SuperLink and ServerApp.

Everything runs in the isolated venv of the release (:class:`FlowerEnv`; the release is
read from its pinned requirements, :func:`release_of`), bound to 127.0.0.1 (or ::1) on
free ports (:func:`~support.federation.free_port`); a server whose port was taken
meanwhile is started again on fresh ones. How a run starts depends on the release:

* 1.12, :func:`start_server_app`: ``flower-server-app <app dir> --superlink D`` — the run
  has no FAB (``fab_id``/``fab_version`` only);
* 1.12, :func:`start_superexec` + :func:`flwr_run`: SuperExec installs the FAB built by
  ``flwr run`` and starts ``flower-server-app --run-id N`` itself; the run has a
  ``fab_hash`` and the ``--run-config`` overrides, so GetFab and ``run_config`` matter;
* 1.15, :func:`flwr_run` with the SuperLink itself: the SuperLink serves the Exec API
  (no SuperExec) and spawns ``flwr-serverapp --run-once`` per pending run, which installs
  the FAB into ``$FLWR_HOME/apps`` (a plain copy, no pip) and loads the ServerApp from
  there; its output lands in the SuperLink's log.

The ServerApp is ``tests/support/apps/fedavg_app`` (recording FedAvg, the same code on
both releases: ``ServerApp(server_fn=...)`` exists in both); its JSON report path is
given by run config (``report-path``) or by ``$FEDAVG_REPORT``.
"""

from __future__ import annotations

import csv
import json
import os
import re
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

from flwr_sdk.server.tls_material import TLSMaterial, TLSPaths, make_ca, make_server_certificate
from support.federation import (
    Process,
    free_port,
    processes,
    read_report,
    start_listening,
    start_sdk_client,
)
from support.flower_env import FlowerEnv

SUPPORT = Path(__file__).resolve().parent
FEDAVG_APP = SUPPORT / "apps" / "fedavg_app"
# The app's [tool.flwr.app.config], flattened, as its FAB carries it (a node's run_config
# is this overlaid with the run's overrides).
FEDAVG_FAB_CONFIG: dict[str, Any] = {
    "num-server-rounds": 3,
    "report-path": "",
    "fraction-fit": 1.0,
    "label": "from-fab",
    "nested.lr": 0.5,
    "nested.name": "nested-default",
}
# How often a server whose port was taken (or that exited) is started again on fresh ports.
START_ATTEMPTS = 3
# Releases whose SuperLink serves the Exec API itself (runs start with `flwr run` against
# it; no SuperExec, no `flower-server-app`).
EXEC_IN_SUPERLINK = ("1.15.2",)


def release_of(env: FlowerEnv) -> str:
    """The flwr release installed in ``env`` (from its pinned ``flwr…==X`` requirement)."""
    for requirement in env.requirements:
        found = re.fullmatch(r"flwr(?:\[[^\]]*\])?==(\S+)", requirement.strip())
        if found:
            return found.group(1)
    raise ValueError(f"{env.name}: no pinned flwr release in {env.requirements}")


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
    """A running ``flower-superlink``.

    ``driver_port`` is the Driver API (1.12) or ServerAppIo API (1.15) port; ``exec_port``
    the Exec API port of a SuperLink that serves it (1.15), else None.
    """

    env: FlowerEnv
    process: Process
    host: str
    driver_port: int
    fleet_port: int
    fleet_api_type: str
    tls: TLSPaths | None
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)
    release: str = "1.12.0"
    exec_port: int | None = None

    @property
    def _bracketed(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def driver_address(self) -> str:
        """Driver API address for ``flower-server-app --superlink``."""
        return f"{self._bracketed}:{self.driver_port}"

    @property
    def ports(self) -> tuple[int, ...]:
        """Its ports as :func:`start_superlink` takes them, to restart it in place."""
        exec_port = () if self.exec_port is None else (self.exec_port,)
        return (self.driver_port, self.fleet_port, *exec_port)

    @property
    def exec_address(self) -> str:
        """Exec API address for ``flwr run`` (only where the SuperLink serves it)."""
        if self.exec_port is None:
            raise AssertionError(f"a flwr {self.release} SuperLink has no Exec API: use SuperExec")
        return f"{self._bracketed}:{self.exec_port}"

    @property
    def fleet_address(self) -> str:
        """What our client's ``server_address`` is (``http(s)://…`` for REST)."""
        hostport = f"{self._bracketed}:{self.fleet_port}"
        if self.fleet_api_type != "rest":
            return hostport
        # The 1.15 SuperLink serves REST over TLS itself; the 1.12 one cannot.
        scheme = "https" if self.tls is not None and self.release in EXEC_IN_SUPERLINK else "http"
        return f"{scheme}://{hostport}"

    def security_args(self) -> list[str]:
        """``--insecure`` or ``--root-certificates CA`` for Driver API clients."""
        if self.tls is None:
            return ["--insecure"]
        return ["--root-certificates", str(self.tls.ca_cert)]

    def log_text(self) -> str:
        """The SuperLink's whole log so far (1.15: with its ServerApps' output)."""
        return self.process.output(tail=None)


def start_superlink(
    env: FlowerEnv,
    workdir: Path,
    *,
    fleet_api_type: str = "grpc-rere",
    tls: TLSPaths | None = None,
    auth: AuthMaterial | None = None,
    host: str = "127.0.0.1",
    name: str = "superlink",
    ports: Sequence[int] | None = None,
) -> SuperLink:
    """Start a SuperLink of ``env``'s release; wait until it listens on all its APIs.

    Ready means the SuperLink process itself listens on its Driver/ServerAppIo and Fleet
    ports (and Exec port, 1.15) and is still running (see
    :func:`~support.federation.await_listening`), not merely that something accepts
    connections there. If it exits during startup (e.g. "Port ... is already in use")
    or another process holds a port, it is started again on fresh ports, up to
    :data:`START_ATTEMPTS` times; each attempt keeps its own log.

    ``ports`` (driver, fleet[, exec]) reuses given ports, e.g. to restart a SuperLink in
    place (one attempt only).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    release = release_of(env)
    serves_exec = release in EXEC_IN_SUPERLINK
    bracketed = f"[{host}]" if ":" in host else host

    def launch(attempt: int) -> tuple[Process, list[int]]:
        wanted = 3 if serves_exec else 2
        chosen = list(ports) if ports is not None else []
        chosen += [free_port(host) for _ in range(wanted - len(chosen))]
        addresses = [f"{bracketed}:{port}" for port in chosen]
        args = [
            "flower-superlink",
            "--fleet-api-type",
            fleet_api_type,
            "--fleet-api-address",
            addresses[1],
            "--storage-dir",
            str(workdir / "ffs"),
        ]
        if serves_exec:
            # Every API explicitly on loopback (the defaults bind 0.0.0.0). SimulationIo
            # is only served for simulation runs; its address is given all the same.
            args += ["--serverappio-api-address", addresses[0]]
            args += ["--exec-api-address", addresses[2]]
            args += ["--simulationio-api-address", f"{bracketed}:{free_port(host)}"]
        else:
            args += ["--driver-api-address", addresses[0]]
        args += _superlink_security_args(tls, auth, legacy_keys=not serves_exec)
        log = workdir / (f"{name}.log" if attempt == 1 else f"{name}-attempt{attempt}.log")
        return Process(args, log, _popen(env, workdir)), chosen

    process, chosen = start_listening(
        launch,
        host,
        what=f"SuperLink {release}",
        attempts=1 if ports is not None else START_ATTEMPTS,
        timeout=60,
    )
    return SuperLink(
        env,
        process,
        host,
        chosen[0],
        chosen[1],
        fleet_api_type,
        tls,
        workdir,
        release=release,
        exec_port=chosen[2] if serves_exec else None,
    )


def _superlink_security_args(
    tls: TLSPaths | None, auth: AuthMaterial | None, *, legacy_keys: bool
) -> list[str]:
    """TLS flags (all three ``--ssl-*``, or ``--insecure``) and the node-key allow-list.

    ``legacy_keys``: also pass the SuperLink's own key pair (1.12 derives the HMAC key
    from it; 1.15 deprecates the flags as no-ops).
    """
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
        args += ["--auth-list-public-keys", str(auth.allowed_csv)]
    if auth is not None and legacy_keys:
        args += [
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
    """``flower-server-app <fedavg_app> --superlink D``: a run without FAB (1.12 only)."""
    _require_superexec_release(superlink)
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

    Like :func:`start_superlink`, retried on a fresh port if its port was taken. 1.12 only:
    later SuperLinks serve the Exec API themselves (pass the SuperLink to :func:`flwr_run`).
    """
    _require_superexec_release(superlink)
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


def _require_superexec_release(superlink: SuperLink) -> None:
    if superlink.exec_port is not None:
        raise AssertionError(
            f"flwr {superlink.release} starts runs through the SuperLink's Exec API: "
            "flwr_run(superlink, ...) / run_federation(superlink, ...) without superexec"
        )


def flwr_run(launcher: SuperExec | SuperLink, run_config: dict[str, Any]) -> int:
    """Copy the app, point a federation at the Exec API and ``flwr run`` it; the run id.

    ``launcher`` is the SuperExec (1.12) or the SuperLink that serves the Exec API (1.15).
    """
    overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())
    output = _flwr_cli(launcher, ["run"], ["--run-config", overrides])
    for line in output.splitlines():
        if "Successfully started run" in line:
            return int(line.rsplit(" ", 1)[-1])
    raise AssertionError(f"flwr run printed no run id:\n{output}")


def flwr_stop(launcher: SuperExec | SuperLink, run_id: int) -> str:
    """``flwr stop RUN_ID`` through the Exec API (the run ends ``finished:stopped``)."""
    return _flwr_cli(launcher, ["stop", str(run_id)])


def _flwr_cli(
    launcher: SuperExec | SuperLink, command: Sequence[str], options: Sequence[str] = ()
) -> str:
    """``flwr <command…> <app copy> local <options…>``, the federation at the Exec API.

    Returns the output; fails unless it exits 0.
    """
    if isinstance(launcher, SuperExec):
        superlink, exec_address = launcher.superlink, launcher.address
    else:
        superlink, exec_address = launcher, launcher.exec_address
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
        f'address = "{exec_address}"',
    ]
    if superlink.tls is None:
        federation.append("insecure = true")
    else:
        federation.append(f'root-certificates = "{superlink.tls.ca_cert}"')
    with (app / "pyproject.toml").open("a") as handle:
        handle.write("\n".join(federation) + "\n")
    done = superlink.env.run(
        ["flwr", *command, str(app), "local", *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=superlink.workdir,
        env=superlink.env.environ(
            {"FLWR_HOME": str(superlink.workdir / "flwr_home"), "FLWR_TELEMETRY_ENABLED": "0"}
        ),
    )
    output = str(done.stdout + done.stderr)
    assert done.returncode == 0, output
    return output


def fleet_ping(superlink: SuperLink, node_id: int) -> bool:
    """Ask the SuperLink, with flwr's own protos, whether it still knows ``node_id``.

    ``Ping`` answers ``success`` = whether the node is registered. Over REST (no node
    auth on either release) and grpc-rere without node auth (1.12); a 1.15 grpc-rere
    Fleet API refuses calls without the node's signature.
    """
    if superlink.fleet_api_type == "rest":
        cafile = str(superlink.tls.ca_cert) if superlink.tls is not None else None
        url = superlink.fleet_address + "/api/v0/fleet/ping"
        call = (
            "import ssl, urllib.request\n"
            "kind = 'application/protobuf'\n"
            f"post = urllib.request.Request({url!r}, data=request.SerializeToString(),\n"
            "    method='POST', headers={'Content-Type': kind, 'Accept': kind})\n"
            f"context = ssl.create_default_context(cafile={cafile!r})\n"
            "with urllib.request.urlopen(post, timeout=10, context=context) as answer:\n"
            "    ok = PingResponse.FromString(answer.read()).success\n"
        )
    else:
        assert superlink.tls is None, "grpc-rere ping: plaintext SuperLinks only"
        call = (
            "import grpc\n"
            "from flwr.proto.fleet_pb2_grpc import FleetStub\n"
            f"channel = grpc.insecure_channel({superlink.fleet_address!r})\n"
            "ok = FleetStub(channel).Ping(request).success\n"
            "channel.close()\n"
        )
    code = (
        "from flwr.proto.fleet_pb2 import PingRequest, PingResponse\n"
        "from flwr.proto.node_pb2 import Node\n"
        f"request = PingRequest(node=Node(node_id={node_id}), ping_interval=30)\n"
        f"{call}"
        "print('SUCCESS' if ok else 'UNKNOWN')\n"
    )
    done = superlink.env.run(
        [superlink.env.python, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return "SUCCESS" in done.stdout


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

    On 1.12, without ``superexec`` the run is started by ``flower-server-app <app dir>``
    (no FAB); with it, by ``flwr run`` with ``run_config`` overrides (FAB). On 1.15 it is
    always ``flwr run`` against the SuperLink's Exec API (FAB). Clients connect to
    ``address`` (default: the SuperLink's Fleet address), are stopped with SIGTERM once
    the report says ``done``, and must have exited cleanly (``RETURNED``).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / f"report-{time.monotonic_ns()}.json"
    started: list[Process] = []
    server_app: Process | None = None
    try:
        launcher = superexec or (superlink if superlink.exec_port is not None else None)
        if launcher is None:
            server_app = start_server_app(superlink, report)
            started.append(server_app)
        else:
            flwr_run(launcher, {**(run_config or {}), "report-path": str(report)})
        clients = [
            start_sdk_client(tmp, address or superlink.fleet_address, index, *extra)
            for index, extra in enumerate(client_args)
        ]
        started += clients
        # Where the ServerApp's output goes: its own log, SuperExec's or the SuperLink's.
        server_log = server_app or (superexec.process if superexec else superlink.process)
        data = wait_for_report(report, timeout=timeout, proc=server_log)
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


REGISTERED = "Registered with the SuperLink as node "


def assert_registers_again_after_restart(
    env: FlowerEnv, tmp: Path, client_args: Sequence[str], *, announced: str | None = None
) -> None:
    """A restarted SuperLink (in-memory state) has forgotten the node: it registers again.

    One node on a SuperLink of ``env``'s release, which is then stopped and started anew
    on the same ports; the node must log ``announced`` (if given), register a new node id
    that the new SuperLink logs, and on SIGTERM exit 0 after DeleteNode of that node.
    """
    first = start_superlink(env, tmp / "first")
    second: SuperLink | None = None
    with processes() as procs:
        try:
            client = start_sdk_client(tmp, first.fleet_address, 0, *client_args)
            procs.append(client)
            client.wait_for_output(REGISTERED, timeout=30)
            first.process.stop()
            time.sleep(1.0)
            second = start_superlink(env, tmp / "second", ports=first.ports)
            if announced is not None:
                client.wait_for_output(announced, timeout=40)
            output = client.wait_for_output(REGISTERED, timeout=40, occurrence=2)
            old_node, new_node = (part.split()[0] for part in output.split(REGISTERED)[1:3])
            assert new_node != old_node
            assert f"[Fleet.CreateNode] Created node_id={new_node}" in second.log_text()
            client.signal(signal.SIGTERM)
            assert client.wait(timeout=5) == 0, client.output()
            assert f"[Fleet.DeleteNode] Delete node_id={new_node}" in second.log_text()
        finally:
            first.process.stop()
            if second is not None:
                second.process.stop()


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
