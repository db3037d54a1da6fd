"""FleetConnector / FleetSession knobs a swarm uses: a line detected once, heartbeat cadence.

Against the in-memory 1.12 Fleet of ``support.fake_fleet`` (the real servers are in
tests/swarm/test_swarm_cadence.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from support.fake_fleet import NODE, FakeCaller, Fleet

from flwr_sdk.errors import ServerUnavailableError
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import FleetConnector, FleetSession
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.base import NoNodeAuth
from flwr_sdk.wire.lines import get_line

LINE_12 = get_line("1.12")


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


SETTINGS = TransportSettings(
    server_address="127.0.0.1:9092",
    max_message_length=1024,
    root_certificates=None,
    insecure=True,
    authentication_keys=None,
    retry=RetryPolicy(3, None, sleep=_no_sleep),
)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def probes(fleet: Fleet) -> list[str]:
    return [call for call in fleet.calls if call.startswith("probe")]


def test_a_detected_line_spares_the_probe_until_a_served_session_ended() -> None:
    fleet = Fleet()
    connector = FleetConnector(
        "grpc-rere", SETTINGS, lambda auth: FakeCaller(fleet, auth), detected_line=LINE_12
    )

    async def scenario() -> None:
        # A registration that fails before a node exists keeps trusting the line.
        fleet.fail("CreateNode", ServerUnavailableError("CreateNode failed: down"))
        try:
            await connector.connect()
        except ServerUnavailableError:
            pass
        else:
            raise AssertionError("CreateNode should have failed")
        session = await connector.connect()
        assert isinstance(session, FleetSession) and session.line is LINE_12
        assert session.node_id == NODE
        assert probes(fleet) == []
        await session.close()
        # The served session ended (the server may be another one now): probe again.
        fleet.next_node = NODE + 1
        again = await connector.connect()
        assert probes(fleet) == ["probe ActivateNode", "probe PullMessages", "probe PullTaskIns"]
        await again.close()

    run(scenario())
    assert fleet.calls.count("CreateNode") == 3


class RecordingCaller(FakeCaller):
    """A FakeCaller that keeps every request it was given, by RPC name."""

    def __init__(self, fleet: Fleet, auth: Any, requests: dict[str, list[Any]]) -> None:
        super().__init__(fleet, auth)
        self.requests = requests

    async def call(self, rpc: Any, request: Any, timeout: float) -> Any:
        self.requests.setdefault(rpc.name, []).append(request)
        return await super().call(rpc, request, timeout)


def test_sessions_promise_and_keep_the_heartbeat_interval_given() -> None:
    fleet = Fleet()
    requests: dict[str, list[Any]] = {}
    connector = FleetConnector(
        "grpc-rere",
        SETTINGS,
        lambda auth: RecordingCaller(fleet, auth, requests),
        detected_line=LINE_12,
        heartbeat_interval=120.0,
    )

    async def scenario() -> None:
        session = await connector.connect()
        assert isinstance(session, FleetSession)
        assert session.heartbeat_interval == 120.0
        await asyncio.sleep(0.05)  # the first ping goes out at once
        await session.close()

    run(scenario())
    assert [r.ping_interval for r in requests["CreateNode"]] == [120.0]
    assert [r.ping_interval for r in requests["Ping"]] == [120.0]


def test_a_session_without_an_interval_keeps_flowers_30_s() -> None:
    session = FleetSession(LINE_12, FakeCaller(Fleet()), NoNodeAuth(), retry=None)
    assert session.heartbeat_interval == 30.0


@pytest.mark.parametrize(
    ("line", "seconds", "error"),
    [
        ("1.42", 5.0, r"within \[10, 1800\] seconds on the Flower 1\.42 Fleet API, got 5"),
        ("1.42", 3600.0, r"within \[10, 1800\] seconds"),
        ("1.12", 0.0, "must be > 0 seconds"),
        ("1.15", -1.0, "must be > 0 seconds"),
    ],
)
def test_an_interval_the_lines_servers_refuse_is_a_value_error(
    line: str, seconds: float, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        FleetSession(
            get_line(line),
            FakeCaller(Fleet()),
            NoNodeAuth(),
            retry=None,
            heartbeat_interval=seconds,
        )


def test_the_lines_accept_what_their_servers_accept() -> None:
    assert get_line("1.42").check_heartbeat_interval(10.0) == 10.0
    assert get_line("1.42").check_heartbeat_interval(1800.0) == 1800.0
    assert get_line("1.12").check_heartbeat_interval(0.5) == 0.5
    assert get_line("1.15").check_heartbeat_interval(7200.0) == 7200.0


def test_a_connector_refuses_a_bad_interval_before_making_a_caller() -> None:
    made: list[Any] = []

    def new_caller(auth: Any) -> FakeCaller:
        caller = FakeCaller(Fleet(), auth)
        made.append(caller)
        return caller

    with pytest.raises(ValueError, match="must be > 0"):
        FleetConnector("rest", SETTINGS, new_caller, heartbeat_interval=0.0)
    connector = FleetConnector(
        "rest", SETTINGS, new_caller, detected_line=get_line("1.42"), heartbeat_interval=5.0
    )
    with pytest.raises(ValueError, match=r"\[10, 1800\]"):
        run(connector.connect())
    assert made == []
