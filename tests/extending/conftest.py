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


def flwr_typed_env(flwr_version: str) -> FlowerEnv:
    """flwr ``flwr_version`` plus the generated classes' runtime (our betterproto2), no
    flwr-sdk: the documented environment of a plain-Flower ServerApp."""
    return FlowerEnv.get(
        flwr_version,
        extra=(f"betterproto2=={version('betterproto2')}",),
        name=f"flwr-{flwr_version}-betterproto2",
    )


@pytest.fixture(scope="session")
def flwr_1_12_typed() -> FlowerEnv:
    """flwr 1.12.0 with betterproto2, no flwr-sdk (see :func:`flwr_typed_env`)."""
    return flwr_typed_env("1.12.0")


@pytest.fixture(scope="session", params=["1.12.0", "1.15.2"])
def flwr_typed(request: pytest.FixtureRequest) -> FlowerEnv:
    """flwr 1.12.0 and 1.15.2, each with betterproto2 and no flwr-sdk."""
    return flwr_typed_env(str(request.param))
