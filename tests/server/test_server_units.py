"""Unit tests of the reference server's pieces: FedAvg, Fleet state and 1.12 rules, wire check."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.legacy_types import Code, FitRes, Status
from flwr_sdk.common.message import Message, MessageType, Metadata
from flwr_sdk.common.ndarrays import ndarrays_to_parameters, parameters_to_ndarrays
from flwr_sdk.common.records import RecordSet
from flwr_sdk.server.driver import ReplyTimeoutError
from flwr_sdk.server.fleet_state import FleetError, FleetNodePool, FleetState
from flwr_sdk.server.fleet_v1_12 import FleetServicerV1_12
from flwr_sdk.server.strategy import FedAvg, FitResult
from flwr_sdk.server.wire_check import check_wire_format


def test_fedavg_weights_by_num_examples() -> None:
    strategy = FedAvg(min_fit_clients=2, min_available_clients=2)
    results = [
        FitResult(
            node,
            FitRes(
                Status(Code.OK, "Success"),
                ndarrays_to_parameters([np.full(2, value, dtype=np.float32)]),
                n,
                {"m": value},
            ),
        )
        for node, value, n in [(1, 1.0, 10), (2, 4.0, 30)]
    ]
    params, metrics = strategy.aggregate_fit(1, results, 0)
    assert params is not None
    (merged,) = parameters_to_ndarrays(params)
    assert merged.dtype == np.float32
    np.testing.assert_allclose(merged, [3.25, 3.25])
    assert metrics == {"m": 3.25}
    assert strategy.aggregate_fit(1, [], 1) == (None, {})


def test_wire_check() -> None:
    check_wire_format(bytes(pb.PingRequest(node=pb.Node(node_id=2**64 - 1), ping_interval=3)))
    for bad in (b"\xff\xff\xff", b"\x0a\x05\x08", b"\x00", b"\x0b"):
        with pytest.raises(ValueError):
            check_wire_format(bad)


def _task_res(task_ins: pb.TaskIns, node_id: int, **changes: object) -> pb.TaskRes:
    assert task_ins.task is not None
    task = pb.Task(
        producer=pb.Node(node_id=node_id),
        consumer=pb.Node(node_id=0, anonymous=True),
        created_at=time.time(),
        ttl=30.0,
        ancestry=[task_ins.task_id],
        task_type="train",
        recordset=pb.RecordSet(),
    )
    for key, value in changes.items():
        setattr(task, key, value)
    return pb.TaskRes(run_id=task_ins.run_id, task=task)


def _instruction(run_id: int, node_id: int, ttl: float = 60.0) -> Message:
    metadata = Metadata(
        run_id=run_id,
        message_id=str(uuid.uuid4()),
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message="",
        group_id="1",
        ttl=ttl,
        message_type=MessageType.TRAIN,
    )
    return Message(metadata, content=RecordSet())


def test_fleet_state_rules() -> None:
    """The line-neutral state: nodes, instructions and replies as Messages."""

    async def main() -> None:
        state = FleetState()
        run_id = state.create_run()
        node_id = state.create_node(30.0)
        assert node_id != 0 and state.is_online(node_id)
        instruction = _instruction(run_id, node_id)
        future = state.add_instruction(instruction)
        assert state.pull_instruction(node_id + 1) is None
        entry = state.pull_instruction(node_id)
        assert entry is not None and entry.message is instruction and entry.delivered_at
        assert state.pull_instruction(node_id) is None  # never redelivered
        reply = instruction.create_reply(RecordSet())
        reply.metadata.src_node_id = node_id + 1
        assert state.push_reply(reply) is None  # another node
        reply.metadata.src_node_id = node_id
        reply.metadata.reply_to_message = "nope"
        with pytest.raises(FleetError, match="UUID"):
            state.push_reply(reply)
        reply.metadata.reply_to_message = instruction.metadata.message_id
        message_id = state.push_reply(reply)
        assert message_id is not None and future.result() is reply
        assert reply.metadata.message_id == message_id
        with pytest.raises(FleetError, match="not found"):
            state.delete_node(2**63 + 1)
        state.delete_node(node_id)
        assert not state.is_online(node_id)

    asyncio.run(main())


def test_fleet_v1_12_rules() -> None:
    """The 1.12 servicer: TaskIns/TaskRes on the wire, the SuperLink's answers."""

    async def main() -> None:
        state = FleetState()
        fleet = FleetServicerV1_12(state)
        run_id = state.create_run()
        created = await fleet.create_node(pb.CreateNodeRequest(ping_interval=30.0))
        assert created.node is not None
        node_id = created.node.node_id
        assert node_id != 0 and state.is_online(node_id)
        other = (await fleet.create_node(pb.CreateNodeRequest(ping_interval=0.0))).node
        assert other is not None and not state.is_online(other.node_id)  # offline until a ping
        instruction = _instruction(run_id, node_id)
        future = state.add_instruction(instruction)

        async def pull(node: pb.Node) -> list[pb.TaskIns]:
            return (await fleet.pull_task_ins(pb.PullTaskInsRequest(node=node))).task_ins_list

        async def push(task_res: pb.TaskRes) -> str:
            answer = await fleet.push_task_res(pb.PushTaskResRequest(task_res_list=[task_res]))
            assert answer.reconnect is not None and answer.reconnect.reconnect == 5
            (task_id,) = answer.results
            return task_id

        assert await pull(other) == []
        assert await pull(pb.Node(node_id=node_id, anonymous=True)) == []
        (task_ins,) = await pull(pb.Node(node_id=node_id))
        assert task_ins.task_id == instruction.metadata.message_id
        assert task_ins.task is not None and task_ins.task.delivered_at
        assert task_ins.task.producer == pb.Node(node_id=0, anonymous=True)
        assert await pull(pb.Node(node_id=node_id)) == []  # never redelivered
        # silently dropped replies
        assert await push(_task_res(task_ins, other.node_id)) == "None"  # wrong producer
        assert await push(_task_res(task_ins, node_id, ttl=1000.0)) == "None"
        assert await push(_task_res(task_ins, node_id, created_at=1.0)) == "None"
        assert await push(_task_res(task_ins, node_id, ancestry=[])) == "None"
        assert await push(_task_res(task_ins, node_id, delivered_at="now")) == "None"
        with pytest.raises(FleetError, match="UUID"):
            await push(_task_res(task_ins, node_id, ancestry=["nope"]))
        with pytest.raises(FleetError, match="list index out of range"):
            await fleet.push_task_res(pb.PushTaskResRequest())
        assert not future.done()
        task_id = await push(_task_res(task_ins, node_id))
        reply = future.result()
        assert reply.metadata.message_id == task_id != "None"
        assert reply.metadata.src_node_id == node_id and reply.has_content()
        # runs and FABs
        run = (await fleet.get_run(pb.GetRunRequest(run_id=run_id))).run
        assert run is not None and run.run_id == run_id
        assert (await fleet.get_run(pb.GetRunRequest(run_id=run_id + 1))).run is None
        with pytest.raises(FleetError, match="Found no FAB"):
            await fleet.get_fab(pb.GetFabRequest(hash_str="abc"))
        # nodes
        unknown = pb.Node(node_id=2**63 + 1)
        ping = await fleet.ping(pb.PingRequest(node=unknown, ping_interval=30.0))
        assert ping.success is False
        with pytest.raises(FleetError, match="not found"):
            await fleet.delete_node(pb.DeleteNodeRequest(node=unknown))
        await fleet.delete_node(pb.DeleteNodeRequest(node=pb.Node(node_id=0, anonymous=True)))
        await fleet.delete_node(pb.DeleteNodeRequest(node=pb.Node(node_id=node_id)))
        assert not state.is_online(node_id)
        # REST dispatches through a table to the same typed methods
        routes = fleet.rest_routes()
        assert routes["/api/v0/fleet/ping"].call == fleet.ping
        assert len(routes) == 7

    asyncio.run(main())


def test_the_liveness_watcher_ends_with_the_last_awaited_reply() -> None:
    """The node pool leaves no task behind once no reply is awaited.

    Before, the watcher slept on after the last request ended, and a server stopped then
    left it pending on a closing event loop ("Task was destroyed but it is pending").
    """

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
