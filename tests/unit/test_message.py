"""Message, Metadata, Error, reply rules, and Context."""

from __future__ import annotations

import dataclasses
import math
import time
from types import MappingProxyType
from typing import Any

import pytest

from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Error, ErrorCode, Message, MessageType, Metadata
from flwr_sdk.common.records import ConfigsRecord, RecordSet

NODE_ID = 17456683350966392657  # >= 2**63, as real SuperLinks hand out
RUN_ID = 15275521624432464321


def incoming(created_at: float = 1_800_000_000.0, ttl: float = 3600.0) -> Message:
    metadata = Metadata(
        run_id=RUN_ID,
        message_id="2250dffa-0000-4000-8000-000000000000",
        src_node_id=0,
        dst_node_id=NODE_ID,
        reply_to_message="",
        group_id="3",
        ttl=ttl,
        message_type=MessageType.TRAIN,
        created_at=created_at,
    )
    return Message(metadata, content=RecordSet())


def freeze_time(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    monkeypatch.setattr(time, "time", lambda: now)


def test_message_type_and_error_code_constants() -> None:
    assert MessageType.TRAIN == "train"
    assert MessageType.EVALUATE == "evaluate"
    assert MessageType.QUERY == "query"
    assert MessageType.GET_PARAMETERS == "get_parameters"
    assert MessageType.GET_PROPERTIES == "get_properties"
    assert (ErrorCode.UNKNOWN, ErrorCode.LOAD_CLIENT_APP_EXCEPTION) == (0, 1)
    assert ErrorCode.CLIENT_APP_RAISED_EXCEPTION == 2


def test_message_needs_exactly_one_of_content_and_error() -> None:
    metadata = incoming().metadata
    with pytest.raises(ValueError, match="exactly one"):
        Message(metadata)
    with pytest.raises(ValueError, match="exactly one"):
        Message(metadata, content=RecordSet(), error=Error(code=0))
    with pytest.raises(TypeError, match="content"):
        Message(metadata, content={})  # type: ignore[arg-type]


def test_content_and_error_accessors() -> None:
    with_content = incoming()
    assert with_content.has_content() and not with_content.has_error()
    with pytest.raises(ValueError, match="has_error"):
        _ = with_content.error
    with_error = Message(with_content.metadata, error=Error(code=2, reason="boom"))
    assert with_error.has_error() and not with_error.has_content()
    assert with_error.error.reason == "boom"
    with pytest.raises(ValueError, match="has_content"):
        _ = with_error.content
    with pytest.raises(ValueError):
        with_error.content = RecordSet()


def test_create_reply_metadata_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    message = incoming(created_at=1_800_000_000.0, ttl=3600.0)
    freeze_time(monkeypatch, 1_800_000_010.5)
    content = RecordSet(configs_records={"x": ConfigsRecord({"a": 1})})
    reply = message.create_reply(content)
    meta = reply.metadata
    assert reply.content is content and not reply.has_error()
    assert meta.run_id == RUN_ID
    assert meta.message_id == ""
    assert meta.src_node_id == NODE_ID
    assert meta.dst_node_id == 0
    assert meta.reply_to_message == message.metadata.message_id
    assert meta.group_id == "3"
    assert meta.message_type == MessageType.TRAIN
    assert meta.created_at == 1_800_000_010.5
    assert meta.ttl == pytest.approx(3600.0 - 10.5)
    # the incoming message is untouched
    assert message.metadata.message_id.startswith("2250dffa")


def test_create_reply_with_real_clock_is_later_than_incoming() -> None:
    message = incoming(created_at=time.time() - 2.0)
    reply = message.create_reply(RecordSet())
    assert reply.metadata.created_at > message.metadata.created_at
    assert reply.metadata.ttl < 3600.0 - 1.9
    assert reply.metadata.ttl + reply.metadata.created_at == pytest.approx(
        message.metadata.ttl + message.metadata.created_at
    )


def test_created_at_strictly_greater_even_with_clock_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = incoming(created_at=1_800_000_100.0)
    freeze_time(monkeypatch, 1_800_000_000.0)  # our clock is 100 s behind the server's
    reply = message.create_reply(RecordSet())
    assert reply.metadata.created_at > 1_800_000_100.0
    assert reply.metadata.created_at == math.nextafter(1_800_000_100.0, math.inf)
    assert reply.metadata.ttl <= 3600.0
    assert reply.metadata.ttl == pytest.approx(3600.0)


def test_create_reply_with_explicit_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_time(monkeypatch, 1_800_000_050.0)
    reply = incoming().create_reply(RecordSet(), ttl=30)
    assert reply.metadata.ttl == 30.0 and isinstance(reply.metadata.ttl, float)
    with pytest.raises(ValueError, match="ttl"):
        incoming().create_reply(RecordSet(), ttl=0)


def test_create_error_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    message = incoming(created_at=1_800_000_000.0, ttl=100.0)
    freeze_time(monkeypatch, 1_800_000_001.0)
    reply = message.create_error_reply(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="r")
    )
    assert reply.has_error() and not reply.has_content()
    assert reply.error == Error(code=2, reason="r")
    assert reply.metadata.reply_to_message == message.metadata.message_id
    assert reply.metadata.src_node_id == NODE_ID and reply.metadata.dst_node_id == 0
    assert reply.metadata.ttl == pytest.approx(99.0)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("run_id", -1, ValueError),
        ("run_id", 2**64, ValueError),
        ("src_node_id", "1", TypeError),
        ("dst_node_id", True, TypeError),
        ("message_id", None, TypeError),
        ("group_id", 1, TypeError),
        ("ttl", "3600", TypeError),
        ("created_at", None, TypeError),
    ],
)
def test_metadata_validation(field: str, value: Any, error: type[Exception]) -> None:
    kwargs: dict[str, Any] = {
        "run_id": 1,
        "message_id": "m",
        "src_node_id": 0,
        "dst_node_id": 2**64 - 1,
        "reply_to_message": "",
        "group_id": "",
        "ttl": 3600,
        "message_type": "train",
        "created_at": 1.0,
    }
    Metadata(**kwargs)  # the baseline is valid
    kwargs[field] = value
    with pytest.raises(error, match=field):
        Metadata(**kwargs)


def test_metadata_defaults_and_normalization() -> None:
    before = time.time()
    metadata = Metadata(1, "m", 0, 5, "", "", 60, "train")
    assert before <= metadata.created_at <= time.time()
    assert metadata.ttl == 60.0 and isinstance(metadata.ttl, float)


def test_error_validation() -> None:
    assert Error(code=1).reason == ""
    with pytest.raises(TypeError, match="code"):
        Error(code="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reason"):
        Error(code=2, reason=None)  # type: ignore[arg-type]


def test_message_equality() -> None:
    metadata = incoming().metadata
    assert Message(metadata, content=RecordSet()) == Message(metadata, content=RecordSet())
    assert Message(metadata, content=RecordSet()) != Message(metadata, error=Error(code=0))


# ---------------------------------------------------------------------------- Context


def make_context(run_config: dict[str, Any] | None = None) -> Context:
    return Context(
        node_id=NODE_ID,
        node_config={},
        state=RecordSet(),
        run_config=run_config if run_config is not None else {"lr": 0.1, "epochs": 2},
        run_id=RUN_ID,
    )


def test_context_run_config_is_writable_as_in_flower() -> None:
    context = make_context()
    assert context.run_config["lr"] == 0.1
    context.run_config["lr"] = 0.2
    del context.run_config["epochs"]
    assert context.run_config == {"lr": 0.2}
    context.run_config = {"batch": 32}
    assert context.run_config == {"batch": 32}


def test_context_keeps_the_config_dicts_it_is_given() -> None:
    # Flower's Context is a dataclass: the dicts passed in are the attributes.
    source: dict[str, Any] = {"a": 1}
    context = make_context(source)
    assert context.run_config is source
    # A read-only mapping is copied into a dict, which is then writable.
    proxy_context = make_context(MappingProxyType({"a": 1}))  # type: ignore[arg-type]
    proxy_context.run_config["b"] = 2
    assert proxy_context.run_config == {"a": 1, "b": 2}


def test_context_takes_flowers_positional_arguments_and_own_attributes() -> None:
    state = RecordSet()
    context = Context(7, {"partition-id": 0}, state, {"lr": 0.5})
    assert (context.node_id, context.node_config, context.state, context.run_config) == (
        7,
        {"partition-id": 0},
        state,
        {"lr": 0.5},
    )
    context.model_cache = [1, 2]  # type: ignore[attr-defined]  # allowed, as in Flower
    assert context.model_cache == [1, 2]  # type: ignore[attr-defined]


def test_context_is_a_dataclass_as_in_flower() -> None:
    context = make_context()
    assert dataclasses.is_dataclass(context)
    names = [field.name for field in dataclasses.fields(context)]
    assert names == ["node_id", "node_config", "state", "run_config", "run_id"]
    other = dataclasses.replace(context, run_config={"lr": 1.0})
    assert other.state is context.state and other.run_config == {"lr": 1.0}
    assert other != context and dataclasses.replace(context) == context
    with pytest.raises(TypeError, match="run_config"):
        dataclasses.replace(context, run_config={"x": None})


def test_context_state_is_the_given_object_and_mutable() -> None:
    state = RecordSet()
    context = Context(node_id=-1, node_config={}, state=state, run_config={})
    assert context.state is state
    assert context.run_id == 0
    context.state.configs_records["seen"] = ConfigsRecord({"n": 1})
    assert state.configs_records["seen"]["n"] == 1
    context.node_config["partition-id"] = 3
    assert context.node_config == {"partition-id": 3}


def test_context_validation() -> None:
    with pytest.raises(TypeError, match="state"):
        Context(node_id=1, node_config={}, state={}, run_config={})  # type: ignore[arg-type]
    context = make_context()
    with pytest.raises(TypeError, match="state"):
        context.state = {}  # type: ignore[assignment]
    with pytest.raises(TypeError, match="'x'"):
        Context(node_id=1, node_config={}, state=RecordSet(), run_config={"x": [1]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="node_id"):
        Context(node_id="1", node_config={}, state=RecordSet(), run_config={})  # type: ignore[arg-type]
