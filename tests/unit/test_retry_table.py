"""The retry table (flwr_sdk.transport.retry.RETRY_TABLE): the docs show it, the code does it.

* ``docs/reliability.md`` renders :data:`RETRY_TABLE` and :data:`CALL_RULES` row by row;
* the walk: for every row, the failure is injected (into the in-memory Fleet of
  tests/support/fake_fleet.py for the Fleet API column, into a scripted ``Join`` for the
  grpc-bidi column) under the node loop ``start_client`` runs, and the action the row
  names is observed: the call retried after backoff waits, a new node registered, the
  stream joined again, the reply dropped, or the node ended with the row's error;
* storms: a server that fails every session at once meets growing waits and gives up per
  ``max_retries`` / ``max_wait_time`` (real time, calls per second counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from support.fake_fleet import NODE, RUN, FakeCaller, Fleet

from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.message import Message
from flwr_sdk.errors import (
    AuthenticationError,
    MessageTooLargeError,
    ProtocolError,
    RetriesExhaustedError,
    ServerUnavailableError,
    TLSError,
    TransientServerError,
    TransportError,
    WireLineError,
)
from flwr_sdk.node_loop import NodeLoop
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.transport.fleet_session import FleetConnector
from flwr_sdk.transport.grpc_errors import map_grpc_error
from flwr_sdk.transport.retry import (
    CALL_RULES,
    RETRY_TABLE,
    TRANSIENT_RETRIES,
    Action,
    RetryPolicy,
    call_rule_rows,
    rule_for,
    table_rows,
)
from flwr_sdk.validation import ClientConfig, validate
from flwr_sdk.wire.base import Reconnect
from flwr_sdk.wire.v1_12 import LINE
from flwr_sdk.wire.v1_15 import LINE as V1_15

DOC = Path(__file__).parents[2] / "docs" / "reliability.md"


def _doc_rows(marker: str) -> list[str]:
    text = DOC.read_text()
    found = re.search(rf"<!-- {marker}:[^\n]*-->\n(.*?)\n<!-- /{marker} -->", text, re.S)
    assert found, f"docs/reliability.md has no {marker} block"
    return found.group(1).splitlines()


def test_the_doc_table_is_the_code_table() -> None:
    assert _doc_rows("retry-table") == table_rows()


def test_the_doc_call_rules_are_the_code_call_rules() -> None:
    assert _doc_rows("call-rules") == call_rule_rows()


def test_every_row_is_reachable_and_walked() -> None:
    """Each row matches its own error (no earlier row shadows it) and has a walk below."""
    for rule in RETRY_TABLE:
        for error in rule.errors:
            assert rule_for(_instance(error)) is rule, rule.failure
    assert {rule.failure for rule in RETRY_TABLE} == set(FLEET_WALKS)
    assert {rule.failure for rule in RETRY_TABLE if rule.bidi is not None} == set(BIDI_WALKS)


def _instance(error: type[Exception]) -> Exception:
    if error is TLSError:
        return TLSError("x", reason="y")
    if error is MessageTooLargeError:
        return MessageTooLargeError("x", size=2, limit=1)
    return error("x")


def test_grpc_statuses_land_in_their_rows() -> None:
    """What the gRPC mapping makes of each status the table names."""
    expected = {
        Status.UNAVAILABLE: "unreachable",
        Status.UNKNOWN: "transient server error",
        Status.INTERNAL: "transient server error",
        Status.RESOURCE_EXHAUSTED: "transient server error",
        Status.UNAUTHENTICATED: "refused credentials",
        Status.PERMISSION_DENIED: "refused credentials",
        Status.INVALID_ARGUMENT: "other refusal",
        Status.NOT_FOUND: "other refusal",
        Status.UNIMPLEMENTED: "other refusal",
    }
    for status, failure in expected.items():
        rule = rule_for(_grpc(status, "x"))
        assert rule is not None and rule.failure == failure, status


# --- the walk: the Fleet API column ---------------------------------------------------------


def _grpc(status: Status, message: str, call: str = "PullTaskIns") -> Exception:
    return map_grpc_error(GRPCError(status, message), host="127.0.0.1", what=call)


class FakeClock:
    """Sleeps recorded, no time spent."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


class EchoClient(NumPyClient):
    def fit(self, parameters: Any, config: Any) -> Any:
        return parameters, 1, {}


class ForgetfulLine(type(LINE)):  # type: ignore[misc]
    """The 1.12 line, except that "Invalid node ID" means the node was lost (as on 1.15)."""

    def node_lost(self, error: Exception) -> bool:
        return "Invalid node ID" in str(error)


class RunEndingLine(type(LINE)):  # type: ignore[misc]
    """The 1.12 line, except that a push refused with "Run is finished." means run ended."""

    def run_ended(self, error: Exception) -> bool:
        return "Run is finished." in str(error)


def _train_ins() -> pb.TaskIns:
    return pb.TaskIns(
        task_id="6d1f6b5e-0d6a-4a38-9a7c-1f7d2b0e9c01",
        group_id="1",
        run_id=RUN,
        task=pb.Task(
            producer=pb.Node(node_id=0, anonymous=True),
            consumer=pb.Node(node_id=NODE),
            created_at=time.time(),
            ttl=3600.0,
            task_type="train",
            recordset=pb.RecordSet(),
        ),
    )


def _config(transport: str, max_retries: int | None, clock: FakeClock) -> ClientConfig:
    config = validate(
        server_address="127.0.0.1:1",
        client_fn=None,
        client=EchoClient(),
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=None,
        transport=transport,
        authentication_keys=None,
        max_retries=max_retries,
        max_wait_time=None,
        fail_fast=False,
        on_event=None,
    )
    policy = RetryPolicy(max_retries, None, sleep=clock.sleep, random=lambda: 1.0)
    settings = dataclasses.replace(config.settings, retry=policy)
    return dataclasses.replace(config, retry=policy, settings=settings)


@dataclasses.dataclass
class Observed:
    """What one walk saw."""

    calls: list[str]
    sleeps: list[float]
    error: BaseException | None
    pushed: int


def walk_fleet(
    fleet: Fleet,
    *,
    max_retries: int | None = None,
    line: Any = LINE,
    until_pushed: int = 1,
) -> Observed:
    """Run the node loop against ``fleet`` until ``until_pushed`` replies or the node ends."""
    clock = FakeClock()
    config = _config("grpc-rere", max_retries, clock)
    fleet.runs[RUN] = pb.Run(run_id=RUN, fab_id="app", fab_version="1")
    connector = FleetConnector(
        "grpc-rere", config.settings, lambda auth: FakeCaller(fleet, auth), line
    )

    async def scenario() -> BaseException | None:
        task = asyncio.create_task(NodeLoop(config, connector).run())
        for _ in range(2000):
            if task.done() or len(fleet.pushed) >= until_pushed:
                break
            await asyncio.sleep(0.001)
        if not task.done():
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return None
        except BaseException as exc:
            return exc
        return None

    error = asyncio.run(scenario())
    return Observed(list(fleet.calls), clock.sleeps, error, len(fleet.pushed))


def _fleet_with_work() -> Fleet:
    fleet = Fleet()
    fleet.task_ins.append(_train_ins())
    return fleet


def walk_unreachable() -> None:
    fleet = _fleet_with_work()
    fleet.fail("PullTaskIns", *[_grpc(Status.UNAVAILABLE, "gone") for _ in range(3)])
    seen = walk_fleet(fleet, max_retries=5)
    assert seen.pushed == 1 and seen.calls.count("PullTaskIns") >= 4  # retried the call
    assert seen.sleeps[:3] == [1.0, 2.0, 4.0]  # after backoff waits
    assert seen.calls.count("CreateNode") == 1
    fleet = _fleet_with_work()
    fleet.fail("PullTaskIns", *[_grpc(Status.UNAVAILABLE, "gone") for _ in range(9)])
    seen = walk_fleet(fleet, max_retries=2)
    assert isinstance(seen.error, RetriesExhaustedError)
    assert isinstance(seen.error.__cause__, ServerUnavailableError)
    assert seen.calls.count("PullTaskIns") == 3


def walk_transient() -> None:
    fleet = _fleet_with_work()
    locked = [_grpc(Status.UNKNOWN, "database is locked") for _ in range(TRANSIENT_RETRIES)]
    fleet.fail("PullTaskIns", *locked)
    seen = walk_fleet(fleet, max_retries=None)
    assert seen.pushed == 1  # the round completes
    assert seen.sleeps[:TRANSIENT_RETRIES] == [1.0, 2.0, 4.0, 8.0]
    fleet = _fleet_with_work()
    fleet.fail("PullTaskIns", *[_grpc(Status.INTERNAL, "boom") for _ in range(20)])
    seen = walk_fleet(fleet, max_retries=None)  # bounded although max_retries is None
    assert isinstance(seen.error, RetriesExhaustedError)
    assert isinstance(seen.error.__cause__, TransientServerError)
    assert seen.calls.count("PullTaskIns") == TRANSIENT_RETRIES + 1


def walk_node_lost() -> None:
    fleet = _fleet_with_work()
    fleet.fail(
        "PullTaskIns", TransportError("PullTaskIns failed: UNAUTHENTICATED: Invalid node ID")
    )
    # The lost node is NODE - 1; the one registered again NODE (the TaskIns' consumer).
    fleet.next_node = NODE - 1
    original = fleet.handle

    def handle(rpc: str, request: Any) -> Any:
        answer = original(rpc, request)
        if rpc == "CreateNode":
            fleet.next_node = NODE
        return answer

    fleet.handle = handle  # type: ignore[method-assign]
    with mock.patch.object(type(LINE), "node_lost", ForgetfulLine.node_lost):
        seen = walk_fleet(fleet)
    assert seen.error is None and seen.pushed == 1
    assert seen.calls.count("CreateNode") == 2  # a new node registered
    assert "DeleteNode" not in seen.calls[: seen.calls.index("PullTaskIns") + 1]
    assert seen.sleeps == [1.0]  # after a backoff wait (the session served nothing)


def walk_run_ended() -> None:
    fleet = _fleet_with_work()
    fleet.fail(
        "PushTaskRes", TransportError("PushTaskRes failed: PERMISSION_DENIED: Run is finished.")
    )
    fleet.task_ins.append(_train_ins())
    with mock.patch.object(type(LINE), "run_ended", RunEndingLine.run_ended):
        seen = walk_fleet(fleet, until_pushed=1)
    assert seen.error is None
    assert seen.calls.count("PushTaskRes") == 2  # the first reply dropped, serving went on
    assert seen.pushed == 1 and seen.sleeps == []


def _gives_up(rpc: str, error: Exception, expected: type[Exception]) -> None:
    fleet = _fleet_with_work()
    fleet.fail(rpc, error)
    seen = walk_fleet(fleet, max_retries=None)
    assert type(seen.error) is expected, seen.error
    assert seen.calls.count(rpc) == 1 and seen.sleeps == []


def walk_tls() -> None:
    _gives_up(
        "CreateNode", TLSError("CreateNode failed: TLS", reason="hostname mismatch"), TLSError
    )


def walk_too_large() -> None:
    error = MessageTooLargeError("PullTaskIns failed: too large", size=2, limit=1)
    _gives_up("PullTaskIns", error, MessageTooLargeError)


def walk_wire_line() -> None:
    seen = walk_fleet(_fleet_with_work(), line=V1_15)  # the fake Fleet speaks 1.12
    assert isinstance(seen.error, WireLineError)
    assert "CreateNode" not in seen.calls and seen.sleeps == []


def walk_refused_credentials() -> None:
    _gives_up("CreateNode", _grpc(Status.UNAUTHENTICATED, "no", "CreateNode"), AuthenticationError)
    _gives_up("PullTaskIns", _grpc(Status.PERMISSION_DENIED, "no"), AuthenticationError)


def walk_protocol() -> None:
    _gives_up("PullTaskIns", ProtocolError("PullTaskIns failed: not gRPC"), ProtocolError)


def walk_other() -> None:
    _gives_up("PullTaskIns", _grpc(Status.INVALID_ARGUMENT, "bad"), TransportError)


FLEET_WALKS = {
    "node lost": walk_node_lost,
    "run ended": walk_run_ended,
    "TLS": walk_tls,
    "too large": walk_too_large,
    "wire line": walk_wire_line,
    "refused credentials": walk_refused_credentials,
    "transient server error": walk_transient,
    "unreachable": walk_unreachable,
    "protocol violation": walk_protocol,
    "other refusal": walk_other,
}


@pytest.mark.parametrize("rule", RETRY_TABLE, ids=lambda rule: rule.failure)
def test_walk_fleet_column(rule: Any) -> None:
    FLEET_WALKS[rule.failure]()


# --- the walk: the grpc-bidi column ---------------------------------------------------------


class ScriptedJoin(Connection):
    """A ``Join`` whose first receive fails with the next scripted error (or goes idle)."""

    supports_error_replies = False

    def __init__(self, error: Exception | None) -> None:
        self._error = error

    @property
    def node_id(self) -> int:
        return -1

    async def receive(self) -> Message | Reconnect | None:
        if self._error is not None:
            raise self._error
        return Reconnect(None)

    async def send(self, reply: Message) -> None:
        raise AssertionError("no instruction was sent")

    async def close(self) -> None:
        return None


class ScriptedBidi(Connector):
    name = "grpc-bidi"

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.joins = 0

    async def connect(self) -> Connection:
        self.joins += 1
        return ScriptedJoin(self.errors.pop(0) if self.errors else None)


def walk_bidi(errors: list[Exception], max_retries: int | None) -> tuple[int, list[float], Any]:
    clock = FakeClock()
    config = _config("grpc-bidi", max_retries, clock)
    connector = ScriptedBidi(errors)

    async def scenario() -> BaseException | None:
        try:
            await asyncio.wait_for(NodeLoop(config, connector).run(), 5)
        except BaseException as exc:
            return exc
        return None

    error = asyncio.run(scenario())
    return connector.joins, clock.sleeps, error


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("unreachable", ServerUnavailableError("the server ended the Join stream")),
        ("transient server error", TransientServerError("Join failed: UNKNOWN: storm")),
    ],
)
def test_walk_bidi_rejoins_after_backoff(failure: str, error: Exception) -> None:
    rule = rule_for(error)
    assert rule is not None and rule.failure == failure
    assert rule.action("grpc-bidi") is Action.REJOIN
    joins, sleeps, ended = walk_bidi([error, error, error], max_retries=None)
    assert ended is None  # the fourth Join ended orderly (ReconnectIns without a wait)
    assert joins == 4 and sleeps == [1.0, 2.0, 4.0]  # joined again, after growing waits
    joins, sleeps, ended = walk_bidi([error] * 9, max_retries=2)
    assert isinstance(ended, RetriesExhaustedError) and joins == 3


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AuthenticationError("Join failed: UNAUTHENTICATED"), AuthenticationError),
        (TLSError("Join failed: TLS", reason="x"), TLSError),
        (MessageTooLargeError("too large", size=2, limit=1), MessageTooLargeError),
        (ProtocolError("Join failed: not gRPC"), ProtocolError),
        (TransportError("Join failed: UNIMPLEMENTED"), TransportError),
    ],
)
def test_walk_bidi_gives_up(error: Exception, expected: type[Exception]) -> None:
    rule = rule_for(error)
    assert rule is not None and rule.action("grpc-bidi") is Action.GIVE_UP
    joins, sleeps, ended = walk_bidi([error], max_retries=None)
    assert type(ended) is expected and joins == 1 and sleeps == []


BIDI_WALKS = {
    "unreachable",
    "transient server error",
    "refused credentials",
    "TLS",
    "too large",
    "protocol violation",
    "other refusal",
}


# --- calls that bend the table ----------------------------------------------------------------


def test_get_run_transient_errors_degrade_after_their_retries() -> None:
    fleet = _fleet_with_work()
    fleet.fail("GetRun", *[_grpc(Status.INTERNAL, "x", "GetRun") for _ in range(10)])
    seen = walk_fleet(fleet)
    assert seen.error is None and seen.pushed == 1
    assert seen.calls.count("GetRun") == TRANSIENT_RETRIES + 1


def test_get_fab_transient_errors_are_retried_once() -> None:
    assert CALL_RULES["get_fab"].transient_retries == 1


# --- storms, in real time ----------------------------------------------------------------------


def _storm(max_retries: int | None, max_wait_time: float | None, seconds: float) -> Any:
    """Every Join fails at once; count Joins per second over ``seconds`` (real waits)."""
    config = validate(
        server_address="127.0.0.1:1",
        client_fn=None,
        client=EchoClient(),
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=None,
        transport="grpc-bidi",
        authentication_keys=None,
        max_retries=max_retries,
        max_wait_time=max_wait_time,
        fail_fast=False,
        on_event=None,
    )
    error = TransientServerError("Join failed: INTERNAL: storm")
    connector = ScriptedBidi([ServerUnavailableError("reset")] * 10_000)
    connector.errors[0] = error
    times: list[float] = []
    original = connector.connect

    async def timed() -> Connection:
        times.append(time.monotonic())
        return await original()

    connector.connect = timed  # type: ignore[method-assign]

    async def scenario() -> BaseException | None:
        try:
            await asyncio.wait_for(NodeLoop(config, connector).run(), seconds)
        except BaseException as exc:
            return exc
        return None

    started = time.monotonic()
    ended = asyncio.run(scenario())
    return times, ended, time.monotonic() - started


def test_storm_stays_at_a_handful_of_joins_per_second() -> None:
    times, ended, took = _storm(None, None, 4.0)
    assert isinstance(ended, TimeoutError)  # still trying after 4 s, unlimited budget
    peak = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    print(f"\nstorm: {len(times)} Joins in {took:.1f} s, peak {peak} in 1 s")
    assert peak <= 5 and len(times) <= 12


def test_storm_gives_up_per_max_wait_time() -> None:
    times, ended, took = _storm(None, 2.0, 10.0)
    assert isinstance(ended, RetriesExhaustedError), ended
    print(f"\nstorm max_wait_time=2: {len(times)} Joins, gave up after {took:.2f} s")
    assert took < 3.0 and len(times) <= 6


def test_storm_gives_up_per_max_retries() -> None:
    times, ended, took = _storm(2, None, 10.0)
    assert isinstance(ended, RetriesExhaustedError), ended
    assert len(times) == 3 and took < 4.0
