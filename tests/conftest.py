"""Session fixtures shared by the whole suite: isolated Flower venvs and their workers.

Keep this file small: fixtures that only one area needs belong in that area's tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # makes `support` importable under any import mode
    sys.path.insert(0, str(TESTS_DIR))

from support.flower_env import FlowerEnv, FlowerWorker  # noqa: E402
from support.parallel import (  # noqa: E402, F401 - pytest-xdist hooks, see its docstring
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_configure_node,
    pytest_runtest_protocol,
    pytest_unconfigure,
    pytest_xdist_make_scheduler,
)


def _worker(env: FlowerEnv, version: str) -> Iterator[FlowerWorker]:
    worker = FlowerWorker(env)
    try:
        info = worker.ping()
        assert info["flwr"] == version, info
        assert Path(info["flwr_file"]).is_relative_to(env.path), info
        yield worker
    finally:
        worker.close()


@pytest.fixture(scope="session")
def flwr_1_12() -> FlowerEnv:
    """Virtualenv with the real flwr 1.12.0 (built on first use, then cached)."""
    return FlowerEnv.get("1.12.0")


@pytest.fixture(scope="session")
def flwr_1_15() -> FlowerEnv:
    """Virtualenv with the real flwr 1.15.2 (built on first use, then cached)."""
    return FlowerEnv.get("1.15.2")


@pytest.fixture(scope="session")
def flwr_1_42() -> FlowerEnv:
    """Virtualenv with the real flwr 1.42.0 (built on first use, then cached)."""
    return FlowerEnv.get("1.42.0")


@pytest.fixture(scope="session")
def flwr_1_12_worker(flwr_1_12: FlowerEnv) -> Iterator[FlowerWorker]:
    """A `flwr_worker.py` process in the flwr 1.12.0 venv, shared by the session."""
    yield from _worker(flwr_1_12, "1.12.0")


@pytest.fixture(scope="session")
def flwr_1_15_worker(flwr_1_15: FlowerEnv) -> Iterator[FlowerWorker]:
    """A `flwr_worker.py` process in the flwr 1.15.2 venv, shared by the session."""
    yield from _worker(flwr_1_15, "1.15.2")
