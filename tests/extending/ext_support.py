"""What the extension tests share: paths and running the checkout's code generator.

A module of its own (not the conftest) so tests can import it by a name no other test
directory uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEST_PROTOS = HERE / "proto"


def run_codegen(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python -m codegen ARGS`` with the checkout's codegen."""
    return subprocess.run(
        [sys.executable, "-m", "codegen", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
