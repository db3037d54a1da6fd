"""The suite on pytest-xdist workers: one group per test file, exclusive tests alone.

``scripts/test`` runs ``pytest -n 4 --dist loadgroup``. The hooks here (tests/conftest.py
imports them) make that hold for every test file, new ones included, without the file
naming xdist:

* Groups. Each test file is one group: its tests run in order on one worker, so module-
  and class-scoped fixtures (a shared Flower server) start once. A test with an
  ``xdist_group`` mark is in that group (which may span files); all ``exclusive`` tests
  are one group. :class:`GroupScheduling` does the grouping: xdist 3.8's own
  ``loadgroup`` renames test ids to carry the group, which pytest 9.2 ignores, so it
  would put every test in a group of its own. The workers write each test's group to a
  file in a folder the controller gives them; the scheduler reads it.
* Order. Groups start in this order (:func:`_rank`): the few known to take longest
  (:data:`LONGEST`), the others outside the in-memory folders of scripts/test-fast
  (real servers in subprocesses: long waits; new files land here), the in-memory ones,
  the exclusive group; collection order within each.
* Exclusive tests. A test marked ``exclusive`` (it measures a wall time, a deadline or an
  exit time that CPU contention would stretch) runs while no other worker runs a test.
  Every worker holds a lock file around each test: shared for an ordinary test,
  exclusive for an exclusive one (kept through consecutive exclusive tests). A second
  lock, the gate, is held by an exclusive test from before it waits until it ends, and
  taken briefly by every ordinary test before its shared lock, so an exclusive test
  never waits behind a stream of ordinary ones.

In a serial run (``-n 0``, or xdist not installed) nothing here changes anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import pytest

EXCLUSIVE = "exclusive"
_DIR_KEY = "flwr_sdk_xdist_dir"  # workerinput: the folder shared by the run's processes
_GROUPS_FILE = "groups.json"


class RunLock:
    """The shared / exclusive test lock of one xdist run (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self._gate: IO[str] = (directory / "exclusive-gate.lock").open("a+")
        self._tests: IO[str] = (directory / "exclusive-tests.lock").open("a+")
        self.held: int | None = None  # fcntl.LOCK_SH or fcntl.LOCK_EX, on _tests

    def hold(self, *, exclusive: bool) -> None:
        """Hold the tests lock in the given mode (blocks until granted)."""
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self.held == mode:
            return
        self.release()
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        fcntl.flock(self._tests, mode)
        if not exclusive:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self.held = mode

    def release(self) -> None:
        """Release what :meth:`hold` took (no-op if nothing is held)."""
        if self.held is None:
            return
        fcntl.flock(self._tests, fcntl.LOCK_UN)
        if self.held == fcntl.LOCK_EX:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self.held = None

    def close(self) -> None:
        self.release()
        self._gate.close()
        self._tests.close()


_LOCK = pytest.StashKey[RunLock]()
_SHARED = pytest.StashKey[Path]()


# Folders whose tests are all exclusive: many-node swarms load both cores on their own
# and time heartbeats (under parallel load nodes went offline: 1854 of 2000 served).
EXCLUSIVE_PATHS = ("tests/swarm/",)


def is_exclusive(item: pytest.Item | None) -> bool:
    """Marked ``exclusive``, or in one of :data:`EXCLUSIVE_PATHS`."""
    if item is None:
        return False
    return item.get_closest_marker(EXCLUSIVE) is not None or item.nodeid.startswith(EXCLUSIVE_PATHS)


def group_of(item: pytest.Item) -> str:
    """The item's group: its ``xdist_group`` mark's, the exclusive group, or its file."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    if is_exclusive(item):
        return EXCLUSIVE
    return item.nodeid.split("::", 1)[0]


# Groups known to take longest (minutes on a loaded 2-core machine): started first, so
# that none of them starts late and runs on alone at the end.
LONGEST = (
    "tests/bench/test_bench_smoke.py",
    "tests/test_fastcodec.py",
    "tests/faults/test_chaos_black_hole.py",
    "tests/interop/test_install_alongside_flwr.py",
    "tests/interop/test_fleet_1_42.py",
    "tests/interop/test_client_1_42_smoke.py",
)
# In-memory tests (scripts/test-fast's folders): many, short. Started last, they fill the
# gaps while the slow groups (servers in subprocesses) wind down.
FAST = ("tests/unit/", "tests/perf_paths/")


def _rank(items: list[pytest.Item]) -> int:
    """When a group starts: longest, other slow (servers), in-memory, exclusive last."""
    if any(is_exclusive(item) for item in items):
        return 3
    if all(item.nodeid.startswith(FAST) for item in items):
        return 2
    if any(item.nodeid.startswith(LONGEST) for item in items):
        return 0
    return 1


def _worker_dir(config: pytest.Config) -> Path | None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or _DIR_KEY not in workerinput:
        return None
    return Path(workerinput[_DIR_KEY])


# ------------------------------------------------------------------------ hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{EXCLUSIVE}: timing-sensitive; under pytest-xdist, runs while no other worker "
        "runs a test (tests/support/parallel.py)",
    )
    # pytest-xdist registers it too; this keeps --strict-markers happy without xdist.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one worker")
    if getattr(config.option, "dist", "no") == "loadgroup":
        # Hand out groups in collection order (see _rank), not the biggest first.
        config.option.loadscopereorder = False
    shared = _worker_dir(config)
    if shared is not None:
        config.stash[_LOCK] = RunLock(shared)


def pytest_unconfigure(config: pytest.Config) -> None:
    lock = config.stash.get(_LOCK, None)
    if lock is not None:
        lock.close()
    shared = config.stash.get(_SHARED, None)
    if shared is not None:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller: give every worker the run's shared folder."""
    config: pytest.Config = node.config
    if _SHARED not in config.stash:
        config.stash[_SHARED] = Path(tempfile.mkdtemp(prefix="flwr-sdk-xdist-"))
    node.workerinput[_DIR_KEY] = str(config.stash[_SHARED])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Controller, ``--dist loadgroup``: schedule by the groups the workers wrote."""
    if config.getvalue("dist") != "loadgroup" or _SHARED not in config.stash:
        return None
    from xdist.scheduler import LoadScopeScheduling

    groups_file = config.stash[_SHARED] / _GROUPS_FILE

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """LoadScope with the scope of a test read from the workers' groups file."""

        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # first called once every worker has collected
                self._groups = json.loads(groups_file.read_text()) if groups_file.exists() else {}
            return self._groups.get(nodeid) or nodeid.split("::", 1)[0]

    return GroupScheduling(config, log)


@pytest.hookimpl(trylast=True)  # the order other conftests leave, regrouped
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Worker: order the groups by :func:`_rank` and write each test's group down."""
    shared = _worker_dir(config)
    if shared is None:
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    ordered = sorted(groups.values(), key=_rank)  # stable: collection order within a rank
    items[:] = [item for group in ordered for item in group]
    mapping = {item.nodeid: name for name, group in groups.items() for item in group}
    # Every worker writes the same mapping; each replaces the file whole.
    mine = shared / f"{_GROUPS_FILE}.{os.getpid()}"
    mine.write_text(json.dumps(mapping))
    mine.replace(shared / _GROUPS_FILE)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Hold the run lock (shared, or exclusive) through the test's setup, call, teardown."""
    lock = item.config.stash.get(_LOCK, None)
    if lock is None:
        return (yield)
    exclusive = is_exclusive(item)
    lock.hold(exclusive=exclusive)
    try:
        return (yield)
    finally:
        if not (exclusive and is_exclusive(nextitem)):
            lock.release()
