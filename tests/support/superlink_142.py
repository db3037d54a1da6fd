"""Run a real flwr 1.42.0 deployment on loopback: SuperLink, runs, operator CLI, SuperNodes.

Everything runs in the isolated venv of the release (:class:`FlowerEnv`), bound to
127.0.0.1 on free ports. What 1.42 changed for a test harness (facts:
``shared/protocol/flower-1.42.md`` §2, §3, §12):

* one ``flower-superlink --host H --port P`` process serves the Fleet HTTP API
  (``/v1/fleet/<rpc>``), the Control API (the ``flwr`` CLI) and the Runtime API (its own
  ``flower-superexec`` → ``flwr-serverapp`` per run) on that one port; HTTPS with the three
  ``--ssl-*`` files, plain HTTP with ``--insecure``;
* the gRPC Fleet service only with ``FLWR_INTERNAL_GRPC_FLEET_API=1`` in the SuperLink's
  environment, on ``--fleet-api-address``;
* ``--enable-supernode-auth`` (TLS only): nodes may not register themselves; the operator
  registers a node's OpenSSH public key with ``flwr supernode register`` first;
* runs start with ``flwr run <app dir> <connection>``, the connection named in
  ``$FLWR_HOME/config.toml`` (an app's own ``[tool.flwr.federations]`` is refused);
  ``flwr supernode ls`` tells each node's status (online / offline / unregistered).

The ServerApp is the recording FedAvg of ``tests/support/apps/fedavg_app`` (the same code
as on 1.12/1.15); its FAB carries the ClientApp of ``apps/clientapp_142`` so that Flower's
own ``flower-supernode`` (:func:`start_flower_supernode`) can take part too. Runtime
dependency installation (``uv sync``, which would reach the network) is switched off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr_sdk.server.tls_material import TLSPaths
from support.federation import Process, free_port, processes, start_listening, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import (
    FEDAVG_APP,
    START_ATTEMPTS,
    FederationResult,
    NodeKey,
    _popen,
    _toml_value,
    wait_for_report,
)

SUPPORT = Path(__file__).resolve().parent
CLIENTAPP_142 = SUPPORT / "apps" / "clientapp_142" / "client_app.py"
CONNECTION = "local"  # the connection name the flwr CLI is given
# Environment every 1.42 process gets (no telemetry, no update check against flower.ai).
QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
# Issue 15, done-when 2: the one argument list ``sdk_client.py`` gets against every line
# (tests/interop/test_same_program_all_lines.py for 1.12 and 1.15; on 1.42 the plain-HTTP
# FedAvg run of tests/interop/test_fleet_1_42.py, which would otherwise run twice).
SAME_PROGRAM_ARGS = ("--transport", "rest", "--report-context")


@dataclass
class SuperLink142:
    """A running flwr 1.42 ``flower-superlink``.

    ``port`` is its one HTTP(S) port (Fleet, Control, Runtime); ``grpc_port`` the gRPC
    Fleet service's port, when it runs one.
    """

    env: FlowerEnv
    process: Process
    host: str
    port: int
    tls: TLSPaths | None
    workdir: Path
    grpc_port: int | None = None
    supernode_auth: bool = False

    @property
    def hostport(self) -> str:
        """``host:port`` of the HTTP API (what ``flower-supernode --superlink`` takes)."""
        return f"{self.host}:{self.port}"

    @property
    def http_address(self) -> str:
        """Our client's address for the Fleet HTTP API: ``http(s)://host:port``."""
        return f"{'http' if self.tls is None else 'https'}://{self.hostport}"

    @property
    def grpc_address(self) -> str:
        """Our client's address for the gRPC Fleet service (``host:port``)."""
        if self.grpc_port is None:
            raise AssertionError("this SuperLink runs no gRPC Fleet service")
        return f"{self.host}:{self.grpc_port}"

    @property
    def home(self) -> Path:
        """``$FLWR_HOME`` of the operator's ``flwr`` CLI (its config.toml names the link)."""
        return self.workdir / "flwr_home"

    def stop(self) -> None:
        """Kill the SuperLink and every process it started, wherever their group.

        The SuperLink's ``flower-superexec`` runs in a session of its own and starts each
        run's ``flwr-serverapp`` there, out of reach of the kill of the SuperLink's
        process group; a run that had not finished (a failed test) would leave its
        ``flwr-serverapp`` running for good.
        """
        found = (_group(pid) for pid in _descendants(self.process.proc.pid))
        groups = {group for group in found if group is not None} - {os.getpgrp()}
        self.process.stop()
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def log_text(self) -> str:
        """The SuperLink's whole log so far (with its ServerApps' output)."""
        return self.process.output(tail=None)

    # ------------------------------------------------------------------- operator CLI

    def flwr(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``flwr ARGS`` as the operator; its output (it must exit 0)."""
        done = self.env.run(
            ["flwr", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            env=self.env.environ({"FLWR_HOME": str(self.home), **QUIET_ENV}),
        )
        output = str(done.stdout + done.stderr)
        assert done.returncode == 0, f"flwr {' '.join(args)} failed:\n{output}"
        return str(done.stdout)

    def flwr_json(self, *args: str) -> dict[str, Any]:
        """``flwr ARGS --format json``, parsed; fails unless it says ``success``."""
        answer: dict[str, Any] = json.loads(self.flwr(*args, "--format", "json"))
        assert answer.get("success") is True, answer
        return answer

    def run(self, run_config: dict[str, Any], app: Path | None = None) -> int:
        """``flwr run <app> local --run-config …``: start a run of the FedAvg app; its id."""
        app = app or fedavg_app_142(self.workdir)
        overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())
        answer = self.flwr_json("run", str(app), CONNECTION, "--run-config", overrides)
        return int(answer["run-id"])

    def run_status(self, run_id: int) -> str:
        """``flwr ls --run-id``: the run's status, e.g. ``running``, ``finished:completed``."""
        answer = self.flwr_json("ls", CONNECTION, "--run-id", str(run_id))
        return str(answer["runs"][0]["status"])

    def register_node(self, key: NodeKey) -> int:
        """``flwr supernode register <key.pub>``: the operator registers a node key."""
        answer = self.flwr_json("supernode", "register", str(key.public_path), CONNECTION)
        return int(answer["node-id"])

    def nodes(self) -> dict[int, dict[str, Any]]:
        """``flwr supernode ls``: every node the SuperLink knows, by node id."""
        answer = self.flwr_json("supernode", "ls", CONNECTION)
        return {int(node["node-id"]): node for node in answer["nodes"]}

    def node_status(self, node_id: int) -> str | None:
        """The node's status as ``flwr supernode ls`` shows it (None: not listed)."""
        node = self.nodes().get(node_id)
        return None if node is None else str(node["status"])

    def wait_node_status(self, node_id: int, status: str, *, timeout: float) -> float:
        """Poll ``flwr supernode ls`` until the node shows ``status``; seconds it took."""
        started = time.monotonic()
        seen: str | None = None
        while time.monotonic() - started < timeout:
            seen = self.node_status(node_id)
            if seen == status:
                return time.monotonic() - started
            time.sleep(1.0)
        raise AssertionError(
            f"node {node_id} not {status!r} after {timeout:.0f}s (last seen: {seen!r}); "
            f"nodes: {self.nodes()}"
        )


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # the fields after the parenthesised command name: state, ppid, …
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def _group(pid: int) -> int | None:
    """The process group of ``pid``; None once it has gone."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def fedavg_app_142(workdir: Path) -> Path:
    """A copy of the FedAvg app whose ClientApp is the 1.42 ShiftClient (for its FAB)."""
    app = workdir / "fedavg-app-142"  # flwr run wants letters, digits, "-"
    if not app.exists():
        shutil.copytree(FEDAVG_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copyfile(CLIENTAPP_142, app / "fedavg_app" / "client_app.py")
    return app


def start_superlink_142(
    env: FlowerEnv,
    workdir: Path,
    *,
    tls: TLSPaths | None = None,
    grpc_fleet: bool = False,
    supernode_auth: bool = False,
    host: str = "127.0.0.1",
    name: str = "superlink",
) -> SuperLink142:
    """Start a flwr 1.42 SuperLink; wait until it listens on its port(s).

    ``grpc_fleet`` also starts the gRPC Fleet service; ``supernode_auth`` passes
    ``--enable-supernode-auth`` (needs ``tls``). Retried on fresh ports if a port was
    taken, like :func:`support.superlink.start_superlink`. Writes the operator CLI's
    ``config.toml`` (connection ``local``).
    """
    if supernode_auth and tls is None:
        raise ValueError("--enable-supernode-auth needs TLS (the SuperLink refuses --insecure)")
    workdir.mkdir(parents=True, exist_ok=True)
    extra_env = dict(QUIET_ENV)
    if grpc_fleet:
        extra_env["FLWR_INTERNAL_GRPC_FLEET_API"] = "1"

    def launch(attempt: int) -> tuple[Process, list[int]]:
        ports = [free_port(host) for _ in range(2 if grpc_fleet else 1)]
        args = ["flower-superlink", "--host", host, "--port", str(ports[0])]
        args += ["--database", ":flwr-in-memory:", "--disable-runtime-dependency-installation"]
        if grpc_fleet:
            args += ["--fleet-api-address", f"{host}:{ports[1]}"]
        args += _tls_args(tls)
        if supernode_auth:
            args.append("--enable-supernode-auth")
        log = workdir / (f"{name}.log" if attempt == 1 else f"{name}-attempt{attempt}.log")
        return Process(args, log, _popen(env, workdir, extra_env)), ports

    process, ports = start_listening(
        launch, host, what="SuperLink 1.42.0", attempts=START_ATTEMPTS, timeout=60
    )
    superlink = SuperLink142(
        env,
        process,
        host,
        ports[0],
        tls,
        workdir,
        grpc_port=ports[1] if grpc_fleet else None,
        supernode_auth=supernode_auth,
    )
    _write_cli_config(superlink)
    return superlink


def _tls_args(tls: TLSPaths | None) -> list[str]:
    if tls is None:
        return ["--insecure"]
    return [
        "--ssl-ca-certfile",
        str(tls.ca_cert),
        "--ssl-certfile",
        str(tls.server_cert),
        "--ssl-keyfile",
        str(tls.server_key),
    ]


def _write_cli_config(superlink: SuperLink142) -> None:
    """``$FLWR_HOME/config.toml``: connection ``local`` → the SuperLink's HTTP port."""
    lines = [
        "[superlink]",
        f'default = "{CONNECTION}"',
        "",
        f"[superlink.{CONNECTION}]",
        f'address = "{superlink.hostport}"',
    ]
    if superlink.tls is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{superlink.tls.ca_cert}"')
    superlink.home.mkdir(parents=True, exist_ok=True)
    (superlink.home / "config.toml").write_text("\n".join(lines) + "\n")


def start_flower_supernode(
    superlink: SuperLink142, tmp: Path, index: int, *, key: NodeKey | None = None
) -> Process:
    """Flower's own ``flower-supernode`` (node config ``index``), for comparison.

    It runs the FAB's ClientApp (``apps/clientapp_142``) in ``flwr-clientapp`` processes
    it starts itself; ``key``: its private key (``--enable-supernode-auth``).
    """
    home = tmp / f"supernode{index}-home"
    home.mkdir(parents=True, exist_ok=True)
    args = ["flower-supernode", "--superlink", superlink.hostport]
    args += ["--port", str(free_port(superlink.host)), "--node-config", f"index={index}"]
    if superlink.tls is None:
        args.append("--insecure")
    else:
        args += ["--root-certificates", str(superlink.tls.ca_cert)]
    if key is not None:
        args += ["--auth-supernode-private-key", str(key.private_path)]
    popen = _popen(superlink.env, tmp, {"FLWR_HOME": str(home), **QUIET_ENV})
    return Process(args, tmp / f"supernode{index}-{time.monotonic_ns()}.log", popen)


def sdk_nodes(
    address: str, client_args: Sequence[Sequence[str]]
) -> Callable[[Path], list[Process]]:
    """Starter for :func:`run_federation_142`: one ``sdk_client.py`` per args entry."""

    def start(tmp: Path) -> list[Process]:
        return [start_sdk_client(tmp, address, i, *args) for i, args in enumerate(client_args)]

    return start


def run_federation_142(
    superlink: SuperLink142,
    tmp: Path,
    start_nodes: Callable[[Path], list[Process]],
    *,
    run_config: dict[str, Any] | None = None,
    timeout: float = 150.0,
    returned: bool = True,
) -> FederationResult:
    """``flwr run`` the recording FedAvg app with the nodes ``start_nodes`` starts.

    The nodes are started after the run (they fetch its Run/FAB when its first message
    reaches them), stopped with SIGTERM once the report says ``done`` and must exit 0;
    ``returned``: they are our ``sdk_client.py`` (it logs ``RETURNED``). The run must end
    ``finished:completed``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / f"report-{time.monotonic_ns()}.json"
    with processes() as started:
        run_id = superlink.run({**(run_config or {}), "report-path": str(report)})
        nodes = start_nodes(tmp)
        started += nodes
        data = wait_for_report(report, timeout=timeout, proc=superlink.process)
        _wait_run_finished(superlink, run_id, timeout=30)
        for node in nodes:
            node.signal(signal.SIGTERM)
        logs = []
        for node in nodes:
            assert node.wait(timeout=15) == 0, node.output()
            logs.append(node.output(tail=None))
            if returned:
                assert "RETURNED" in logs[-1], logs[-1]
        data["run_id"] = run_id
        return FederationResult(data, logs)


def _wait_run_finished(superlink: SuperLink142, run_id: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = superlink.run_status(run_id)
        if status.startswith("finished"):
            break
        time.sleep(1.0)
    assert status == "finished:completed", (status, superlink.process.output())
