"""What a node reports: typed events, per-message log lines, the failure summary, fail_fast.

The node loop runs against the in-memory Flower 1.12 Fleet of tests/support/fake_fleet.py
(a real FleetSession over a fake caller), so these run without a server; the same
behaviour against real servers is in tests/server/test_node_reports.py and
tests/interop/test_failures_reach_user.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb
from support.fake_fleet import NODE, RUN, FakeCaller, Fleet

import flwr_sdk
from flwr_sdk.app import ConsoleLogging
from flwr_sdk.common.legacy_records import evaluateins_to_recordset, fitins_to_recordset
from flwr_sdk.common.legacy_types import EvaluateIns, FitIns
from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.ndarrays import ndarrays_to_parameters
from flwr_sdk.events import (
    TRANSFER_PROGRESS_MIN,
    TRANSFER_PROGRESS_STEP,
    Connected,
    Disconnected,
    InstructionFailed,
    InstructionReceived,
    NodeEvent,
    NodeSummary,
    Registered,
    ReplySent,
    Stopped,
    TransferProgress,
)
from flwr_sdk.net.framing import TRANSFER_EVENTS, TransferMeter, transfer_meter
from flwr_sdk.node_loop import NodeLoop
from flwr_sdk.transport.fleet_session import FleetConnector
from flwr_sdk.validation import validate
from flwr_sdk.wire.v1_12 import message_to_task_ins

WEIGHTS = [np.arange(6, dtype=np.float32)]
#: Bytes of tensor data the instructions carry (their parameters records).
TENSOR_BYTES = sum(
    record.count_bytes()
    for record in fitins_to_recordset(
        FitIns(ndarrays_to_parameters(WEIGHTS), {}), keep_input=True
    ).parameters_records.values()
)


class Trainer(flwr_sdk.NumPyClient):
    """Adds 1 in ``fit``; raises in ``fit`` when ``fail`` says so."""

    def __init__(self, fail: Callable[[int], bool] = lambda _round: False) -> None:
        self.fail = fail

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        if self.fail(int(config["round"])):
            raise ValueError(f"bad shape in round {config['round']}")
        parameters[0] += 1
        return parameters, 10, {}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        return 0.5, 10, {}


def instruction(kind: str, rnd: int) -> pb.TaskIns:
    """A legacy train / evaluate TaskIns for the fake Fleet's node, group = round."""
    parameters = ndarrays_to_parameters(WEIGHTS)
    content = (
        fitins_to_recordset(FitIns(parameters, {"round": rnd}), keep_input=True)
        if kind == "train"
        else evaluateins_to_recordset(EvaluateIns(parameters, {"round": rnd}), keep_input=True)
    )
    metadata = Metadata(
        run_id=RUN,
        message_id=str(uuid.uuid4()),
        src_node_id=0,
        dst_node_id=NODE,
        reply_to_message="",
        group_id=str(rnd),
        ttl=3600.0,
        message_type=kind,
    )
    return message_to_task_ins(Message(metadata, content))


def rounds(n: int) -> list[pb.TaskIns]:
    return [instruction(kind, rnd) for rnd in range(1, n + 1) for kind in ("train", "evaluate")]


def run_node(
    fleet: Fleet,
    client: flwr_sdk.NumPyClient,
    *,
    replies: int,
    on_event: Any = None,
    fail_fast: bool = False,
) -> BaseException | None:
    """Serve the queued instructions; stop the node once ``replies`` were pushed.

    Returns the exception the node stopped with (None when it was stopped by us).
    """
    fleet.runs[RUN] = pb.Run(run_id=RUN, fab_id="app", fab_version="1")
    config = validate(
        server_address="127.0.0.1:1",
        client_fn=None,
        client=client,
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=None,
        transport="grpc-rere",
        authentication_keys=None,
        max_retries=0,
        max_wait_time=None,
        fail_fast=fail_fast,
        on_event=on_event,
    )
    connector = FleetConnector(
        "grpc-rere", config.settings, lambda auth: FakeCaller(fleet, auth), None
    )

    async def scenario() -> BaseException | None:
        task = asyncio.create_task(NodeLoop(config, connector).run())
        for _ in range(500):
            if task.done() or len(fleet.pushed) >= replies:
                break
            await asyncio.sleep(0.01)
        if not task.done():
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return None
        except BaseException as exc:
            return exc
        return None

    return asyncio.run(scenario())


def test_events_arrive_typed_and_in_order() -> None:
    fleet = Fleet()
    fleet.task_ins = rounds(2)
    events: list[NodeEvent] = []
    assert run_node(fleet, Trainer(), replies=4, on_event=events.append) is None
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "Connected",
        "Registered",
        *(["InstructionReceived", "ReplySent"] * 4),
        "Disconnected",
        "Stopped",
    ], kinds
    assert events[0] == Connected("127.0.0.1:1", "grpc-rere", "1.12")
    assert events[1] == Registered(NODE)
    received = [e for e in events if isinstance(e, InstructionReceived)]
    assert [(e.message_type, e.group_id) for e in received] == [
        ("train", "1"),
        ("evaluate", "1"),
        ("train", "2"),
        ("evaluate", "2"),
    ]
    assert all(e.run_id == RUN and e.size == TENSOR_BYTES for e in received)
    sent = [e for e in events if isinstance(e, ReplySent)]
    assert [e.size for e in sent] == [TENSOR_BYTES, 0] * 2
    assert not any(e.failed for e in sent) and all(e.duration >= 0 for e in sent)
    assert events[-2] == Disconnected("the node was stopped", will_reconnect=False)
    assert events[-1] == Stopped(NodeSummary({"train": 2, "evaluate": 2}, {}, {}), None)


def test_a_failing_fit_is_logged_once_counted_and_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = Fleet()
    fleet.task_ins = rounds(3)
    events: list[NodeEvent] = []
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        run_node(fleet, Trainer(fail=lambda _r: True), replies=6, on_event=events.append)
    # Every fit got an error reply; every evaluate a result.
    assert [bool(t.task and t.task.error) for t in fleet.pushed] == [True, False] * 3
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 3  # once per failure, nowhere else
    assert all(r.levelno == logging.ERROR for r in tracebacks)
    assert "ValueError: bad shape in round 1" in tracebacks[0].getMessage()
    failed = [e for e in events if isinstance(e, InstructionFailed)]
    assert failed[0] == InstructionFailed("train", "1", "ValueError: bad shape in round 1")
    assert [e.failed for e in events if isinstance(e, ReplySent)] == [True, False] * 3
    stopped = events[-1]
    assert isinstance(stopped, Stopped)
    assert stopped.summary.failed == {"train": 3}
    assert stopped.summary.failures == 3 and stopped.summary.instructions == 6
    expected = "3 of 3 train instructions failed (first: ValueError: bad shape in round 1)"
    assert stopped.summary.describe() == expected
    (summary,) = [r for r in caplog.records if r.getMessage().startswith("Node stopped")]
    assert summary.levelno == logging.ERROR
    assert summary.getMessage() == f"Node stopped: {expected}"
    assert summary.name == "flwr_sdk.node"


def test_one_info_line_per_instruction_received_and_reply_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = Fleet()
    fleet.task_ins = rounds(1)
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        run_node(fleet, Trainer(), replies=2)
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "flwr_sdk.node" and r.getMessage().startswith(("Received", "Sent"))
    ]
    assert len(lines) == 4, lines
    size = f"{TENSOR_BYTES} B"
    assert lines[0] == f"Received a train instruction for round 1 ({size})"
    assert lines[1].startswith(f"Sent the train reply for round 1 ({size}) after ")
    assert lines[2] == f"Received an evaluate instruction for round 1 ({size})"
    assert lines[3].startswith("Sent the evaluate reply for round 1 (0 B) after ")


def test_fail_fast_raises_the_users_exception_after_leaving_the_server() -> None:
    fleet = Fleet()
    fleet.task_ins = rounds(3)
    raised: list[BaseException] = []

    class Failing(Trainer):
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            error = KeyError("lr")
            raised.append(error)
            raise error

    events: list[NodeEvent] = []
    error = run_node(fleet, Failing(), replies=99, on_event=events.append, fail_fast=True)
    assert error is raised[0]  # the very object user code raised
    assert error.__traceback__ is not None
    # The error reply went out, then the node unregistered; nothing more was pulled.
    assert len(fleet.pushed) == 1 and fleet.pushed[0].task.error is not None
    assert fleet.calls[-1] == "DeleteNode" and fleet.nodes == set()
    assert [type(e).__name__ for e in events][-4:] == [
        "InstructionFailed",
        "ReplySent",
        "Disconnected",
        "Stopped",
    ]
    stopped = events[-1]
    assert isinstance(stopped, Stopped) and stopped.error == "KeyError: 'lr'"
    assert stopped.summary.failed == {"train": 1}


def test_a_raising_callback_does_not_break_the_node(caplog: pytest.LogCaptureFixture) -> None:
    fleet = Fleet()
    fleet.task_ins = rounds(2)
    seen: list[NodeEvent] = []

    def flaky(event: NodeEvent) -> None:
        seen.append(event)
        raise RuntimeError("display crashed")

    with caplog.at_level(logging.DEBUG, logger="flwr_sdk"):
        assert run_node(fleet, Trainer(), replies=4, on_event=flaky) is None
    assert len(fleet.pushed) == 4 and not any(t.task.error for t in fleet.pushed)
    assert isinstance(seen[-1], Stopped)
    ignored = [r for r in caplog.records if "on_event callback raised" in r.getMessage()]
    assert ignored and all(r.levelno == logging.DEBUG for r in ignored)


def test_on_event_and_fail_fast_are_validated() -> None:
    args: dict[str, Any] = {"server_address": "127.0.0.1:1", "client": Trainer()}
    with pytest.raises(TypeError, match="on_event"):
        flwr_sdk.start_client(**args, on_event=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fail_fast"):
        flwr_sdk.start_client(**args, fail_fast="yes")  # type: ignore[arg-type]


def test_summary_texts() -> None:
    assert NodeSummary().describe() == "no instructions handled"
    assert NodeSummary({"train": 1}).describe() == "1 instruction handled (1 train), none failed"
    mixed = NodeSummary(
        {"train": 12, "evaluate": 12},
        {"train": 12, "evaluate": 1},
        {"train": "ValueError: x", "evaluate": "ZeroDivisionError: division by zero"},
    )
    assert mixed.describe() == (
        "12 of 12 train instructions failed (first: ValueError: x); 1 of 12 evaluate "
        "instructions failed (first: ZeroDivisionError: division by zero)"
    )


def test_transfer_meter_steps_and_silence() -> None:
    events: list[NodeEvent] = []
    total = 3 * TRANSFER_PROGRESS_STEP + 10
    meter = TransferMeter(events.append, "send", total, offset=5)
    for moved in range(5, total + 6, TRANSFER_PROGRESS_STEP // 4):
        meter(moved)
    meter(total + 5)
    meter(total + 5)  # nothing after the end
    done = [e.done for e in events if isinstance(e, TransferProgress)]
    assert done[0] == 0 and done[-1] == total and done.count(total) == 1
    assert all(b - a >= TRANSFER_PROGRESS_STEP for a, b in itertools.pairwise(done[1:-1]))
    assert len(done) <= 2 + total // TRANSFER_PROGRESS_STEP + 1
    # No callback in this context, or a small message: no meter at all.
    assert transfer_meter("receive", 10 * TRANSFER_PROGRESS_MIN) is None
    token = TRANSFER_EVENTS.set(events.append)
    try:
        assert transfer_meter("receive", TRANSFER_PROGRESS_MIN - 1) is None
        assert transfer_meter("receive", TRANSFER_PROGRESS_MIN) is not None
    finally:
        TRANSFER_EVENTS.reset(token)


def test_console_logging_only_when_logging_is_unconfigured() -> None:
    """The rule, in a fresh interpreter (pytest itself configures logging)."""
    script = textwrap.dedent(
        """
        import logging, sys
        from flwr_sdk.app import ConsoleLogging
        sdk = logging.getLogger("flwr_sdk")
        node = logging.getLogger("flwr_sdk.node")
        ConsoleLogging.acquire()
        ConsoleLogging.acquire()  # a second node at the same time
        node.info("shown while nodes run")
        assert len(sdk.handlers) == 1 and sdk.level == logging.INFO
        assert logging.getLogger().handlers == []
        ConsoleLogging.release()
        assert len(sdk.handlers) == 1
        ConsoleLogging.release()
        assert sdk.handlers == [] and sdk.level == logging.NOTSET
        node.info("not shown after the nodes stopped")
        sdk.setLevel(logging.WARNING)  # a level the user chose is kept
        ConsoleLogging.acquire()
        node.info("not shown: flwr_sdk is at WARNING")
        node.warning("warnings still shown")
        ConsoleLogging.release()
        assert sdk.level == logging.WARNING
        logging.basicConfig(level=logging.INFO, format="ROOT %(message)s")
        ConsoleLogging.acquire()  # configured: nothing is added
        assert sdk.handlers == []
        node.warning("through the root handler")
        ConsoleLogging.release()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith("INFO flwr_sdk.node: shown while nodes run")
    assert lines[1].endswith("WARNING flwr_sdk.node: warnings still shown")
    assert lines[2] == "ROOT through the root handler"


def test_console_logging_keeps_a_configured_flwr_sdk_logger() -> None:
    sdk = logging.getLogger("flwr_sdk")
    handler = logging.NullHandler()
    sdk.addHandler(handler)
    try:
        before = list(sdk.handlers)
        ConsoleLogging.acquire()
        assert sdk.handlers == before
        ConsoleLogging.release()
        assert sdk.handlers == before
    finally:
        sdk.removeHandler(handler)
