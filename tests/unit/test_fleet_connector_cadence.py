"""FleetConnector / FleetSession knobs a swarm uses: a line detected once, heartbeat cadence.

Against the in-memory 1.12 Fleet of ``support.fake_fleet`` (the real servers are in
tests/swarm/test_swarm_cadence.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from support.fake_fleet import NODE, FakeCaller, Fleet

from flwr_sdk.errors import ServerUnavailableError
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import FleetConnector, FleetSession
from flwr_sdk.transport.retry import RetryPolicy
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
