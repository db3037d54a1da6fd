"""Typed handlers: registration, dispatch next to a legacy client, and error replies.

Malformed requests (wrong record kind, missing field, wrong value type) and unknown
message types are answered with an Error reply naming the field or type, and the node
loop keeps serving: the next valid request gets its normal reply.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from flwr_sdk.clientapp import Client, GetPropertiesIns, GetPropertiesRes, Status, handle_message
from flwr_sdk.clientapp.handlers import MessageHandlers, UnknownMessageTypeError
from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import ErrorCode, Message, Metadata
from flwr_sdk.common.records import ConfigsRecord, MetricsRecord, RecordSet
from flwr_sdk.ext import (
    RecordSetDecodeError,
    RecordSetEncodeError,
    from_recordset,
    ndarray_from_numpy,
    ndarray_to_numpy,
    to_recordset,
)
from flwr_sdk.node_loop import NodeLoop
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.validation import validate
from flwr_sdk.wire.base import Reconnect

NODE_ID = 9223372036854775809
POINT = "exttest.v1.Point"
SHAPE = "exttest.v1.Shape"


def make_message(message_type: str, content: RecordSet, message_id: str = "m1") -> Message:
    metadata = Metadata(
        run_id=7,
        message_id=message_id,
        src_node_id=0,
        dst_node_id=NODE_ID,
        reply_to_message="",
        group_id="g",
        ttl=600.0,
        message_type=message_type,
    )
    return Message(metadata, content=content)


def make_context() -> Context:
    return Context(node_id=NODE_ID, node_config={}, state=RecordSet(), run_config={})


@pytest.fixture
def handlers(exttest_pb: ModuleType) -> MessageHandlers:
    pb = exttest_pb
    registry = MessageHandlers()

    @registry.register(pb.Point)
    def double(request: Any, context: Context) -> Any:
        return pb.Point(
            x=request.x * 2, y=request.y * 2, label=f"{request.label}@{context.node_id}"
        )

    @registry.register(pb.Shape, message_type="query.describe")
    def describe(request: Any, context: Context) -> Any:
        mask = ndarray_to_numpy(request.mask) if request.mask is not None else np.zeros(0)
        return pb.Everything(
            f_string=request.name,
            f_int64=len(request.points),
            weights=ndarray_from_numpy(mask * 10),
        )

    return registry


class PropertiesClient(Client):
    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(Status(0, "Success"), {"legacy": True})


# --------------------------------------------------------------------------- dispatch


def test_typed_handler_answers_with_typed_reply(exttest_pb: ModuleType, handlers: MessageHandlers):
    pb = exttest_pb
    request = make_message(POINT, to_recordset(pb.Point(x=1.5, y=-2.0, label="a")))
    reply = handle_message(request, make_context(), handlers.client_fn())
    assert reply.metadata.message_type == POINT
    assert reply.metadata.reply_to_message == "m1"
    assert from_recordset(pb.Point, reply.content) == pb.Point(x=3.0, y=-4.0, label=f"a@{NODE_ID}")


def test_custom_message_type_and_array_reply(exttest_pb: ModuleType, handlers: MessageHandlers):
    pb = exttest_pb
    shape = pb.Shape(name="tri", points=[pb.Point(), pb.Point()], mask=ndarray_from_numpy([1, 2]))
    reply = handle_message(
        make_message("query.describe", to_recordset(shape)), make_context(), handlers.client_fn()
    )
    result = from_recordset(pb.Everything, reply.content)
    assert result.f_string == "tri" and result.f_int64 == 2
    np.testing.assert_array_equal(ndarray_to_numpy(result.weights), [10, 20])


def test_legacy_types_still_reach_the_legacy_client(handlers: MessageHandlers):
    content = lr.getpropertiesins_to_recordset(GetPropertiesIns({}))
    reply = handle_message(
        make_message("get_properties", content),
        make_context(),
        handlers.client_fn(lambda context: PropertiesClient()),
    )
    assert reply.content.configs_records["getpropertiesres.properties"]["legacy"] is True


def test_without_legacy_client_legacy_types_are_not_implemented(handlers: MessageHandlers):
    content = lr.getpropertiesins_to_recordset(GetPropertiesIns({}))
    reply = handle_message(
        make_message("get_properties", content), make_context(), handlers.client_fn()
    )
    assert reply.content.configs_records["getpropertiesres.status"]["code"] == 1


def test_typed_types_do_not_call_the_legacy_client_fn(
    exttest_pb: ModuleType, handlers: MessageHandlers
):
    calls: list[Context] = []

    def legacy(context: Context) -> Client:
        calls.append(context)
        return PropertiesClient()

    handle_message(
        make_message(POINT, to_recordset(exttest_pb.Point())),
        make_context(),
        handlers.client_fn(legacy),
    )
    assert calls == []


def test_unknown_type_names_the_type_and_the_known_ones(handlers: MessageHandlers):
    with pytest.raises(UnknownMessageTypeError) as info:
        handle_message(
            make_message("demo.v1.Nope", RecordSet()), make_context(), handlers.client_fn()
        )
    text = str(info.value)
    assert "'demo.v1.Nope'" in text
    assert POINT in text and "query.describe" in text and "train" in text


@pytest.mark.parametrize(
    ("content", "field", "problem"),
    [
        (
            RecordSet(metrics_records={POINT: MetricsRecord({"x": 1.0, "y": 2.0})}),
            "x",
            "record 'exttest.v1.Point' is a MetricsRecord, expected a ConfigsRecord",
        ),
        (
            RecordSet(configs_records={POINT: ConfigsRecord({"x": 1.0, "label": "a"})}),
            "y",
            "missing key 'y'",
        ),
        (
            RecordSet(configs_records={POINT: ConfigsRecord({"x": 1.0, "y": "2", "label": ""})}),
            "y",
            "expected float (double), got str",
        ),
        (
            RecordSet(configs_records={POINT: ConfigsRecord({"x": 1.0, "y": 2.0, "label": 5})}),
            "label",
            "expected str (string), got int",
        ),
    ],
)
def test_malformed_requests_name_the_field(handlers, content, field, problem):
    with pytest.raises(RecordSetDecodeError) as info:
        handle_message(make_message(POINT, content), make_context(), handlers.client_fn())
    assert info.value.field == field
    assert f"field '{field}'" in str(info.value)
    assert problem in str(info.value)


def test_nested_and_array_fields_are_named_by_path(exttest_pb: ModuleType):
    pb = exttest_pb
    good = to_recordset(
        pb.Shape(name="s", center=pb.Point(), child=pb.Shape(mask=ndarray_from_numpy([1])))
    )
    configs = good.configs_records[SHAPE]
    configs["child.points"] = -1
    with pytest.raises(RecordSetDecodeError, match=r"field 'child\.points': expected int >= 0"):
        from_recordset(pb.Shape, good)
    configs["child.points"] = 0
    del configs["center.label"]
    with pytest.raises(RecordSetDecodeError, match=r"field 'center\.label': missing key"):
        from_recordset(pb.Shape, good)
    configs["center.label"] = ""
    del good.parameters_records[SHAPE]["child.mask"]
    with pytest.raises(
        RecordSetDecodeError,
        match=r"field 'child\.mask': missing key 'child\.mask' in ParametersRecord",
    ):
        from_recordset(pb.Shape, good)


def test_integer_ranges_are_checked_both_ways(exttest_pb: ModuleType):
    pb = exttest_pb
    with pytest.raises(
        RecordSetEncodeError, match=r"field 'f_int32': value 2147483648 is out of the int32 range"
    ):
        to_recordset(pb.Everything(f_int32=2**31))
    recordset = to_recordset(pb.Everything())
    recordset.configs_records["exttest.v1.Everything"]["f_uint32"] = -1
    with pytest.raises(
        RecordSetDecodeError, match=r"field 'f_uint32': value -1 is out of the uint32 range"
    ):
        from_recordset(pb.Everything, recordset)
    recordset.configs_records["exttest.v1.Everything"]["f_uint32"] = True
    with pytest.raises(
        RecordSetDecodeError, match=r"field 'f_uint32': expected int \(uint32\), got bool"
    ):
        from_recordset(pb.Everything, recordset)


def test_two_oneof_members_are_refused(exttest_pb: ModuleType):
    pb = exttest_pb
    recordset = to_recordset(pb.Everything(c_text="a"))
    recordset.configs_records["exttest.v1.Everything"]["c_point"] = False
    with pytest.raises(
        RecordSetDecodeError,
        match=r"field 'choice': oneof 'choice' has more than one member set: c_text, c_point",
    ):
        from_recordset(pb.Everything, recordset)


def test_ints_are_accepted_for_float_fields(exttest_pb: ModuleType):
    recordset = RecordSet(configs_records={POINT: ConfigsRecord({"x": 1, "y": 2.5, "label": ""})})
    point = from_recordset(exttest_pb.Point, recordset)
    assert point.x == 1.0 and isinstance(point.x, float)


def test_registration_errors(exttest_pb: ModuleType, handlers: MessageHandlers):
    pb = exttest_pb
    with pytest.raises(ValueError, match="already has a handler"):
        handlers.add(pb.Point, lambda r, c: r)
    with pytest.raises(ValueError, match="legacy Client API"):
        handlers.add(pb.Point, lambda r, c: r, message_type="train")
    with pytest.raises(ValueError, match="non-empty str"):
        handlers.add(pb.Point, lambda r, c: r, message_type="")
    with pytest.raises(TypeError, match="no RecordSet adapter for RecordSet"):
        handlers.add(RecordSet, lambda r, c: r)
    with pytest.raises(TypeError, match="handler must be callable"):
        handlers.add(pb.Empty, 3)  # type: ignore[arg-type]
    assert handlers.message_types == (POINT, "query.describe")


def test_handler_returning_a_non_message_fails_clearly(exttest_pb: ModuleType):
    registry = MessageHandlers()
    registry.add(exttest_pb.Point, lambda request, context: {"x": 1})
    with pytest.raises(
        TypeError, match="must return a message generated by flwr-sdk codegen, got dict"
    ):
        handle_message(
            make_message(POINT, to_recordset(exttest_pb.Point())),
            make_context(),
            registry.client_fn(),
        )


# -------------------------------------------------------------------------- node loop


class ScriptedConnection(Connection):
    """Hands out the given messages, records the replies, then says goodbye."""

    def __init__(self, messages: list[Message]) -> None:
        self._messages = list(messages)
        self.replies: list[Message] = []

    @property
    def node_id(self) -> int:
        return NODE_ID

    async def receive(self) -> Message | Reconnect | None:
        if self._messages:
            return self._messages.pop(0)
        return Reconnect(None)

    async def send(self, reply: Message) -> None:
        self.replies.append(reply)

    async def close(self) -> None:
        return None


class ScriptedConnector(Connector):
    name = "grpc-rere"

    def __init__(self, connection: ScriptedConnection) -> None:
        self.connection = connection

    async def connect(self) -> Connection:
        return self.connection


def test_node_keeps_serving_after_malformed_requests(
    exttest_pb: ModuleType, handlers: MessageHandlers
):
    pb = exttest_pb
    valid = to_recordset(pb.Point(x=2.0, y=3.0, label="ok"))
    wrong_kind = RecordSet(metrics_records={POINT: MetricsRecord({"x": 1.0, "y": 1.0})})
    missing = RecordSet(configs_records={POINT: ConfigsRecord({"y": 1.0, "label": ""})})
    wrong_type = RecordSet(
        configs_records={POINT: ConfigsRecord({"x": 1.0, "y": 1.0, "label": b"x"})}
    )
    messages = [
        make_message(POINT, wrong_kind, "bad-kind"),
        make_message(POINT, valid, "good-1"),
        make_message(POINT, missing, "bad-missing"),
        make_message("demo.v1.Unknown", valid, "bad-type"),
        make_message(POINT, wrong_type, "bad-value"),
        make_message(POINT, valid, "good-2"),
    ]
    connection = ScriptedConnection(messages)
    config = validate(
        server_address="127.0.0.1:9092",
        client_fn=handlers.client_fn(),
        client=None,
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=True,
        transport="grpc-rere",
        authentication_keys=None,
        max_retries=0,
        max_wait_time=None,
    )
    asyncio.run(NodeLoop(config, ScriptedConnector(connection)).run())

    replies = {reply.metadata.reply_to_message: reply for reply in connection.replies}
    assert list(replies) == [m.metadata.message_id for m in messages]
    expected_errors = {
        "bad-kind": (
            "RecordSetDecodeError",
            "field 'x': record 'exttest.v1.Point' is a MetricsRecord",
        ),
        "bad-missing": ("RecordSetDecodeError", "field 'x': missing key 'x'"),
        "bad-type": ("UnknownMessageTypeError", "'demo.v1.Unknown' has no handler"),
        "bad-value": ("RecordSetDecodeError", "field 'label': expected str (string), got bytes"),
    }
    for message_id, (kind, text) in expected_errors.items():
        reply = replies[message_id]
        assert reply.has_error(), message_id
        assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
        assert kind in reply.error.reason and text in reply.error.reason, reply.error.reason
    for message_id in ("good-1", "good-2"):
        reply = replies[message_id]
        assert reply.has_content(), message_id
        assert from_recordset(pb.Point, reply.content) == pb.Point(
            x=4.0, y=6.0, label=f"ok@{NODE_ID}"
        )
