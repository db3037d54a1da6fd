"""Fixtures for the extension tests: the test schema generated into a temp package."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest
from ext_support import TEST_PROTOS, run_codegen


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
