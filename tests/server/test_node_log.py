"""The server's node log: per-node lines at DEBUG, a burst as one INFO line."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from flwr_sdk.server.fleet_state import FleetState
from flwr_sdk.server.node_log import NodeEventLog

LOGGER = "flwr_sdk.server"


def _info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


def test_a_burst_of_registrations_is_one_info_line_after_the_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[int]:
        state = FleetState()
        state.events.interval = 0.2
        ids = [state.create_node(60.0) for _ in range(500)]
        state.delete_node(ids[-1])
        await asyncio.sleep(0.4)  # the held line is written by the loop's timer
        return ids

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        ids = asyncio.run(main())
    first, burst = _info(caplog)
    assert first == f"node {ids[0]} registered (1 nodes)"
    assert re.fullmatch(
        r"nodes in the last \ds: 499 registered, 1 unregistered \(499 nodes\)", burst
    )
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug[:2] == [
        f"node {ids[0]} registered (1 nodes)",
        f"node {ids[1]} registered (2 nodes)",
    ]
    assert len(debug) == 501


def test_a_lone_event_keeps_its_node_line_and_flush_writes_what_is_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    count = [0]
    events = NodeEventLog(logging.getLogger(LOGGER), lambda: count[0], interval=60.0)

    async def main() -> None:
        count[0] = 1
        events.event(11, "activated")
        count[0] = 2
        events.event(12, "activated")  # held: the interval has not passed
        assert _info(caplog) == ["node 11 activated (1 nodes)"]
        events.flush()  # as the server does when it stops

    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(main())
        events.flush()  # nothing held: no line
    assert _info(caplog) == ["node 11 activated (1 nodes)", "node 12 activated (2 nodes)"]


def test_without_an_event_loop_held_lines_are_written_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = FleetState()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first, second = state.create_node(60.0), state.create_node(60.0)
    assert _info(caplog) == [
        f"node {first} registered (1 nodes)",
        f"node {second} registered (2 nodes)",
    ]
