"""docs/extending.md, "Steps": run exactly as written, in an empty folder.

Every fenced block of that section whose info string has ``file=PATH`` is written to
PATH; every ``shell`` block is run with bash, in order. ``python`` is flwr-sdk's
interpreter; ``flower-*`` come from an isolated flwr 1.12.0 virtualenv holding the
generated classes' runtime (betterproto2) and no flwr-sdk, as the documented server
environment. ``flwr-sdk codegen`` runs this checkout's codegen.

The last block starts a real SuperLink, the documented flwr-sdk node and the documented
typed plain-flwr ServerApp, which converts with the generated ``flwr_records`` module,
asserts every reply field and exits 0. ``mypy --strict`` then checks the handler against
flwr-sdk and the ServerApp against the Flower venv.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from support.flower_env import FlowerEnv

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
DOC_PORTS = (9091, 9092)


def steps_section(text: str) -> str:
    start = text.index("## Steps")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def parse_blocks(section: str) -> list[tuple[str, str | None, str]]:
    """(language, file or None, body) of every fenced block, in order."""
    blocks = []
    for match in FENCE.finditer(section):
        words = match.group("info").split()
        language = words[0] if words else ""
        target = None
        for word in words[1:]:
            if word.startswith("file="):
                target = word.removeprefix("file=")
        blocks.append((language, target, match.group("body")))
    return blocks


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_blocks_of_the_steps_are_all_executable():
    blocks = parse_blocks(steps_section(DOC.read_text(encoding="utf-8")))
    kinds = [(language, target is not None) for language, target, _ in blocks]
    assert all(target or language == "shell" for language, target in kinds), kinds
    assert [t for _, t, _ in blocks if t] == [
        "proto/calc/v1/calc.proto",
        "pyproject.toml",
        "calc_client.py",
        "calc_server/pyproject.toml",
        "calc_server/server_app.py",
    ]
    assert sum(language == "shell" for language, _ in kinds) == 4
    # The documented server environment pins the betterproto2 the generated code needs.
    assert f"'betterproto2=={version('betterproto2')}'" in DOC.read_text(encoding="utf-8")


@pytest.mark.interop
def test_steps_run_as_written(tmp_path: Path, flwr_1_12_typed: FlowerEnv):
    flwr_1_12 = flwr_1_12_typed
    for port in DOC_PORTS:
        assert port_is_free(port), f"port {port} (used by docs/extending.md) is busy"
    project = tmp_path / "project"
    project.mkdir()
    # `flwr-sdk codegen` imports `flwr_sdk_codegen` first (the installed copy); point it
    # at this checkout's codegen, as a fresh install of the checkout would.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "flwr_sdk_codegen").symlink_to(REPO / "codegen", target_is_directory=True)
    sdk_bin = Path(sys.executable).parent
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    environ.update(
        PATH=os.pathsep.join([str(sdk_bin), str(flwr_1_12.bin_dir), environ.get("PATH", "")]),
        PYTHONPATH=str(shim),
        FLWR_HOME=str(tmp_path / "flwr_home"),
        FLWR_TELEMETRY_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )

    blocks = parse_blocks(steps_section(DOC.read_text(encoding="utf-8")))
    sessions: list[subprocess.Popen[str]] = []
    try:
        for index, (_language, target, body) in enumerate(blocks):
            if target is not None:
                path = project / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body, encoding="utf-8")
                continue
            log = tmp_path / f"shell-{index}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    ["bash", "-e", "-c", body],
                    cwd=project,
                    env=environ,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    text=True,
                )
                sessions.append(proc)
                try:
                    code = proc.wait(timeout=240)
                except subprocess.TimeoutExpired:
                    code = None
            output = log.read_text()
            assert code == 0, f"shell block {index} failed ({code}):\n{body}\n--- output:\n{output}"
            if "flower-server-app" in body:
                assert output.count(": OK") == 1, output
            if "--out calc_proto" in body:
                assert (project / "calc_proto" / "adapters.py").is_file(), output
            if "--out calc_server/calc_proto" in body:
                assert (project / "calc_server" / "calc_proto" / "flwr_records.py").is_file()
            if "codegen --check" in body:
                assert "is up to date" in output, output
    finally:
        for proc in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in sessions:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    # Type checkers see the real types: the documented handler passes mypy --strict.
    # The checkout's editable install is an import hook, which mypy does not follow (an
    # installed wheel is found as usual). A user-level mypy config (outside the project,
    # so the documented command stays as written) points it at the two packages' sources
    # and, as for an installed package, checks them silently.
    config_home = project.parent / "xdg-config"
    (config_home / "mypy").mkdir(parents=True, exist_ok=True)
    (config_home / "mypy" / "config").write_text(
        "[mypy]\n"
        f"mypy_path = {REPO}:{REPO / 'generated'}\n"
        "[mypy-flwr_sdk.*]\nfollow_imports = silent\n"
        "[mypy-flwr_sdk]\nfollow_imports = silent\n"
        "[mypy-flwr_sdk_proto.*]\nfollow_imports = silent\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "calc_client.py"],
        cwd=project,
        env={**environ, "XDG_CONFIG_HOME": str(config_home)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # The ServerApp's side: flwr-sdk is not importable there (the generated package is
    # all it has of us), and the typed ServerApp passes mypy --strict against that venv.
    server_dir = project / "calc_server"
    probe = subprocess.run(
        [str(flwr_1_12.python), "-c", "import importlib.util as u; import calc_proto.flwr_records; "
         "print(u.find_spec('flwr_sdk'), u.find_spec('flwr_sdk_proto'))"],
        cwd=server_dir, env=environ, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert probe.stdout.strip() == "None None", probe.stdout + probe.stderr
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable",
         str(flwr_1_12.python), "server_app.py"],
        cwd=server_dir,
        env={**environ, "XDG_CONFIG_HOME": str(project.parent / "no-config")},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
