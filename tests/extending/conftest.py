"""Fixtures for the extension tests: the test schema generated into a temp package."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import version
from types import ModuleType

import pytest
from ext_support import TEST_PROTOS, run_codegen
from support.flower_env import FlowerEnv


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


@pytest.fixture(scope="session")
def flwr_1_12_typed() -> FlowerEnv:
    """flwr 1.12.0 plus the generated classes' runtime (our betterproto2), no flwr-sdk."""
    return FlowerEnv.get(
        "1.12.0",
        extra=(f"betterproto2=={version('betterproto2')}",),
        name="flwr-1.12.0-betterproto2",
    )
