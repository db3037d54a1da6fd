"""The swarm's pieces without a server: config, partition blocks for Ray, counters, wake-up."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.records import RecordSet
from flwr_sdk.events import (
    Connected,
    InstructionReceived,
    NodeSummary,
    Registered,
    ReplySent,
    Stopped,
)
from flwr_sdk.node_loop import STOP_CLOSE_GRACE, NodeLoop
from flwr_sdk.swarm import NodeState, SwarmConfig, SwarmSnapshot, SwarmStats
from flwr_sdk.swarm.ray_runner import split
from flwr_sdk.swarm.runner import _cancel_all, _leave_all, close_budget
from flwr_sdk.swarm.shared import PriorityGate
from flwr_sdk.swarm.wake import WakeUp, WakingConnection
from flwr_sdk.transport.base import Connection, Connector
from swarm.swarm_app import client_fn, partition


def config(nodes: int = 10, **kwargs: object) -> SwarmConfig:
    return SwarmConfig(server_address="127.0.0.1:9092", nodes=nodes, app=client_fn, **kwargs)  # type: ignore[arg-type]


def test_each_node_gets_its_partition_and_the_swarm_size() -> None:
    cfg = config(5, first_partition=3, num_partitions=20, node_config={"data": "x"})
    assert cfg.partition_ids() == [3, 4, 5, 6, 7]
    node = cfg.node_client_config(6, None)
    assert dict(node.node_config) == {"data": "x", "partition-id": 6, "num-partitions": 20}
    assert dict(config(4).node_client_config(0, None).node_config)["num-partitions"] == 4


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"nodes": 0}, "nodes must be an int >= 1"),
        ({"nodes": 2, "start_rate": 0}, "start_rate must be > 0"),
        ({"nodes": 2, "idle_exit": -1.0}, "idle_exit must be > 0"),
        ({"nodes": 2, "heartbeat_interval": 0.0}, "heartbeat_interval must be > 0"),
        ({"nodes": 2, "first_partition": -1}, "first_partition must be >= 0"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        config(**kwargs)  # type: ignore[arg-type]


def test_a_bad_start_client_argument_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="transport"):
        config(2, transport="carrier-pigeon").node_client_config(0, None)


def test_ray_blocks_cover_every_partition_once() -> None:
    parts = split(config(10, first_partition=5), 3)
    assert [p.nodes for p in parts] == [4, 3, 3]
    ids = [pid for part in parts for pid in part.partition_ids()]
    assert ids == list(range(5, 15))
    assert {p.partitions for p in parts} == {10}
    with pytest.raises(ValueError, match="give each actor a node"):
        split(config(2), 3)


def test_partitions_are_views_of_one_array_and_differ() -> None:
    first, second = partition(0, 4), partition(3, 4)
    assert (len(first), len(second)) == (1, 4)
    assert first.base is second.base is not None
    assert not first.flags.writeable


def test_counters_follow_the_nodes_events() -> None:
    stats = SwarmStats([10, 11])
    assert stats.count(NodeState.PENDING) == 2
    stats.started(0)
    stats.record(0, Connected("a", "grpc-rere", "1.12"))
    stats.record(0, Registered(7))
    stats.record(0, InstructionReceived(1, "m", "train", "1", 100))
    assert stats.state(0) is NodeState.WORKING
    stats.record(0, ReplySent("train", "1", 40, 0.5, False))
    stats.record(0, Stopped(NodeSummary({"train": 1}), None))
    stats.ended(0, None)
    stats.started(1)
    stats.ended(1, RuntimeError("boom"))
    snap = stats.snapshot()
    assert snap.states["stopped"] == 1 and snap.failed == 1
    assert (snap.bytes_received, snap.bytes_sent, snap.replies) == (100, 40, 1)
    assert snap.slowest == ((0.5, 10),)
    result = stats.result(1.0)
    assert result.nodes[0].node_id == 7 and result.nodes[0].handled == {"train": 1}
    assert result.failed_nodes[0].error == "RuntimeError: boom"
    merged = SwarmSnapshot.merge([snap, snap])
    assert (merged.nodes, merged.replies, merged.states["failed"]) == (4, 2, 2)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_a_wake_up_ends_every_idle_wait_within_its_window() -> None:
    async def scenario() -> tuple[list[bool], float, int]:
        wake = WakeUp(window=0.2, rng=random.Random(1))
        sleepers = [asyncio.ensure_future(wake.sleep(30.0)) for _ in range(50)]
        await asyncio.sleep(0.01)
        assert wake.sleeping == 50
        started = time.monotonic()
        wake.work_seen()
        woken = await asyncio.gather(*sleepers)
        return woken, time.monotonic() - started, wake.wakes

    woken, seconds, wakes = _run(scenario())
    assert woken == [True] * 50 and wakes == 1
    assert seconds < 5.0  # not the 30 s of an idle wait


def test_a_wait_nobody_wakes_lasts_its_interval() -> None:
    async def scenario() -> tuple[bool, float]:
        wake = WakeUp(window=0.2)
        started = time.monotonic()
        woken = await wake.sleep(0.3)
        return woken, time.monotonic() - started

    woken, seconds = _run(scenario())
    assert not woken and seconds >= 0.29


class ScriptedSession(Connection):
    """A session that answers receive() from a script (a Message or None)."""

    def __init__(self, script: list[Message | None]) -> None:
        self.script = script
        self.poll_interval = 30.0
        self.receives = 0

    @property
    def node_id(self) -> int:
        return 7

    async def receive(self) -> Message | None:
        self.receives += 1
        return self.script.pop(0) if self.script else None

    async def send(self, reply: Message) -> None:
        pass

    async def close(self) -> None:
        pass


def test_one_burst_of_work_wakes_the_idle_nodes_once() -> None:
    meta = Metadata(1, "m", 1, 7, "", "1", 60.0, "train")
    work = Message(meta, RecordSet())

    async def scenario() -> None:
        wake = WakeUp(window=0.1, rng=random.Random(2))
        sessions = [ScriptedSession([None, work]) for _ in range(20)]
        nodes = [WakingConnection(session, wake) for session in sessions]
        assert nodes[0].poll_interval == 30.0 and nodes[0].node_id == 7
        for node in nodes:  # every node polls, finds nothing, goes idle
            assert await node.receive() is None
        idle = [asyncio.ensure_future(node.idle()) for node in nodes[1:]]
        await asyncio.sleep(0.01)
        assert await nodes[0].receive() is work  # the first node's work wakes the others
        await asyncio.gather(*idle)
        assert wake.wakes == 1 and wake.sleeping == 0
        # Nodes that went idle after the wake-up stay asleep while the woken ones'
        # instructions arrive (one burst, one wake-up) ...
        late = [WakingConnection(ScriptedSession([]), wake) for _ in range(5)]
        late_idle = [asyncio.ensure_future(node.idle()) for node in late]
        await asyncio.sleep(0.01)
        for node in nodes[1:-1]:
            assert await node.receive() is work
        assert wake.wakes == 1 and wake.sleeping == 5
        # ... until every woken node has polled: that wave found work, so the burst may
        # still be arriving and the sleeping nodes get one more wave ...
        assert await nodes[-1].receive() is work
        await asyncio.gather(*late_idle)
        assert wake.wakes == 2
        # ... which found nothing: the burst is over, nobody is woken again.
        for node in late:
            assert await node.receive() is None
        again = [asyncio.ensure_future(node.idle()) for node in late]
        await asyncio.sleep(0.3)
        assert wake.wakes == 2 and wake.sleeping == 5
        # The next instruction is a new burst.
        assert await WakingConnection(ScriptedSession([work]), wake).receive() is work
        await asyncio.gather(*again)
        assert wake.wakes == 3
        assert all(session.receives == 2 for session in sessions)

    _run(scenario())


def test_waiting_heartbeats_get_the_next_slot_first() -> None:
    async def scenario() -> list[str]:
        gate = PriorityGate(1)
        order: list[str] = []
        await gate.acquire(urgent=False)  # the one slot is taken

        async def call(name: str, urgent: bool) -> None:
            await gate.acquire(urgent)
            order.append(name)
            gate.release()

        waiting = [asyncio.ensure_future(call("pull-1", False))]
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(call("cancelled", False))
        waiting.append(asyncio.ensure_future(call("pull-2", False)))
        await asyncio.sleep(0)
        waiting.append(asyncio.ensure_future(call("ping", True)))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert gate.waiting == 3
        gate.release()
        await asyncio.gather(*waiting)
        await gate.acquire(urgent=False)  # the slot came back: nothing was lost
        return order

    assert _run(scenario()) == ["ping", "pull-1", "pull-2"]


def test_a_call_cancelled_as_a_release_passes_over_it_leaves_the_gate_whole() -> None:
    """Cancelled, then passed over by a release before its task ran: no error, no lost slot."""

    async def scenario() -> None:
        gate = PriorityGate(1)
        await gate.acquire(urgent=False)
        gone = asyncio.ensure_future(gate.acquire(urgent=False))
        await asyncio.sleep(0)
        gone.cancel()
        gate.release()  # skips the cancelled waiter and frees the slot
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert gate.waiting == 0
        await asyncio.wait_for(gate.acquire(urgent=False), 1)

    _run(scenario())


class LeavingSession(ScriptedSession):
    """An idle session whose leaving call waits for the one slot of a shared gate."""

    def __init__(self, gate: asyncio.Semaphore, left: list[int]) -> None:
        super().__init__([])
        self.gate = gate
        self.left = left

    async def idle(self) -> None:
        await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        async with self.gate:
            await asyncio.sleep(0.05)  # one leaving call at a time: 20 nodes take 1 s
        self.left.append(1)


class LeavingConnector(Connector):
    name = "grpc-rere"

    def __init__(self, gate: asyncio.Semaphore, left: list[int]) -> None:
        self.gate = gate
        self.left = left
        self.connects = 0

    async def connect(self) -> Connection:
        self.connects += 1
        return LeavingSession(self.gate, self.left)


async def _stop_swarm(nodes: int, leave: bool) -> tuple[int, int, float]:
    """Run idle nodes, stop them; how many left, connected, and the stop's seconds."""
    gate, left = asyncio.Semaphore(1), []
    connector = LeavingConnector(gate, left)
    loops = [NodeLoop(config(nodes).node_client_config(i, None), connector) for i in range(nodes)]
    tasks = [asyncio.ensure_future(loop.run()) for loop in loops]
    while connector.connects < nodes:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # every node is idle now
    started = time.monotonic()
    if leave:
        await _leave_all(loops, tasks, budget=5.0)
    else:
        await _cancel_all(tasks)
    return len(left), connector.connects, time.monotonic() - started


def test_a_stopped_swarms_nodes_all_leave_within_one_budget() -> None:
    left, connects, seconds = _run(_stop_swarm(20, leave=True))
    assert (left, connects) == (20, 20)  # every node left, none connected again
    assert 0.9 < seconds < 5.0
    # Cancelled node by node, a close gets STOP_CLOSE_GRACE: the queue's tail never leaves.
    left, _, seconds = _run(_stop_swarm(20, leave=False))
    assert left < 20 and seconds < 2 * STOP_CLOSE_GRACE + 0.5


def test_the_leaving_budget_grows_with_the_swarm() -> None:
    assert close_budget(1) >= 10.0
    assert 10.0 < close_budget(2_000) < close_budget(10_000) <= 20.0


class ErrorOnStopSession(LeavingSession):
    """A transport that turns the cancellation of its poll into an error of its own."""

    async def idle(self) -> None:
        try:
            await asyncio.sleep(self.poll_interval)
        except asyncio.CancelledError:
            raise ValueError("stream terminated") from None


def test_a_stopped_node_whose_transport_turns_the_stop_into_an_error_ends_stopped() -> None:
    async def scenario() -> tuple[bool, int, int]:
        gate, left = asyncio.Semaphore(1), []
        connector = LeavingConnector(gate, left)
        connector.connect = lambda: _connected(connector, ErrorOnStopSession(gate, left))  # type: ignore[method-assign]
        loop = NodeLoop(config(1).node_client_config(0, None), connector)
        task = asyncio.ensure_future(loop.run())
        await asyncio.sleep(0.05)
        await _leave_all([loop], [task], budget=5.0)
        return task.cancelled(), len(left), connector.connects

    assert _run(scenario()) == (True, 1, 1)  # stopped (not failed), left, no reconnect


async def _connected(connector: LeavingConnector, session: Connection) -> Connection:
    connector.connects += 1
    return session
