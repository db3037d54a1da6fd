"""Run ``buf lint`` and ``buf format --diff`` over every wire line.

buf cannot hold two modules with the same file paths in one workspace, and every Flower
line declares ``flwr/proto/*.proto``. The root ``buf.yaml`` names the primary line as its
module; for each line we pass that same configuration with the module path (and the
paths of its lint exceptions) pointed at the line's folder. The SDK's own extension protos
(``proto/flwr_sdk``) are checked the same way; the Flower-only lint exceptions name
``proto/flower/...`` paths, so they do not apply there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .generator import discover_lines
from .toolchain import find_tool

PRIMARY = "proto/flower/v1_12"
EXTENSIONS = "proto/flwr_sdk"


def run_buf(repo_root: Path) -> int:
    """Lint and format-check every line; print findings; return a process exit code."""
    config = (repo_root / "buf.yaml").read_text(encoding="utf-8")
    if PRIMARY not in config:
        print(f"buf.yaml does not name {PRIMARY} as its module", file=sys.stderr)
        return 2
    buf = find_tool("buf")  # PyPI package buf-bin, in the codegen extra
    failed = False
    modules = [line.source_label for line in discover_lines(repo_root)]
    if (repo_root / EXTENSIONS).is_dir():
        modules.append(EXTENSIONS)
    for module in modules:
        line_config = config.replace(PRIMARY, module)
        for command in (["lint"], ["format", "--diff", "--exit-code"]):
            done = subprocess.run(
                [buf, *command, "--config", line_config],
                cwd=repo_root,
                capture_output=True,
                text=True,
                check=False,
            )
            label = f"buf {' '.join(command)} [{module}]"
            if done.returncode != 0:
                failed = True
                print(f"{label}: FAILED\n{done.stdout}{done.stderr}", file=sys.stderr)
            else:
                print(f"{label}: ok")
    return 1 if failed else 0
