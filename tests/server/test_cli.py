"""The ``flwr-sdk`` command line: help texts, app loading, client and server commands."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.federation import (
    REPO,
    Process,
    assert_fedavg_rounds,
    free_port,
    processes,
    read_report,
    sdk_env,
    start_legacy_server,
    wait_for_port,
)
from support.flower_env import FlowerEnv

from flwr_sdk.cli import load_app, main

STEP = 5.0 / 3.0


@pytest.mark.parametrize("command", ["demo", "server", "client"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    expected = {
        "demo": ["--transport", "--wire", "--tls", "--auth", "--plot", "--clients", "--rounds"],
        "server": [
            "--transport",
            "--wire",
            "--app",
            "--run-config",
            "--rounds",
            "--min-clients",
            "--fit-config",
            "--ssl-certfile",
        ],
        "client": [
            "--app",
            "--server-address",
            "--root-certificates",
            "--insecure",
            "--auth-key-private",
            "--max-retries",
            "--grpc-max-message-length",
        ],
    }[command]
    for flag in expected:
        assert flag in text, (flag, text)


def test_codegen_is_forwarded() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flwr_sdk.cli", "codegen", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=sdk_env(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--check" in done.stdout


def test_load_app() -> None:
    from flwr_sdk import NumPyClient

    kind, app = load_app("examples.cli_client:client_fn")
    assert kind == "client_fn" and callable(app)
    kind, app = load_app("examples.cli_client:client")
    assert kind == "client" and isinstance(app, NumPyClient)
    with pytest.raises(ValueError, match="is a class"):
        load_app("examples.numpy_client:ShiftClient")
    with pytest.raises(ValueError, match="module:attr"):
        load_app("examples.cli_client")
    with pytest.raises(ValueError, match="no attribute"):
        load_app("examples.cli_client:nothing_here")


def test_bad_client_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["client", "--app", "examples.cli_client", "--server-address", "127.0.0.1:1"])
    assert exit_info.value.code == 2
    assert "module:attr" in capsys.readouterr().err


def _cli_client(
    tmp: Path, address: str, index: int, *extra: str, app: str = "client_fn"
) -> Process:
    args = [sys.executable, "-m", "flwr_sdk.cli", "client", "--app", f"examples.cli_client:{app}"]
    args += ["--server-address", address, *extra]
    env = {**sdk_env(), "FLWR_SDK_EXAMPLE_INDEX": str(index)}
    return Process(
        args,
        tmp / f"cli-client{index}-{time.monotonic_ns()}.log",
        lambda a, **kw: subprocess.Popen(a, env=env, **kw),
    )


def _cli_server(tmp: Path, port: int, *extra: str) -> tuple[Process, Path]:
    report = tmp / f"server-report-{port}.json"
    args = [sys.executable, "-m", "flwr_sdk.cli", "server", "--port", str(port), "--rounds", "3"]
    args += ["--fit-config", "lr=0.5", "--report", str(report), *extra]
    proc = Process(
        args, tmp / f"server-{port}.log", lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw)
    )
    return proc, report


def _assert_report(report: dict, rounds: int = 3) -> None:
    for rnd in range(1, rounds + 1):
        r = report["rounds"][str(rnd)]
        assert r["fit_results"] == 2 and r["fit_failures"] == 0, r
        assert r["fit_metrics"]["seen_round"] == rnd, r
        assert abs(r["parameters"][0][0] - rnd * STEP) < 1e-5, r
        assert r["evaluate_results"] == 2 and r["evaluate_loss"] == 1.5, r


def test_cli_client_against_cli_server_grpc_bidi(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        server, report = _cli_server(tmp_path, port)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        procs.append(_cli_client(tmp_path, f"127.0.0.1:{port}", 0))
        procs.append(_cli_client(tmp_path, f"127.0.0.1:{port}", 1))
        assert server.wait(60) == 0, server.output()
        for proc in procs[1:]:
            assert proc.wait(30) == 0, proc.output()
    _assert_report(read_report(report))


def test_cli_client_instance_against_cli_server_grpc_rere(tmp_path: Path) -> None:
    port = free_port()
    with processes() as procs:
        server, report = _cli_server(tmp_path, port, "--transport", "grpc-rere")
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        rere = ("--transport", "grpc-rere")
        procs.append(_cli_client(tmp_path, f"127.0.0.1:{port}", 1, *rere))
        procs.append(_cli_client(tmp_path, f"127.0.0.1:{port}", 0, *rere, app="client"))
        assert server.wait(90) == 0, server.output()
        for proc in procs[1:]:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.output()
    _assert_report(read_report(report))


@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_cli_client_against_cli_server_wire_1_15(tmp_path: Path, transport: str) -> None:
    """``flwr-sdk server --wire 1.15``; the clients (no --wire) detect the line."""
    port = free_port()
    with processes() as procs:
        server, report = _cli_server(tmp_path, port, "--transport", transport, "--wire", "1.15")
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        scheme = "http://" if transport == "rest" else ""
        for i in range(2):
            procs.append(
                _cli_client(tmp_path, f"{scheme}127.0.0.1:{port}", i, "--transport", transport)
            )
        assert server.wait(90) == 0, server.output()
        assert "Flower 1.15 Fleet API" in server.output()
        for proc in procs[1:]:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.output()
            assert "SuperLink speaks the Flower 1.15 Fleet API" in proc.output()
    _assert_report(read_report(report))


def test_cli_client_against_flwr_1_12_legacy_server(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    with processes() as procs:
        server, report = start_legacy_server(flwr_1_12, tmp_path, address, rounds=3)
        procs.append(server)
        wait_for_port("127.0.0.1", port)
        procs.extend(_cli_client(tmp_path, address, i) for i in range(2))
        assert server.wait(180) == 0, server.output()
        for proc in procs[1:]:
            assert proc.wait(30) == 0, proc.output()
    assert_fedavg_rounds(read_report(report), 3)


def test_cli_client_against_flwr_1_12_superlink(flwr_1_12: FlowerEnv, tmp_path: Path) -> None:
    from support.superlink import start_server_app, start_superlink, wait_for_report

    superlink = start_superlink(flwr_1_12, tmp_path / "link")
    report_path = tmp_path / "serverapp-report.json"
    try:
        with processes() as procs:
            server_app = start_server_app(superlink, report_path)
            procs.append(server_app)
            rere = ("--transport", "grpc-rere")
            clients = [_cli_client(tmp_path, superlink.fleet_address, i, *rere) for i in range(2)]
            procs.extend(clients)
            report = wait_for_report(report_path, timeout=150, proc=server_app)
            assert server_app.wait(60) == 0, server_app.output()
            for client in clients:
                client.signal(signal.SIGTERM)
                assert client.wait(30) == 0, client.output()
    finally:
        superlink.process.stop()
    for rnd in range(1, 4):
        fit = report["fit"][str(rnd)]
        assert fit["results"] == 2 and fit["failures"] == 0, (rnd, fit)
        ev = report["evaluate"][str(rnd)]
        assert ev["results"] == 2 and ev["failures"] == 0, (rnd, ev)
    assert json.dumps(report)  # the ServerApp's report is plain JSON


# ------------------------------------------------------------- the command, as run

HERE = Path(__file__).resolve().parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
# Runs `python -m flwr_sdk ARGS` with the comma-separated modules of argv[1] made
# unimportable, as they are when an extra is not installed.
WITHOUT_MODULES = (
    "import runpy, sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['flwr-sdk', *sys.argv[2:]]\n"
    "runpy.run_module('flwr_sdk', run_name='__main__', alter_sys=True)\n"
)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m flwr_sdk ARGS`` in the checkout, with cli_apps importable."""
    env = {**sdk_env(), "PYTHONPATH": str(HERE), "COLUMNS": "200"}  # help lines unwrapped
    return subprocess.run(
        [sys.executable, "-m", "flwr_sdk", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
        timeout=timeout,
    )


def _error_lines(stderr: str) -> list[str]:
    """stderr without log records: what the command itself printed."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def test_version() -> None:
    from importlib.metadata import version

    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"flwr-sdk {version('flwr-sdk')} (Flower wire lines 1.12, 1.15")


def test_python_dash_m_is_the_command() -> None:
    done = _run()
    assert done.returncode == 2
    assert done.stderr.startswith("usage: flwr-sdk ")


def test_help_shows_defaults() -> None:
    client = _run("client", "--help").stdout
    assert "(default: 536870912)" in client  # --grpc-max-message-length
    assert "(default: detect it)" in client  # --wire, said in words
    server = _run("server", "--help").stdout
    for default in ("(default: grpc-bidi)", "(default: 3)", "(default: 2)", "(default: 1.12)"):
        assert default in server, (default, server)
    assert "(default: None)" not in client + server
    assert "(default: False)" not in client + server
    demo = _run("demo", "--help").stdout
    assert "(default: 5)" in demo


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_before_or_after_the_command(where: str) -> None:
    def server(flag: str) -> subprocess.CompletedProcess[str]:
        args = ["server", "--rounds", "1", "--min-clients", "1", "--wait-timeout", "0.2"]
        args += ["--port", str(free_port())]
        return _run(*([flag, *args] if where == "before" else [*args, flag]))

    quiet = server("-q")
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == [
        "flwr-sdk server: TimeoutError: only 0 of 1 nodes connected"
    ]
    verbose = server("-v")
    assert verbose.returncode == 1
    assert "INFO flwr_sdk.server: waiting for 1 nodes" in verbose.stderr
    assert "DEBUG" not in verbose.stderr
    assert "DEBUG asyncio" not in server("-vv").stderr  # -vv: flwr-sdk's DEBUG records only
    assert "DEBUG asyncio" in server("-vvv").stderr


@pytest.mark.parametrize(
    ("missing", "args", "extra"),
    [
        ("aiohttp", ["server", "--transport", "rest"], "server"),
        ("jinja2", ["codegen", "--help"], "codegen"),
        ("grpc_tools", ["-v", "codegen"], "codegen"),
        ("matplotlib", ["demo", "--plot", "curves.png"], "plot"),
    ],
)
def test_a_missing_extra_is_a_one_line_hint(missing: str, args: list[str], extra: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULES, missing, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=sdk_env(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert f"needs the '{extra}' extra (module '{missing}' is not installed)" in lines[0]
    assert lines[0].endswith(f"pip install 'flwr-sdk[{extra}]'"), lines[0]


@pytest.mark.parametrize("transport", ["grpc-bidi", "grpc-rere", "rest"])
def test_unreachable_server_is_one_line(transport: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    if transport == "rest":
        address = f"http://{address}"
    done = _run(
        "client",
        "--app",
        "examples.cli_client:client_fn",
        "--server-address",
        address,
        "--transport",
        transport,
        "--max-retries",
        "1",
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("flwr-sdk client: RetriesExhaustedError: "), lines[0]


@pytest.mark.parametrize(
    ("app", "code", "message"),
    [
        ("no_such_module_here:client_fn", 2, "no module named 'no_such_module_here'"),
        ("examples.cli_client:nothing_here", 2, "has no attribute 'nothing_here'"),
        ("examples.numpy_client:ShiftClient", 2, "is a class"),
        ("cli_apps:MODEL_BYTES", 2, "is a int, not a ClientApp"),
    ],
)
def test_bad_app_is_one_line(app: str, code: int, message: str) -> None:
    done = _run("client", "--app", app, "--server-address", "127.0.0.1:1")
    assert done.returncode == code, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_bad_key_files_are_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    base = ["client", "--app", "examples.cli_client:client_fn", "--server-address", "127.0.0.1:1"]
    for private, public, code, message in [
        (garbage, garbage, 2, f"--auth-key-private {garbage}: not an unencrypted private key"),
        (tmp_path / "missing", garbage, 2, "No such file or directory"),
        (tmp_path, garbage, 1, "IsADirectoryError"),
    ]:
        done = _run(*base, "--auth-key-private", str(private), "--auth-key-public", str(public))
        assert done.returncode == code, done.stderr
        lines = _error_lines(done.stderr)
        assert len(lines) == 1 and message in lines[0], done.stderr


def test_load_app_takes_a_client_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr_sdk.client import ClientApp

    monkeypatch.syspath_prepend(str(HERE))
    kind, app = load_app("cli_apps:app")
    assert kind == "app" and isinstance(app, ClientApp)


def test_the_install_puts_no_top_level_examples_package(tmp_path: Path) -> None:
    """Only flwr_sdk and flwr_sdk_proto are installed, even by an editable install."""
    probe = (
        "import importlib.util, json\n"
        "names = ['flwr_sdk', 'flwr_sdk_proto', 'examples', 'codegen', 'bench', 'tests']\n"
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: only what the install provides
        env={k: v for k, v in sdk_env().items() if k != "PYTHONPATH"},
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {
        "flwr_sdk": True,
        "flwr_sdk_proto": True,
        "examples": False,
        "codegen": False,
        "bench": False,
        "tests": False,
    }
