"""tests/faults: the black-hole scenarios run in the background, their tests last.

The black-hole scenarios (tests/faults/test_chaos_black_hole.py) wait a minute or more
for keepalives and deadlines to notice a dead path. When any of their tests is selected,
:func:`black_hole_runs` starts them (support/chaos_black_hole.py), once per run:

* in a serial run (``-n 0``), as the session's first fault test sets up
  (:func:`black_hole_background`), and :func:`pytest_collection_modifyitems` moves their
  tests to the end of the run, so the waiting overlaps the rest of the suite;
* under pytest-xdist, as their own tests set up, on the one worker that runs them (their
  file is one group, started among the first: tests/support/parallel.py); the other
  workers go on meanwhile. Starting them from every worker's first fault test would run
  them once per worker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.chaos_black_hole import MODULE, BlackHoleRuns


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    late = [item for item in items if item.path.name == MODULE]
    if late and not hasattr(config, "workerinput"):  # xdist: support/parallel.py orders
        items[:] = [item for item in items if item.path.name != MODULE] + late


@pytest.fixture(scope="session")
def black_hole_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlackHoleRuns | None]:
    """The black-hole scenarios of the selected tests, started now (None: none selected)."""
    transports = sorted(
        {
            item.callspec.params["transport"]
            for item in request.session.items
            if item.path.name == MODULE and hasattr(item, "callspec")
        }
    )
    if not transports:
        yield None
        return
    runs = BlackHoleRuns(request.getfixturevalue("flwr_1_12"), tmp_path_factory, transports)
    try:
        yield runs
    finally:
        runs.join()


@pytest.fixture(scope="session", autouse=True)
def black_hole_background(request: pytest.FixtureRequest) -> None:
    """Serial runs: start :func:`black_hole_runs` at the first fault test (see above)."""
    if not hasattr(request.config, "workerinput"):  # not a pytest-xdist worker
        request.getfixturevalue("black_hole_runs")
