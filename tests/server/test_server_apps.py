"""docs/server-apps.md, run as written: a typed server app on the reference server.

The doc's ``file=`` blocks are written to an empty folder and its ``codegen`` command is
run once (module scope); then, per transport (grpc-rere, REST), ``flwr-sdk server --app
calc_app:main`` starts with three of the documented nodes, as the doc's last ``shell``
block does (on a free port instead of 9092). The app exchanges calc.v1.ScaleRequest /
ScaleReply with every node and provokes each failure; the test reads the app's result
(``--report``) and asserts the type each failure reached the app as. The documented app
and node pass ``mypy --strict`` (as the doc says).

Fast ones: a synchronous app is refused; error replies map to their types; a legacy
status and a reply of the wrong type reach the app typed (the test plays the nodes on
the real Fleet state, no network).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.federation import free_port, sdk_env

from flwr_sdk.cli_inputs import load_server_app
from flwr_sdk.common.legacy_records import FIT_KIND
from flwr_sdk.common.legacy_types import Code, EvaluateIns, FitIns, FitRes, Parameters, Status
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import RecordSet
from flwr_sdk.errors import (
    InvalidReplyError,
    LegacyStatusError,
    MalformedRequestError,
    NodeAppError,
    NodeReplyError,
    UnhandledMessageTypeError,
)
from flwr_sdk.server.app_api import AppDriver, reply_error
from flwr_sdk.server.fleet_state import FleetNodePool, FleetState

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "server-apps.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
EXAMPLE_PORT = "9092"
RUN_TIMEOUT = 60.0


def _example_blocks() -> list[tuple[str, str | None, str]]:
    """(language, file or None, body) of every fenced block of the Example section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Example")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = []
    for match in FENCE.finditer(section):
        words = match.group("info").split()
        target = next((w.removeprefix("file=") for w in words[1:] if w.startswith("file=")), None)
        blocks.append((words[0] if words else "", target, match.group("body")))
    return blocks


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """The example's folder (files written, codegen run) and its run commands."""
    root = tmp_path_factory.mktemp("server_apps")
    shells = []
    for language, target, body in _example_blocks():
        if target is not None:
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        elif language == "shell":
            shells.append(body)
    codegen, run = shells
    assert codegen.startswith("flwr-sdk codegen "), codegen
    done = subprocess.run(
        [_bin("flwr-sdk"), *shlex.split(codegen)[1:]],
        cwd=root,
        env=sdk_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield root, [line.rstrip(" &") for line in run.strip().splitlines()]


def _command(line: str, transport: str, port: int) -> list[str]:
    """A documented command line, on ``transport`` and ``port``, with this interpreter."""
    address = f"127.0.0.1:{port}" if transport == "grpc-rere" else f"http://127.0.0.1:{port}"
    args = [
        str(port) if a == EXAMPLE_PORT else address if a == f"127.0.0.1:{EXAMPLE_PORT}" else a
        for a in shlex.split(line)
    ]
    args = [transport if a == "grpc-rere" else a for a in args]
    program = {"flwr-sdk": [_bin("flwr-sdk")], "python": [sys.executable]}[args[0]]
    return [*program, *args[1:]]


@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_the_documented_app_runs_with_three_nodes(
    project: tuple[Path, list[str]], transport: str
) -> None:
    root, lines = project
    server_line, *node_lines = lines
    assert server_line.startswith("flwr-sdk server --app calc_app:main"), server_line
    assert len(node_lines) == 3
    port = free_port()
    report = root / f"report-{transport}.json"
    env = {**sdk_env(), "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    procs: list[subprocess.Popen[str]] = []
    started = time.monotonic()
    try:
        server_cmd = [*_command(server_line, transport, port), "--report", str(report)]
        server = subprocess.Popen(
            server_cmd,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        procs.append(server)
        for line in node_lines:
            procs.append(
                subprocess.Popen(
                    _command(line, transport, port),
                    cwd=root,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        output, _ = server.communicate(timeout=RUN_TIMEOUT)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert server.returncode == 0, output
    assert output.count(": OK") == 3, output
    result = json.loads(report.read_text())
    assert result["nodes"] == 3
    errors = result["errors"]
    assert errors["unknown_type"] == "UnhandledMessageTypeError", output
    assert errors["malformed"] == "MalformedRequestError", output
    assert errors["handler_raised"] == "NodeAppError", output
    assert errors["node_gone"] == "NodeUnavailableError", output
    assert errors["timeout"] == "ReplyTimeoutError", output
    assert time.monotonic() - started < RUN_TIMEOUT


def test_a_synchronous_app_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sync_app.py").write_text("def main(driver, context):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="must be an async function"):
        load_server_app("sync_app:main")


@pytest.mark.parametrize(
    ("code", "reason", "expected", "error_type"),
    [
        # Flower's own clients word an unknown type this way (a ValueError).
        (
            2,
            "<class 'ValueError'>:<'Invalid message type: calc.v1.X'>",
            UnhandledMessageTypeError,
            "ValueError",
        ),
        (
            2,
            "<class 'flwr_sdk.ext.convention.RecordSetDecodeError'>:<'cannot read'>",
            MalformedRequestError,
            "flwr_sdk.ext.convention.RecordSetDecodeError",
        ),
        (2, "<class 'KeyError'>:<'x'>", NodeAppError, "KeyError"),
        (1, "Error while loading ClientApp", NodeReplyError, ""),
    ],
)
def test_error_replies_map_to_their_types(
    code: int, reason: str, expected: type[NodeReplyError], error_type: str
) -> None:
    error = reply_error(7, code, reason)
    assert type(error) is expected
    assert (error.node_id, error.code, error.reason, error.error_type) == (
        7,
        code,
        reason,
        error_type,
    )


async def _play_node(state: FleetState, node_id: int, answer: Callable[[Message], Message]) -> None:
    """Be node ``node_id`` on the real Fleet state: answer each instruction it pulls."""
    while True:
        entry = state.pull_instruction(node_id)
        if entry is None:
            await asyncio.sleep(0.01)
            continue
        assert state.push_reply(answer(entry.message)) is not None


def _fit_res(code: Code) -> FitRes:
    empty = Parameters(tensors=[], tensor_type="numpy.ndarray")
    return FitRes(status=Status(code, "no"), parameters=empty, num_examples=1, metrics={})


def test_legacy_status_and_wrong_reply_type_reach_the_app_as_typed_errors() -> None:
    async def scenario() -> None:
        state = FleetState()
        run_id = state.create_run()
        ok_node, refusing_node = state.create_node(60.0), state.create_node(60.0)
        driver = AppDriver(FleetNodePool(state, 0), run_id=run_id, timeout=5.0)
        answers = {
            ok_node: lambda m: m.create_reply(FIT_KIND.res_to_recordset(_fit_res(Code.OK), False)),
            refusing_node: lambda m: m.create_reply(
                FIT_KIND.res_to_recordset(_fit_res(Code.FIT_NOT_IMPLEMENTED), False)
            ),
        }
        nodes = [asyncio.create_task(_play_node(state, n, a)) for n, a in answers.items()]
        try:
            ins = FitIns(parameters=Parameters(tensors=[], tensor_type=""), config={})
            ok, refused = await driver.fit_many({ok_node: ins, refusing_node: ins})
            assert ok.ok and ok.value().num_examples == 1
            assert isinstance(refused.error, LegacyStatusError)
            assert (refused.node_id, refused.error.code) == (refusing_node, 3)
            # a FitRes where an EvaluateRes was asked for
            with pytest.raises(InvalidReplyError) as caught:
                await driver.evaluate(ok_node, EvaluateIns(parameters=ins.parameters, config={}))
            assert caught.value.node_id == ok_node
        finally:
            for task in nodes:
                task.cancel()

    asyncio.run(scenario())


def test_a_type_the_transport_cannot_carry_is_refused_before_sending() -> None:
    async def scenario() -> None:
        driver = AppDriver(FleetNodePool(FleetState(), 0), run_id=1, message_types={"train"})
        with pytest.raises(ValueError, match=r"cannot carry message type 'calc\.v1\.X'"):
            await driver.send(1, "calc.v1.X", RecordSet())

    asyncio.run(scenario())


def test_the_documented_app_and_node_pass_mypy_strict(project: tuple[Path, list[str]]) -> None:
    root, _ = project
    # mypy does not follow the checkout's import-hook editable install: a user-level
    # config (outside the example folder) points it at the sources, checked silently.
    config = root.parent / "xdg-config" / "mypy" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"[mypy]\nmypy_path = {REPO}:{REPO / 'generated'}\n"
        + "".join(
            f"[mypy-{name}]\nfollow_imports = silent\n"
            for name in ("flwr_sdk", "flwr_sdk.*", "flwr_sdk_proto.*")
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "calc_app.py", "calc_client.py"],
        cwd=root,
        env={**sdk_env(), "XDG_CONFIG_HOME": str(config.parent.parent)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
