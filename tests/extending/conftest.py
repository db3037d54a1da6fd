"""Fixtures for the extension tests: the test schema generated into a temp package."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


@pytest.fixture(scope="session")
def exttest_pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """``exttest_proto.exttest.v1``, generated from tests/extending/proto for this session."""
    root = tmp_path_factory.mktemp("exttest")
    done = run_codegen("--proto-path", str(TEST_PROTOS), "--out", str(root / "exttest_proto"))
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("exttest_proto.exttest.v1")
    finally:
        sys.path.remove(str(root))
