"""Run a Flower 1.12 client program and its flwr_sdk twin side by side on real Flower servers.

The drop-in corpus (``tests/dropin/corpus``) holds client programs written for Flower
1.12. :func:`rewrite_imports` derives the flwr-sdk version of a program by renaming the
``flwr`` package in its import statements and changing nothing else. :func:`run_side`
runs one version against its own real flwr 1.12.0 server with two client nodes
(partition ids 0 and 1) and returns what the server recorded; the test runs the flwr
side and the flwr_sdk side of every case at the same time and compares the two.

Servers, all from the isolated flwr 1.12.0 venv:

* ``grpc-bidi``: the legacy ``start_server`` (``tests/support/legacy_server.py``);
* ``grpc-rere`` / ``rest``: a SuperLink with the recording FedAvg ServerApp, started
  by ``flower-server-app <app dir>`` (no FAB) for ``start_client`` programs, or by
  ``flwr run`` through SuperExec (a FAB) for a ClientApp program, whose nodes are
  ``flower-supernode`` (flwr side) and ``flwr-sdk client --app module:app`` (flwr_sdk
  side).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.federation import (
    Process,
    ServerStartError,
    free_port,
    read_report,
    sdk_env,
    start_legacy_server,
)
from support.flower_env import FlowerEnv
from support.superlink import SuperLink, start_superexec, start_superlink

SUPPORT = Path(__file__).resolve().parent
REPO = SUPPORT.parents[1]
DROPIN = REPO / "tests" / "dropin"
CORPUS = DROPIN / "corpus"
APP_PYPROJECT = DROPIN / "app" / "pyproject.toml"
FEDAVG_PACKAGE = SUPPORT / "apps" / "fedavg_app" / "fedavg_app"
# The ClientApp module of the app (tests/dropin/app/pyproject.toml names it).
TEMPLATE_MODULE = "template_client_app"

ROUNDS = 3  # legacy server rounds; the app's num-server-rounds is 3 as well
CLIENTS = 2
SIDES = ("flwr", "flwr_sdk")
LEGACY_TIMEOUT = 60.0
SUPERLINK_TIMEOUT = 100.0
# How long clients may take to exit once the server is done (legacy: on their own,
# after the server's Reconnect; SuperLink: after SIGTERM, which Flower 1.12 handles
# between two 3 s polls).
EXIT_TIMEOUT = 15.0
# A client that exits while the server still runs gets this long for the report to
# say done (a legacy client may exit on Reconnect a moment before the server writes).
EXIT_GRACE = 3.0

_IMPORT_LINE = re.compile(r"^(\s*)(from|import)(\s+)flwr(?=[\s.]|$)")


# ------------------------------------------------------------------ import rewrite


def rewrite_imports(source: str) -> str:
    """``flwr`` → ``flwr_sdk`` in the import statements of ``source``; nothing else.

    ``import flwr as fl`` → ``import flwr_sdk as fl``; ``from flwr.client import X`` →
    ``from flwr_sdk.client import X``. Only the first line of an import statement of
    ``flwr`` / ``flwr.*`` (found with :mod:`ast`, so text in strings stays) changes.
    """
    lines = source.splitlines(keepends=True)
    for number in flwr_import_lines(source):
        renamed = _IMPORT_LINE.sub(r"\1\2\3flwr_sdk", lines[number - 1], count=1)
        if renamed == lines[number - 1]:
            raise ValueError(f"line {number}: not of the form `import flwr…` / `from flwr…`")
        lines[number - 1] = renamed
    return "".join(lines)


def _top(module: str | None) -> str:
    return (module or "").split(".")[0]


def flwr_import_lines(source: str) -> dict[int, str]:
    """First line (1-based) of every import statement of ``flwr`` or ``flwr.*``: module."""
    found: dict[int, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "flwr":
                    found[node.lineno] = alias.name
        elif isinstance(node, ast.ImportFrom) and _top(node.module) == "flwr" and not node.level:
            found[node.lineno] = str(node.module)
    return found


def imported_modules(source: str) -> set[str]:
    """Every absolute module name ``source`` imports (``import a.b``, ``from a.b import``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


# ------------------------------------------------------------------------ outcomes


@dataclass
class Outcome:
    """What one side of a case left: the server's report, or why there is none."""

    side: str
    report: dict[str, Any] | None = None
    error: str | None = None
    exit_codes: list[int | None] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path | None = None


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _describe_clients(clients: Sequence[Process]) -> str:
    parts = []
    for index, client in enumerate(clients):
        code = client.proc.poll()
        state = "running" if code is None else f"exit code {code}"
        parts.append(f"--- client {index} ({state}), log {client.log}:\n{_tail(client.output())}")
    return "\n".join(parts)


def _report_done(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = read_report(path)
    except ValueError:  # being rewritten
        return None
    return data if data.get("done") else None


def _await_report(
    report: Path, clients: Sequence[Process], servers: Sequence[Process], timeout: float
) -> dict[str, Any]:
    """Wait until ``report`` says done; fail early when a client or server exits first."""
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    while True:
        data = _report_done(report)
        if data is not None:
            return data
        gone = [c for c in (*clients, *servers) if c.proc.poll() is not None]
        now = time.monotonic()
        if gone:
            gone_since = gone_since if gone_since is not None else now
            if now - gone_since > EXIT_GRACE:
                first = gone[0]
                who = "a client" if first in clients else f"server {first.args[:2]}"
                detail = _describe_clients(clients)
                if first not in clients:
                    detail += f"\n--- server log {first.log}:\n{_tail(first.output(), 15)}"
                raise AssertionError(
                    f"{who} exited (code {first.proc.returncode}) before the server "
                    f"finished its {ROUNDS} rounds\n{detail}"
                )
        if now > deadline:
            raise AssertionError(
                f"the server did not finish its {ROUNDS} rounds in {timeout:.0f} s\n"
                f"{_describe_clients(clients)}"
                + "".join(f"\n--- server log {s.log}:\n{_tail(s.output(), 15)}" for s in servers)
            )
        time.sleep(0.2)


def _collect_exits(clients: Sequence[Process], *, terminate: bool) -> list[int | None]:
    if terminate:
        for client in clients:
            if client.proc.poll() is None:
                client.signal(signal.SIGTERM)
    deadline = time.monotonic() + EXIT_TIMEOUT
    codes: list[int | None] = []
    for client in clients:
        try:
            codes.append(client.proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    return codes


# ------------------------------------------------------------------------- clients


# A client launcher: (side's work folder, fleet address, transport, partition id) ->
# the argument list, environment and working folder of that node.
ClientSpec = tuple[list[str], dict[str, str], Path]
ClientLauncher = Callable[[Path, str, str, int], ClientSpec]


def _process(args: Sequence[str], log: Path, environ: dict[str, str], cwd: Path) -> Process:
    def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs["cwd"] = cwd  # Process passes the checkout; a program runs from its folder
        return subprocess.Popen(list(argv), env=environ, **kwargs)

    return Process(args, log, popen)


def flower_environ(env: FlowerEnv, work: Path) -> dict[str, str]:
    """Environment of a flwr 1.12 process: the venv's, no telemetry, its own FLWR_HOME."""
    return env.environ(
        {
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "FLWR_HOME": str(work / "flwr_home"),
        }
    )


def program_launcher(env: FlowerEnv | None, program: Path) -> ClientLauncher:
    """``python <program> --server-address A --partition-id I [--transport T]``.

    ``env`` is the Flower venv whose python runs it (flwr side), or None for this
    interpreter (flwr_sdk side).
    """

    def launch(work: Path, address: str, transport: str, partition: int) -> ClientSpec:
        python = str(env.python) if env is not None else sys.executable
        args = [python, str(program), "--server-address", address]
        args += ["--partition-id", str(partition)]
        if transport != "grpc-bidi":  # the programs' default, as in Flower
            args += ["--transport", transport]
        environ = flower_environ(env, work) if env is not None else sdk_env()
        return args, environ, program.parent

    return launch


def node_config(partition: int) -> str:
    return f"partition-id={partition} num-partitions={CLIENTS}"


def supernode_launcher(env: FlowerEnv) -> ClientLauncher:
    """``flower-supernode`` (1.12): loads the ClientApp from the run's FAB.

    Each node gets its own FLWR_HOME (it installs the FAB there) and a no-op ``pip`` first
    on PATH: Flower 1.12 runs ``pip install -e`` on the unpacked FAB, which would install
    the app into the shared cached venv.
    """

    def launch(work: Path, address: str, transport: str, partition: int) -> ClientSpec:
        home = work / f"node{partition}"
        fakebin = home / "fakebin"
        fakebin.mkdir(parents=True, exist_ok=True)
        pip = fakebin / "pip"
        pip.write_text("#!/bin/sh\necho 'pip skipped by flwr-sdk tests:' \"$@\"\nexit 0\n")
        pip.chmod(0o755)
        environ = flower_environ(env, work)
        environ["FLWR_HOME"] = str(home / "flwr_home")
        environ["PATH"] = f"{fakebin}:{environ['PATH']}"
        args = [str(env.bin_dir / "flower-supernode"), "--insecure", "--superlink", address]
        args += ["--rest"] if transport == "rest" else ["--grpc-rere"]
        args += ["--node-config", node_config(partition)]
        return args, environ, home

    return launch


def sdk_app_launcher(module_dir: Path, module: str) -> ClientLauncher:
    """``flwr-sdk client --app <module>:app`` run from the folder holding the module."""

    def launch(work: Path, address: str, transport: str, partition: int) -> ClientSpec:
        cli = Path(sys.executable).with_name("flwr-sdk")
        args = [str(cli), "client", "--app", f"{module}:app", "--server-address", address]
        args += ["--transport", transport, "--insecure"]
        args += ["--node-config", node_config(partition)]
        return args, sdk_env(), module_dir

    return launch


def _start_clients(
    work: Path, launcher: ClientLauncher, address: str, transport: str
) -> list[Process]:
    clients = []
    for partition in range(CLIENTS):
        args, environ, cwd = launcher(work, address, transport, partition)
        clients.append(_process(args, work / f"client{partition}.log", environ, cwd))
    return clients


# ------------------------------------------------------------------------- servers


def assemble_app(dest: Path, template: Path) -> Path:
    """The drop-in Flower App in ``dest``: pyproject, ``fedavg_app``, the ClientApp module."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(APP_PYPROJECT, dest / "pyproject.toml")
    package = dest / "fedavg_app"
    package.mkdir(exist_ok=True)
    for name in ("__init__.py", "server_app.py"):
        shutil.copy(FEDAVG_PACKAGE / name, package / name)
    shutil.copy(template, dest / f"{TEMPLATE_MODULE}.py")
    return dest


def _flwr_run(superlink: SuperLink, exec_address: str, app: Path, report: Path) -> None:
    """``flwr run <app> local`` against SuperExec at ``exec_address`` (a FAB run)."""
    with (app / "pyproject.toml").open("a") as handle:
        handle.write(
            "\n[tool.flwr.federations]\n"
            'default = "local"\n\n'
            "[tool.flwr.federations.local]\n"
            f'address = "{exec_address}"\n'
            "insecure = true\n"
        )
    done = superlink.env.run(
        ["flwr", "run", str(app), "local", "--run-config", f'report-path="{report}"'],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=superlink.workdir,
        env=flower_environ(superlink.env, superlink.workdir),
    )
    output = done.stdout + done.stderr
    if done.returncode != 0 or "Successfully started run" not in output:
        raise AssertionError(f"flwr run failed ({done.returncode}):\n{_tail(output)}")


def _legacy(env: FlowerEnv, work: Path, launcher: ClientLauncher) -> tuple[dict[str, Any], list]:
    server: Process | None = None
    report: Path | None = None
    failures = []
    for attempt in range(3):  # a port taken meanwhile: start again on a fresh one
        address = f"127.0.0.1:{free_port()}"
        try:
            server, report = start_legacy_server(
                env, work, address, rounds=ROUNDS, clients=CLIENTS, name=f"server{attempt}"
            )
            break
        except ServerStartError as exc:
            failures.append(str(exc))
    if server is None or report is None:
        raise AssertionError("legacy server did not start:\n" + "\n".join(failures))
    clients: list[Process] = []
    try:
        clients = _start_clients(work, launcher, address, "grpc-bidi")
        data = _await_report(report, clients, [server], LEGACY_TIMEOUT)
        codes = _collect_exits(clients, terminate=False)
        server.wait(timeout=EXIT_TIMEOUT)
        return data, codes
    finally:
        for proc in (*clients, server):
            proc.stop()


def _superlink(
    env: FlowerEnv, work: Path, launcher: ClientLauncher, transport: str, app: Path, *, fab: bool
) -> tuple[dict[str, Any], list]:
    superlink = start_superlink(env, work / "superlink", fleet_api_type=transport)
    started: list[Process] = [superlink.process]
    report = work / "report.json"
    try:
        servers: list[Process] = []
        if fab:
            superexec = start_superexec(superlink)
            started.append(superexec.process)
            fab_app = shutil.copytree(app, work / "dropin-app")
            _flwr_run(superlink, superexec.address, fab_app, report)
            servers.append(superexec.process)
        else:
            environ = flower_environ(env, work)
            environ["FEDAVG_REPORT"] = str(report)
            args = [str(env.bin_dir / "flower-server-app"), str(app)]
            args += ["--superlink", superlink.driver_address, "--insecure"]
            server_app = _process(args, work / "serverapp.log", environ, work)
            started.append(server_app)
            servers.append(server_app)
        clients = _start_clients(work, launcher, superlink.fleet_address, transport)
        started += clients
        data = _await_report(report, clients, [superlink.process, *servers], SUPERLINK_TIMEOUT)
        return data, _collect_exits(clients, terminate=True)
    finally:
        for proc in reversed(started):
            proc.stop()


def run_side(
    side: str,
    env: FlowerEnv,
    work: Path,
    launcher: ClientLauncher,
    transport: str,
    app: Path,
    *,
    fab: bool = False,
) -> Outcome:
    """One side of a case: its own server(s) and two nodes from ``launcher``; never raises."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcome = Outcome(side, workdir=work)
    try:
        if transport == "grpc-bidi":
            outcome.report, outcome.exit_codes = _legacy(env, work, launcher)
        else:
            outcome.report, outcome.exit_codes = _superlink(
                env, work, launcher, transport, app, fab=fab
            )
    except Exception as exc:  # reported by the test, with the logs
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.monotonic() - started
    return outcome


def run_parallel(jobs: dict[Any, Callable[[], Outcome]]) -> dict[Any, Outcome]:
    """Run every job in its own thread at once; their outcomes by key."""
    results: dict[Any, Outcome] = {}
    lock = threading.Lock()

    def work(key: Any, job: Callable[[], Outcome]) -> None:
        outcome = job()
        with lock:
            results[key] = outcome

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# ---------------------------------------------------------------------- comparison


def normalized(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between two equal runs (node ids, file paths)."""
    data = json.loads(json.dumps(report))
    for fit in data.get("fit", {}).values():
        fit.pop("by_node", None)  # keyed by the SuperLink's random node ids
    if "run_config" in data:
        data["run_config"].pop("report-path", None)
    return data


def differences(expected: Any, got: Any, path: str = "") -> list[str]:
    """Readable ``path: expected != got`` lines where two JSON values differ."""
    if isinstance(expected, dict) and isinstance(got, dict):
        lines = []
        for key in sorted(set(expected) | set(got), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in got:
                lines.append(f"{where}: missing on the flwr_sdk side ({expected[key]!r})")
            elif key not in expected:
                lines.append(f"{where}: only on the flwr_sdk side ({got[key]!r})")
            else:
                lines += differences(expected[key], got[key], where)
        return lines
    if expected != got:
        return [f"{path}: flwr {expected!r} != flwr_sdk {got!r}"]
    return []
