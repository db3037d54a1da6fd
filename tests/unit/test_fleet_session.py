"""The shared Fleet session flow (flwr_sdk.transport.fleet_session), transport-free.

``ScriptedSession`` is a 1.12 session whose caller is the in-memory Fleet of
tests/support/fake_fleet.py (node table, queued TaskIns, runs, FABs, injected failures).
The real SuperLink is exercised by tests/interop/test_fleet_*.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb
from support.fake_fleet import NODE, RUN, FakeCaller, Fleet

from flwr_sdk.common.records import RecordSet
from flwr_sdk.errors import (
    AuthenticationError,
    RetriesExhaustedError,
    ServerUnavailableError,
    TransportError,
)
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import FleetConnector, FleetSession, NodeLostError
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.validation import validate
from flwr_sdk.wire.base import NodeAuth, NoNodeAuth
from flwr_sdk.wire.v1_12 import LINE
from flwr_sdk.wire.v1_15 import LINE as V1_15


class ScriptedSession(FleetSession):
    """A 1.12 session whose calls the in-memory Fleet answers."""

    def __init__(
        self, fleet: Fleet, retry: RetryPolicy | None = None, auth: NodeAuth | None = None
    ) -> None:
        self.fleet = fleet
        self.caller = FakeCaller(fleet, auth)
        super().__init__(LINE, self.caller, self.caller.auth, retry=retry or fast_policy(3))

    @property
    def transport_closed(self) -> bool:
        return self.caller.closed

    @property
    def timeouts(self) -> dict[str, float]:
        return self.caller.timeouts


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def fast_policy(max_retries: int | None) -> RetryPolicy:
    return RetryPolicy(max_retries, None, sleep=_no_sleep)


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def train_ins(node_id: int = NODE) -> pb.TaskIns:
    return pb.TaskIns(
        task_id="6d1f6b5e-0d6a-4a38-9a7c-1f7d2b0e9c01",
        group_id="1",
        run_id=RUN,
        task=pb.Task(
            producer=pb.Node(node_id=0, anonymous=True),
            consumer=pb.Node(node_id=node_id),
            created_at=time.time(),
            ttl=3600.0,
            task_type="train",
            recordset=pb.RecordSet(),
        ),
    )


def test_open_pings_at_once_and_close_deletes_the_node() -> None:
    fleet = Fleet()

    async def scenario() -> ScriptedSession:
        session = ScriptedSession(fleet)
        await session.open()
        assert session.node_id == NODE
        await asyncio.sleep(0.01)
        await session.close()
        await session.close()  # idempotent
        return session

    session = run(scenario)
    assert fleet.calls == ["CreateNode", "Ping", "DeleteNode"]
    assert fleet.nodes == set()
    assert session.transport_closed
    assert session.timeouts == {"CreateNode": 30.0, "Ping": 5.0, "DeleteNode": 3.0}


def test_heartbeat_cadence_is_flowers() -> None:
    session = ScriptedSession(Fleet())
    delays = [session._next_ping_delay() for _ in range(2000)]
    assert min(delays) >= 17.5 and max(delays) <= 22.5
    assert max(delays) - min(delays) > 4.0


def test_receive_send_roundtrip() -> None:
    fleet = Fleet()
    fleet.task_ins = [train_ins(node_id=NODE + 1), train_ins()]

    async def scenario() -> None:
        session = ScriptedSession(fleet)
        await session.open()
        assert await session.receive() is None  # not for us: "no work"
        message = await session.receive()
        assert message is not None
        await session.send(message.create_reply(RecordSet()))
        assert await session.receive() is None
        await session.close()

    run(scenario)
    (res,) = fleet.pushed
    assert res.task is not None and res.task.producer == pb.Node(node_id=NODE)
    assert res.task.ancestry == ["6d1f6b5e-0d6a-4a38-9a7c-1f7d2b0e9c01"]


def test_unavailable_calls_are_retried_and_trigger_a_ping() -> None:
    fleet = Fleet()
    down = ServerUnavailableError("connection refused")
    fleet.fail("PullTaskIns", down, down)

    async def scenario() -> None:
        session = ScriptedSession(fleet, fast_policy(3))
        await session.open()
        await asyncio.sleep(0.01)
        assert await session.receive() is None
        await asyncio.sleep(0.01)
        await session.close()

    run(scenario)
    assert fleet.calls.count("PullTaskIns") == 3
    # CreateNode, Ping (at start), 3 x PullTaskIns, Ping (check after the outage), DeleteNode
    assert fleet.calls.count("Ping") == 2, fleet.calls


def test_give_up_after_max_retries() -> None:
    fleet = Fleet()
    fleet.fail("PushTaskRes", *[ServerUnavailableError("down")] * 5)
    fleet.task_ins = [train_ins()]

    async def scenario() -> None:
        session = ScriptedSession(fleet, fast_policy(2))
        await session.open()
        message = await session.receive()
        assert message is not None
        try:
            with pytest.raises(RetriesExhaustedError):
                await session.send(message.create_reply(RecordSet()))
        finally:
            await session.close()

    run(scenario)
    assert fleet.calls.count("PushTaskRes") == 3


def test_authentication_errors_are_not_retried() -> None:
    fleet = Fleet()
    fleet.fail("PullTaskIns", AuthenticationError("UNAUTHENTICATED: Access denied"))

    async def scenario() -> None:
        session = ScriptedSession(fleet, fast_policy(None))
        await session.open()
        try:
            with pytest.raises(AuthenticationError):
                await session.receive()
        finally:
            await session.close()

    run(scenario)
    assert fleet.calls.count("PullTaskIns") == 1


def test_lost_node_is_reported_and_not_deleted() -> None:
    fleet = Fleet()

    async def scenario() -> None:
        session = ScriptedSession(fleet)
        await session.open()
        fleet.nodes.clear()  # the SuperLink restarted
        session._ping_now.set()
        for _ in range(50):
            if session.lost:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(NodeLostError):
            await session.receive()
        await session.close()

    run(scenario)
    assert "DeleteNode" not in fleet.calls


def test_failed_registration_check_deletes_the_node() -> None:
    fleet = Fleet()

    class RefusingAuth(NoNodeAuth):
        def check_registered(self) -> None:
            raise AuthenticationError("no server key")

    async def scenario() -> ScriptedSession:
        session = ScriptedSession(fleet, auth=RefusingAuth())
        with pytest.raises(AuthenticationError):
            await session.open()
        return session

    session = run(scenario)
    assert fleet.calls == ["CreateNode", "DeleteNode"]
    assert session.transport_closed and fleet.nodes == set()


def make_fab(config: bytes) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pyproject.toml", b"[tool.flwr.app.config]\n" + config)
    content = buffer.getvalue()
    return hashlib.sha256(content).hexdigest(), content


def test_run_info_with_fab_once_per_run() -> None:
    fleet = Fleet()
    fab_hash, content = make_fab(b'lr = 0.1\nname = "a"\n')
    fleet.fabs[fab_hash] = content
    overrides = {"lr": pb.Scalar(double=0.5), "extra": pb.Scalar(sint64=1)}
    fleet.runs[RUN] = pb.Run(run_id=RUN, fab_hash=fab_hash, override_config=overrides)

    async def scenario() -> Any:
        session = ScriptedSession(fleet)
        await session.open()
        first = await session.run_info(RUN)
        second = await session.run_info(RUN)
        unknown = await session.run_info(RUN + 1)
        await session.close()
        return first, second, unknown

    first, second, unknown = run(scenario)
    assert first is second
    assert dict(first.run_config) == {"lr": 0.5, "name": "a"}
    assert dict(unknown.run_config) == {}
    assert fleet.calls.count("GetRun") == 2 and fleet.calls.count("GetFab") == 1


def test_failing_get_fab_means_no_fab() -> None:
    fleet = Fleet()
    fleet.fab_error = TransportError("GetFab (POST /api/v0/fleet/get-fab): HTTP 500")
    overrides = {"lr": pb.Scalar(double=0.5)}
    fleet.runs[RUN] = pb.Run(run_id=RUN, fab_hash="ab" * 32, override_config=overrides)

    async def scenario() -> Any:
        session = ScriptedSession(fleet)
        await session.open()
        info = await session.run_info(RUN)
        await session.close()
        return info

    info = run(scenario)
    assert dict(info.run_config) == {"lr": 0.5}


def test_connector_refuses_the_ghost_node() -> None:
    fleet = Fleet()

    settings = TransportSettings(
        server_address="127.0.0.1:9092",
        max_message_length=1024,
        root_certificates=None,
        insecure=True,
        authentication_keys=None,
        retry=fast_policy(3),
    )

    async def scenario() -> None:
        connector = FleetConnector("scripted", settings, lambda auth: FakeCaller(fleet))
        first = await connector.connect()
        assert isinstance(first, FleetSession)
        fleet.nodes.clear()
        first._ping_now.set()
        for _ in range(50):
            if first.lost:
                break
            await asyncio.sleep(0.01)
        await first.close()
        # With node auth a 1.12 SuperLink hands the lost id out again (same key).
        with pytest.raises(TransportError, match="handed out node"):
            await connector.connect()
        fleet.next_node = NODE + 1  # without auth: a fresh id, fine
        second = await connector.connect()
        await second.close()

    run(scenario)


@pytest.mark.parametrize("transport", ["grpc-bidi", None])
def test_authentication_keys_only_on_fleet_transports(transport: str | None) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    address = "http://127.0.0.1:9093" if transport == "rest" else "127.0.0.1:9092"
    with pytest.raises(ValueError, match="authentication_keys"):
        validate(
            server_address=address,
            client_fn=None,
            client=_client(),
            grpc_max_message_length=1024,
            root_certificates=None,
            insecure=None,
            transport=transport,
            authentication_keys=(key, key.public_key()),
            max_retries=None,
            max_wait_time=None,
        )


def _client() -> Any:
    from flwr_sdk import NumPyClient

    class Nothing(NumPyClient):
        pass

    return Nothing()


class ForgetfulLine(type(LINE)):  # type: ignore[misc]
    """The 1.12 line with 1.15's way of saying "node lost" and "run ended"."""

    def node_lost(self, error: Exception) -> bool:
        return V1_15.node_lost(error)

    def run_ended(self, error: Exception) -> bool:
        return V1_15.run_ended(error)


def forgetful_session(fleet: Fleet) -> FleetSession:
    caller = FakeCaller(fleet)
    return FleetSession(ForgetfulLine(), caller, caller.auth, retry=fast_policy(3))


def test_a_lost_node_refused_on_pull_is_reported_not_raised_as_auth() -> None:
    fleet = Fleet()
    fleet.fail("PullTaskIns", AuthenticationError("PullMessages: UNAUTHENTICATED: Invalid node ID"))

    async def scenario() -> FleetSession:
        session = forgetful_session(fleet)
        await session.open()
        try:
            with pytest.raises(NodeLostError, match="no longer knows"):
                await session.receive()
        finally:
            await session.close()
        return session

    session = run(scenario)
    assert session.lost
    assert fleet.calls.count("PullTaskIns") == 1  # not retried
    assert "DeleteNode" not in fleet.calls


def test_a_lost_node_refused_on_ping_ends_the_heartbeat() -> None:
    fleet = Fleet()
    fleet.fail("Ping", AuthenticationError("Ping: UNAUTHENTICATED: Invalid node ID"))

    async def scenario() -> FleetSession:
        session = forgetful_session(fleet)
        await session.open()
        for _ in range(50):
            if session.lost:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(NodeLostError):
            await session.receive()
        await session.close()
        return session

    assert run(scenario).lost
    assert fleet.calls.count("Ping") == 1


def test_a_reply_to_an_ended_run_is_dropped_and_serving_goes_on() -> None:
    fleet = Fleet()
    fleet.task_ins = [train_ins(), train_ins()]
    fleet.fail("PushTaskRes", AuthenticationError("PERMISSION_DENIED: Run is finished."))

    async def scenario() -> None:
        session = forgetful_session(fleet)
        await session.open()
        for _ in range(2):
            message = await session.receive()
            assert message is not None
            await session.send(message.create_reply(RecordSet()))
        await session.close()

    run(scenario)
    assert fleet.calls.count("PushTaskRes") == 2
    assert len(fleet.pushed) == 1  # the first reply was refused and dropped


def test_other_push_failures_still_raise() -> None:
    fleet = Fleet()
    fleet.task_ins = [train_ins()]
    fleet.fail("PushTaskRes", TransportError("PushTaskRes: UNKNOWN: boom"))

    async def scenario() -> None:
        session = forgetful_session(fleet)
        await session.open()
        message = await session.receive()
        assert message is not None
        try:
            with pytest.raises(TransportError, match="boom"):
                await session.send(message.create_reply(RecordSet()))
        finally:
            await session.close()

    run(scenario)


# --- failure texts name the failed call once ("Ping failed: Ping failed: …" is gone) -----------


def _grpc_failure(call: str, status: Any, message: str) -> Exception:
    """The error the grpc-rere caller raises for ``call`` failing with ``status``."""
    from grpclib.exceptions import GRPCError

    from flwr_sdk.transport.grpc_errors import map_grpc_error

    return map_grpc_error(GRPCError(status, message), host="127.0.0.1", what=call)


def test_session_failure_lines_name_each_call_once(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from grpclib.const import Status

    fleet = Fleet()
    fleet.fail("Ping", _grpc_failure("Ping", Status.UNAVAILABLE, "gone"))
    fleet.fail("PullTaskIns", _grpc_failure("PullTaskIns", Status.UNAVAILABLE, "gone"))
    fleet.fail("GetRun", _grpc_failure("GetRun", Status.FAILED_PRECONDITION, "oops"))
    fleet.fail("DeleteNode", _grpc_failure("DeleteNode", Status.NOT_FOUND, "no such node"))
    policy = RetryPolicy(3, None, sleep=_no_sleep, random=lambda: 0.0)

    async def scenario() -> None:
        session = ScriptedSession(fleet, retry=policy)
        await session.open()
        for _ in range(100):  # the failed ping, then the retried one
            if fleet.calls.count("Ping") >= 2:
                break
            await asyncio.sleep(0.01)
        assert await session.receive() is None
        await session.run_info(RUN)
        await session.close()

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        run(scenario)
    lines = [r.getMessage() for r in caplog.records]
    assert "Ping failed: UNAVAILABLE: gone; next ping in 0.0 s" in lines, lines
    assert (
        f"PullTaskIns (node {NODE}) failed (attempt 1 of 4): UNAVAILABLE: gone; retrying in 0.00 s"
    ) in lines, lines
    assert (
        f"GetRun failed: FAILED_PRECONDITION: oops (run {RUN}); using an empty run config"
    ) in lines
    assert f"DeleteNode failed: NOT_FOUND: no such node (node {NODE})" in lines
    for line in lines:
        for call in ("Ping", "PullTaskIns", "GetRun", "DeleteNode"):
            assert line.count(f"{call} failed") <= 1, line
