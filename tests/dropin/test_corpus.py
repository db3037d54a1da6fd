"""The drop-in corpus on real flwr 1.12.0 servers: rename the import and it runs the same.

Every case is one corpus program on one transport. The program runs twice at the same
time, each with its own real flwr 1.12.0 server and two nodes (partitions 0 and 1): as
written, in the flwr 1.12.0 venv, and with only ``flwr`` → ``flwr_sdk`` changed in its
imports, in our interpreter. The test asserts that both servers recorded the same
results in every round (aggregated parameters, client metrics, example counts,
distributed losses, failures), that training moved the loss, and that both programs
exited the same way. All cases of the module run at once, in one fixture.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.dropin import (
    CORPUS,
    SIDES,
    TEMPLATE_MODULE,
    ClientLauncher,
    Outcome,
    assemble_app,
    differences,
    normalized,
    program_launcher,
    rewrite_imports,
    run_parallel,
    run_side,
    sdk_app_launcher,
    supernode_launcher,
)
from support.flower_env import FlowerEnv

pytestmark = pytest.mark.interop

ROUNDS = 3
MAX_DIFFS = 12  # differing report entries shown per failed case


def _metric(report: dict[str, Any], rnd: int, name: str) -> list[Any]:
    return sorted(json.loads(m)[name] for m in report["fit"][str(rnd)]["client_metrics"])


def _fit_rounds_counted(report: dict[str, Any]) -> None:
    """lowlevel_client keeps a fit counter in context.state: it must reach the round."""
    for rnd in range(1, ROUNDS + 1):
        assert _metric(report, rnd, "fit_rounds") == [rnd, rnd], (rnd, report["fit"][str(rnd)])


def _round_echoed(report: dict[str, Any]) -> None:
    for rnd in range(1, ROUNDS + 1):
        assert _metric(report, rnd, "round") == [rnd, rnd], (rnd, report["fit"][str(rnd)])


def _mods_ran(report: dict[str, Any]) -> None:
    """The counting mod saw every message: fit of round r is the node's (2r-1)th message."""
    for rnd in range(1, ROUNDS + 1):
        seen = _metric(report, rnd, "messages_seen")
        assert seen == [2 * rnd - 1] * 2, (rnd, report["fit"][str(rnd)])


def _no_extra_checks(report: dict[str, Any]) -> None:
    del report


@dataclass(frozen=True)
class Program:
    """A corpus program and how it is started."""

    name: str
    clientapp: bool  # a `ClientApp` module (run by a SuperNode), else a script
    transports: tuple[str, ...]
    check: Callable[[dict[str, Any]], None]

    @property
    def path(self) -> Path:
        return CORPUS / f"{self.name}.py"


PROGRAMS = (
    Program("quickstart_numpy", False, ("grpc-bidi", "grpc-rere", "rest"), _no_extra_checks),
    Program("lowlevel_client", False, ("grpc-bidi", "grpc-rere", "rest"), _fit_rounds_counted),
    Program("numpy_client_legacy", False, ("grpc-bidi", "grpc-rere", "rest"), _round_echoed),
    # Not over REST: a 1.12 SuperLink cannot hand out a FAB there (GetFab answers 500,
    # "'FfsFactory' object has no attribute 'state'"), so no node, Flower's or ours, gets
    # the run_config this ClientApp reads; see README.md.
    Program("template_client_app", True, ("grpc-rere",), _mods_ran),
)
BY_NAME = {program.name: program for program in PROGRAMS}
CASES = [f"{p.name}-{transport}" for p in PROGRAMS for transport in p.transports]


def _split(case: str) -> tuple[Program, str]:
    name, _, transport = case.partition("-")
    return BY_NAME[name], transport


def _selected(request: pytest.FixtureRequest) -> list[str]:
    """The cases of this module that the session will run (all of them, or a -k subset)."""
    chosen = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.module is request.module and "case" in callspec.params:
            chosen.append(callspec.params["case"])
    return chosen or CASES


@pytest.fixture(scope="module")
def outcomes(
    flwr_1_12: FlowerEnv, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[tuple[str, str], Outcome]]:
    """Both sides of every selected case, all run at the same time."""
    root = tmp_path_factory.mktemp("dropin")
    sdk_programs = root / "flwr_sdk-programs"
    sdk_programs.mkdir()
    for program in PROGRAMS:
        rewritten = rewrite_imports(program.path.read_text())
        (sdk_programs / program.path.name).write_text(rewritten)
    # The Flower App both SuperLinks run: recording FedAvg ServerApp, the template as its
    # ClientApp as written for flwr (the FAB's ClientApp is what flower-supernode runs).
    app = assemble_app(root / "app", BY_NAME["template_client_app"].path)

    jobs = {}
    for case in _selected(request):
        program, transport = _split(case)
        if program.clientapp:
            launchers: dict[str, ClientLauncher] = {
                "flwr": supernode_launcher(flwr_1_12),
                "flwr_sdk": sdk_app_launcher(sdk_programs, TEMPLATE_MODULE),
            }
        else:
            launchers = {
                "flwr": program_launcher(flwr_1_12, program.path),
                "flwr_sdk": program_launcher(None, sdk_programs / program.path.name),
            }
        for side in SIDES:
            jobs[(case, side)] = functools.partial(
                run_side,
                side,
                flwr_1_12,
                root / case / side,
                launchers[side],
                transport,
                app,
                fab=program.clientapp,
            )
    yield run_parallel(jobs)


def _assert_trains(report: dict[str, Any], side: str) -> None:
    """Every round: two results, no failures, new parameters, a lower evaluation loss."""
    losses = []
    parameters = []
    for rnd in range(1, ROUNDS + 1):
        fit, evaluate = report["fit"][str(rnd)], report["evaluate"][str(rnd)]
        assert (fit["results"], fit["failures"]) == (2, 0), (side, rnd, fit)
        assert (evaluate["results"], evaluate["failures"]) == (2, 0), (side, rnd, evaluate)
        losses.append(evaluate["loss"])
        parameters.append(fit["parameters"])
    assert all(a > b for a, b in itertools.pairwise(losses)), (side, losses)
    assert all(a != b for a, b in itertools.pairwise(parameters)), side


@pytest.mark.parametrize("case", CASES)
def test_same_server_results(case: str, outcomes: dict[tuple[str, str], Outcome]) -> None:
    program, transport = _split(case)
    flwr, sdk = outcomes[(case, "flwr")], outcomes[(case, "flwr_sdk")]
    reference = f"flwr 1.12.0 over {transport}"

    # The reference run: flwr 1.12.0 itself. A failure here is the harness's, not ours.
    if flwr.error is not None:
        pytest.fail(f"{reference} failed (logs: {flwr.workdir}): {flwr.error}", pytrace=False)
    assert flwr.report is not None
    _assert_trains(flwr.report, "flwr")
    program.check(flwr.report)

    if sdk.error is not None:
        pytest.fail(f"flwr_sdk side failed (logs: {sdk.workdir}): {sdk.error}", pytrace=False)
    assert sdk.report is not None
    diffs = differences(normalized(flwr.report), normalized(sdk.report))
    if diffs:
        more = f"\n... and {len(diffs) - MAX_DIFFS} more" if len(diffs) > MAX_DIFFS else ""
        pytest.fail(
            f"the servers recorded different results ({reference} vs flwr_sdk over "
            f"{transport}; logs: {sdk.workdir}):\n" + "\n".join(diffs[:MAX_DIFFS]) + more,
            pytrace=False,
        )
    _assert_trains(sdk.report, "flwr_sdk")
    program.check(sdk.report)
    assert sdk.exit_codes == flwr.exit_codes == [0, 0], (flwr.exit_codes, sdk.exit_codes)
