"""README, "Your own clients against it": the server and two clients, run as written.

The three ``bash`` blocks of that section are run with bash, each as its own process (the
README says: three terminals), in a folder that looks like the repository root to them:
``.venv`` is this interpreter's virtualenv and ``examples`` this checkout's examples
(symlinks), so ``results.json`` lands in the test's folder, not in the checkout.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.federation import REPO, Process, processes, sdk_env, wait_for_port

README = REPO / "README.md"
SECTION = "### Your own clients against it"
FENCE = re.compile(r"^```bash\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
PORT = 8080  # the reference server's grpc-bidi default, which the README relies on


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n#", start + len(SECTION))
    return [match.group("body").strip() for match in FENCE.finditer(text[start:end])]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_section_is_a_server_and_two_clients() -> None:
    blocks = section_blocks()
    assert len(blocks) == 3, blocks
    assert blocks[0].startswith(".venv/bin/flwr-sdk server ")
    assert all(block.startswith(".venv/bin/flwr-sdk client ") for block in blocks[1:])


def test_server_and_clients_run_as_written(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    if not (venv / "pyvenv.cfg").is_file():
        pytest.skip("the README's commands use .venv/bin: run the tests from a virtualenv")
    assert port_is_free(PORT), f"port {PORT} (used by the README) is busy"
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    server_cmd, *client_cmds = section_blocks()

    def shell(body: str, name: str) -> Process:
        return Process(
            ["bash", "-e", "-c", body],
            tmp_path / f"{name}.log",
            lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **{**kw, "cwd": tmp_path}),
        )

    with processes() as procs:
        server = shell(server_cmd, "server")
        procs.append(server)
        wait_for_port("127.0.0.1", PORT, process=server)
        clients = [shell(body, f"client{i}") for i, body in enumerate(client_cmds)]
        procs.extend(clients)
        assert server.wait(90) == 0, server.output()
        for client in clients:
            assert client.wait(30) == 0, client.output()
            output = client.output()
            # one line per instruction and reply (grpc-bidi carries no round number)
            assert output.count("train          replied   ") == 3, output
            assert output.count("evaluate       replied   ") == 3, output
            assert re.search(r"stopped: \d+ instructions handled \(.*\), none failed", output)
        for rnd in (1, 2, 3):
            assert f"round {rnd}: fit 2 ok / 0 failed, evaluate 2 ok / 0 failed" in server.output()
    report = json.loads((tmp_path / "results.json").read_text())
    assert sorted(report["rounds"]) == ["1", "2", "3"]
