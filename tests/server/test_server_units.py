"""Unit tests of the reference server's pieces: FedAvg, Fleet state rules, wire check."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.common.legacy_types import Code, FitRes, Status
from flwr_sdk.common.ndarrays import ndarrays_to_parameters, parameters_to_ndarrays
from flwr_sdk.server.fleet_state import FleetError, FleetState
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


def test_fleet_state_rules() -> None:
    async def main() -> None:
        state = FleetState()
        run_id = state.create_run()
        node_id = state.create_node(30.0)
        assert node_id != 0 and state.is_online(node_id)
        other = state.create_node(0.0)
        assert not state.is_online(other)  # ping_interval=0: offline until it pings
        task_ins = pb.TaskIns(
            task_id=str(uuid.uuid4()),
            run_id=run_id,
            task=pb.Task(
                producer=pb.Node(anonymous=True),
                consumer=pb.Node(node_id=node_id),
                created_at=time.time(),
                ttl=60.0,
                task_type="train",
                recordset=pb.RecordSet(),
            ),
        )
        future = state.add_task_ins(task_ins)
        assert state.pull_task_ins(pb.Node(node_id=other)) == []
        assert state.pull_task_ins(pb.Node(node_id=node_id, anonymous=True)) == []
        (pulled,) = state.pull_task_ins(pb.Node(node_id=node_id))
        assert pulled.task is not None and pulled.task.delivered_at
        assert state.pull_task_ins(pb.Node(node_id=node_id)) == []  # never redelivered
        # silently dropped replies
        assert state.push_task_res(_task_res(task_ins, other)) is None  # wrong producer
        assert state.push_task_res(_task_res(task_ins, node_id, ttl=1000.0)) is None
        assert state.push_task_res(_task_res(task_ins, node_id, created_at=1.0)) is None
        assert state.push_task_res(_task_res(task_ins, node_id, ancestry=[])) is None
        with pytest.raises(FleetError, match="UUID"):
            state.push_task_res(_task_res(task_ins, node_id, ancestry=["nope"]))
        assert not future.done()
        task_id = state.push_task_res(_task_res(task_ins, node_id))
        assert task_id is not None and future.result().task_id == task_id
        # nodes
        assert state.ping(pb.Node(node_id=2**63 + 1), 30.0) is False
        with pytest.raises(FleetError, match="not found"):
            state.delete_node(pb.Node(node_id=2**63 + 1))
        state.delete_node(pb.Node(node_id=0, anonymous=True))  # no-op
        state.delete_node(pb.Node(node_id=node_id))
        assert not state.is_online(node_id)

    asyncio.run(main())
