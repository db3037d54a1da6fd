"""The reference server's Fleet node pool leaves no task behind once no reply is awaited."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.records import RecordSet
from flwr_sdk.server.driver import ReplyTimeoutError
from flwr_sdk.server.fleet_state import FleetNodePool, FleetState


def _instruction(run_id: int, node_id: int) -> Message:
    metadata = Metadata(
        run_id=run_id,
        message_id=str(uuid.uuid4()),
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message="",
        group_id="1",
        ttl=60.0,
        message_type="train",
    )
    return Message(metadata, content=RecordSet())


def test_the_liveness_watcher_ends_with_the_last_awaited_reply() -> None:
    """Before, the watcher slept on after the last request ended, and a server stopped
    then left it pending on a closing event loop ("Task was destroyed but it is pending")."""

    async def scenario() -> list[asyncio.Task[object]]:
        state = FleetState()
        run_id = state.create_run()
        node = state.create_node(60.0)
        pool = FleetNodePool(state, 0)
        with pytest.raises(ReplyTimeoutError):  # the node never answers
            await pool.request(_instruction(run_id, node), timeout=0.05)
        await asyncio.sleep(0)  # the watcher's cancellation is delivered
        me = asyncio.current_task()
        return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

    assert asyncio.run(scenario()) == []
