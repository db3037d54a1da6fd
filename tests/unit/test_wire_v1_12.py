"""Fleet API wire rules of Flower 1.12 (flower-1.12.md §0 items 3-4, §3.3-3.6).

The TaskRes built for a TaskIns is compared field by field with what the facts
prescribe; one test also decodes our bytes with the real flwr 1.12.0 classes.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from flwr_sdk_proto.v1_12.flwr import proto as pb
from support.flower_env import FlowerWorker

from flwr_sdk.clientapp.dispatch import error_reply_for
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import ConfigsRecord, RecordSet
from flwr_sdk.errors import ProtocolError
from flwr_sdk.wire import v1_12
from flwr_sdk.wire.v1_12 import LINE

NODE = 2**63 + 12345  # ids are uint64 and routinely >= 2^63
RUN = 2**64 - 7
TASK_ID = "2250dffa-6a39-4d43-9f0e-5f1c0c1e3b11"


def task_ins(
    *,
    consumer: int = NODE,
    created_at: float | None = None,
    ttl: float = 3600.0,
    recordset: pb.RecordSet | None = None,
    error: pb.Error | None = None,
    task_type: str = "train",
) -> pb.TaskIns:
    if recordset is None and error is None:
        recordset = pb.RecordSet()
    return pb.TaskIns(
        task_id=TASK_ID,
        group_id="2",
        run_id=RUN,
        task=pb.Task(
            producer=pb.Node(node_id=0, anonymous=True),
            consumer=pb.Node(node_id=consumer, anonymous=False),
            created_at=time.time() - 1.5 if created_at is None else created_at,
            delivered_at="2026-11-28T04:17:31.170234+00:00",
            pushed_at=time.time() - 1.0,
            ttl=ttl,
            ancestry=[],
            task_type=task_type,
            recordset=recordset,
            error=error,
        ),
    )


def reply_content() -> RecordSet:
    return RecordSet(configs_records={"fitres.status": ConfigsRecord({"code": 0})})


def test_task_ins_to_message_keeps_every_field() -> None:
    ins = task_ins()
    message = v1_12.task_ins_to_message(ins)
    md = message.metadata
    assert md.message_id == TASK_ID
    assert md.run_id == RUN
    assert md.src_node_id == 0
    assert md.dst_node_id == NODE
    assert md.reply_to_message == ""
    assert md.group_id == "2"
    assert md.ttl == 3600.0
    assert md.message_type == "train"
    assert ins.task is not None
    assert md.created_at == ins.task.created_at
    assert message.has_content()


def test_task_res_field_by_field() -> None:
    ins = task_ins()
    instruction = v1_12.task_ins_to_message(ins)
    before = time.time()
    reply = instruction.create_reply(reply_content())
    res = v1_12.reply_task_res(instruction, reply, NODE)
    after = time.time()
    assert ins.task is not None and res.task is not None
    assert res.task_id == ""
    assert res.group_id == "2"
    assert res.run_id == RUN
    task = res.task
    assert task.producer == pb.Node(node_id=NODE, anonymous=False)
    assert task.consumer == pb.Node(node_id=0, anonymous=True)
    assert before <= task.created_at <= after
    assert task.created_at > ins.task.created_at
    # ttl = incoming ttl - (reply.created_at - incoming.created_at)
    expected_ttl = ins.task.ttl - (task.created_at - ins.task.created_at)
    assert task.ttl == pytest.approx(expected_ttl, abs=1e-6)
    assert 3598.0 < task.ttl < 3598.6
    assert task.ancestry == [TASK_ID]
    assert task.task_type == "train"
    assert task.recordset is not None and task.error is None
    assert task.delivered_at == ""
    assert task.pushed_at == 0.0
    request = LINE.push_request(v1_12.node(NODE), instruction, reply)
    assert request is not None
    assert request.node == pb.Node(node_id=NODE, anonymous=False)
    (pushed,) = request.task_res_list
    assert pushed.task is not None and pushed.task.ancestry == [TASK_ID]


def test_error_reply_carries_code_2_and_flowers_reason() -> None:
    instruction = v1_12.task_ins_to_message(task_ins())
    reply = error_reply_for(instruction, ValueError("some failure"))
    res = v1_12.reply_task_res(instruction, reply, NODE)
    assert res.task is not None
    assert res.task.recordset is None
    assert res.task.error == pb.Error(code=2, reason="<class 'ValueError'>:<'some failure'>")
    assert res.task.ancestry == [TASK_ID]


def test_ttl_is_clipped_to_the_instructions_lifetime() -> None:
    created = time.time() - 10.0
    instruction = v1_12.task_ins_to_message(task_ins(created_at=created, ttl=60.0))
    reply = instruction.create_reply(reply_content(), ttl=1000.0)  # user asks for too much
    res = v1_12.reply_task_res(instruction, reply, NODE)
    assert res.task is not None
    assert res.task.ttl == pytest.approx(created + 60.0 - res.task.created_at)
    assert not v1_12.reply_expired(res)


def test_expired_reply_is_detected() -> None:
    instruction = v1_12.task_ins_to_message(task_ins(created_at=time.time() - 100, ttl=50.0))
    res = v1_12.reply_task_res(instruction, instruction.create_reply(reply_content()), NODE)
    assert res.task is not None and res.task.ttl < 0
    assert v1_12.reply_expired(res)
    reply = instruction.create_reply(reply_content())
    assert LINE.push_request(v1_12.node(NODE), instruction, reply) is None


def test_reply_to_another_instruction_is_refused() -> None:
    instruction = v1_12.task_ins_to_message(task_ins())
    other = v1_12.task_ins_to_message(task_ins(task_type="evaluate"))
    with pytest.raises(ProtocolError, match="message_type"):
        v1_12.reply_task_res(instruction, other.create_reply(reply_content()), NODE)
    with pytest.raises(ProtocolError, match="src_node_id"):
        v1_12.reply_task_res(instruction, instruction.create_reply(reply_content()), NODE + 1)


@pytest.mark.parametrize(
    ("entries", "accepted"),
    [
        ([], False),
        ([task_ins()], True),
        ([task_ins(consumer=NODE + 1)], False),  # for another node
        ([task_ins(error=pb.Error(code=0, reason="x"))], False),  # error-only
        ([task_ins(consumer=NODE + 1), task_ins()], False),  # only the first counts
    ],
)
def test_acceptance_rule(entries: list[pb.TaskIns], accepted: bool) -> None:
    response = pb.PullTaskInsResponse(task_ins_list=entries)
    got = LINE.instruction_from_pull(response, NODE)
    assert (got is not None) is accepted
    if got is not None:
        assert got.metadata.message_id == entries[0].task_id


def test_requests() -> None:
    own = v1_12.node(NODE)
    interval = LINE.heartbeat_interval
    assert interval == 30.0
    assert bytes(LINE.register_request(interval)) == bytes(pb.CreateNodeRequest(ping_interval=30.0))
    assert LINE.heartbeat_request(own, interval) == pb.PingRequest(node=own, ping_interval=30.0)
    assert LINE.pull_request(own).task_ids == []
    assert LINE.get_run_request(own, RUN) == pb.GetRunRequest(node=own, run_id=RUN)
    assert LINE.get_fab_request(own, "ab", RUN) == pb.GetFabRequest(node=own, hash_str="ab")
    assert LINE.unregister_request(own) == pb.DeleteNodeRequest(node=own)
    created = pb.CreateNodeResponse(node=pb.Node(node_id=NODE))
    assert LINE.node_id(LINE.node_from_register(created)) == NODE
    with pytest.raises(ProtocolError):
        LINE.node_from_register(pb.CreateNodeResponse())
    with pytest.raises(ProtocolError):
        LINE.node_from_register(pb.CreateNodeResponse(node=pb.Node(node_id=0, anonymous=True)))


def test_run_and_fab_from_wire() -> None:
    empty = LINE.run_from_response(pb.GetRunResponse(), RUN)
    assert (empty.run_id, dict(empty.run_config), empty.fab_hash) == (RUN, {}, "")
    content = b"PK\x05\x06" + b"\0" * 18
    good = hashlib.sha256(content).hexdigest()
    response = pb.GetFabResponse(fab=pb.Fab(hash_str=good, content=content))
    assert LINE.fab_from_response(response, good) == content
    assert LINE.fab_from_response(response, "0" * 64) is None  # not the FAB asked for
    assert LINE.fab_from_response(pb.GetFabResponse(), good) is None


def test_task_res_as_flwr_1_12_reads_it(flwr_1_12_worker: FlowerWorker) -> None:
    """Build the TaskIns with flwr's own classes, answer it, decode our TaskRes with flwr."""
    created = time.time() - 2.0
    ins_dict = {
        "task_id": TASK_ID,
        "group_id": "1",
        "run_id": str(RUN),
        "task": {
            "producer": {"node_id": "0", "anonymous": True},
            "consumer": {"node_id": str(NODE)},
            "created_at": created,
            "delivered_at": "2026-11-28T04:17:31.170234+00:00",
            "pushed_at": created + 0.5,
            "ttl": 3600.0,
            "task_type": "evaluate",
            "recordset": {"configs": {"evaluateins.config": {"data": {}}}},
        },
    }
    data, _ = flwr_1_12_worker.build("flwr.proto.TaskIns", ins_dict)
    instruction: Message = v1_12.task_ins_to_message(pb.TaskIns.parse(data))
    assert instruction.metadata.run_id == RUN and instruction.metadata.dst_node_id == NODE
    request = LINE.push_request(
        v1_12.node(NODE), instruction, instruction.create_reply(reply_content())
    )
    assert request is not None
    parsed, _ = flwr_1_12_worker.parse("flwr.proto.PushTaskResRequest", bytes(request))
    assert parsed["node"] == {"node_id": str(NODE)}
    (task_res,) = parsed["task_res_list"]
    assert set(task_res) == {"group_id", "run_id", "task"}  # task_id "" is absent
    assert task_res["group_id"] == "1" and task_res["run_id"] == str(RUN)
    task = task_res["task"]
    assert task["producer"] == {"node_id": str(NODE)}
    assert task["consumer"] == {"anonymous": True}
    assert task["ancestry"] == [TASK_ID]
    assert task["task_type"] == "evaluate"
    assert task["created_at"] > created
    assert task["ttl"] == pytest.approx(3600.0 - (task["created_at"] - created))
    assert "delivered_at" not in task and "pushed_at" not in task and "error" not in task
    assert "fitres.status" in task["recordset"]["configs"]
