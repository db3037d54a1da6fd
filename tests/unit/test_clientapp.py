"""ClientApp: client_fn or registered functions, mods in list order, misuse errors."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from flwr_sdk.clientapp import (
    Client,
    ClientApp,
    ClientAppCallable,
    Config,
    FitIns,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArrays,
    NumPyClient,
    Status,
    handle_message,
    make_ffn,
    ndarrays_to_parameters,
)
from flwr_sdk.clientapp.handlers import MessageHandlers, UnknownMessageTypeError
from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_types import Code
from flwr_sdk.common.message import Error, Message, MessageType, Metadata
from flwr_sdk.common.records import ConfigsRecord, RecordSet
from flwr_sdk.errors import ClientAppUsageError, FlwrSdkError
from flwr_sdk.validation import validate

NODE_ID = 42
WEIGHTS: NDArrays = [np.arange(4, dtype=np.float32)]


def make_context(**node_config: Any) -> Context:
    return Context(node_id=NODE_ID, node_config=node_config, state=RecordSet(), run_config={})


def make_message(message_type: str, content: RecordSet | None = None) -> Message:
    if content is None:
        if message_type == MessageType.TRAIN:
            config: Config = {"lr": 0.5}
            content = lr.fitins_to_recordset(FitIns(ndarrays_to_parameters(WEIGHTS), config), True)
        elif message_type == MessageType.GET_PROPERTIES:
            content = lr.getpropertiesins_to_recordset(GetPropertiesIns({}))
        else:
            content = RecordSet()
    metadata = Metadata(
        run_id=7,
        message_id="m-1",
        src_node_id=0,
        dst_node_id=NODE_ID,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type=message_type,
    )
    return Message(metadata, content=content)


class AddOne(NumPyClient):
    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Any]]:
        return [p + 1 for p in parameters], 3, {"lr": config["lr"]}


class Props(Client):
    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(Status(Code.OK, "ok"), {"node": self.context.node_id})


def echo(message: Message, context: Context) -> Message:
    return message.create_reply(RecordSet(configs_records={"seen": ConfigsRecord({"n": 1})}))


# ------------------------------------------------------------------ client_fn


def test_client_fn_answers_like_handle_message() -> None:
    app = ClientApp(client_fn=lambda context: AddOne().to_client())
    message = make_message(MessageType.TRAIN)
    reply = app(message, make_context())
    expected = handle_message(message, make_context(), lambda context: AddOne().to_client())
    assert reply.content == expected.content
    fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
    assert fitres.num_examples == 3 and fitres.metrics == {"lr": 0.5}


def test_positional_client_fn_like_flower() -> None:
    app = ClientApp(lambda context: Props())
    reply = app(make_message(MessageType.GET_PROPERTIES), make_context())
    res = lr.GET_PROPERTIES_KIND.recordset_to_res(reply.content, True)
    assert res.properties == {"node": NODE_ID}
    assert app.client_fn is not None and app.mods == ()


def test_cid_client_fn_is_adapted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cids: list[str] = []

    def client_fn(cid: str) -> Client:
        cids.append(cid)
        return Props()

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        app = ClientApp(client_fn=client_fn)
    assert "deprecated" in caplog.text
    app(make_message(MessageType.GET_PROPERTIES), make_context(**{"partition-id": 4}))
    app(make_message(MessageType.GET_PROPERTIES), make_context())
    assert cids == ["4", str(NODE_ID)]


@pytest.mark.parametrize(
    "client_fn",
    [lambda: Props(), lambda context, extra: Props()],
    ids=["no-argument", "two-arguments"],
)
def test_client_fn_with_the_wrong_signature_is_refused(client_fn: Any) -> None:
    with pytest.raises(ClientAppUsageError, match="exactly one argument, the Context") as info:
        ClientApp(client_fn=client_fn)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FlwrSdkError)


def test_client_fn_with_optional_extras_is_accepted() -> None:
    def client_fn(context: Context, verbose: bool = False) -> Client:
        return Props()

    app = ClientApp(client_fn=client_fn)
    assert app(make_message(MessageType.GET_PROPERTIES), make_context()).has_content()


def test_non_callable_client_fn_and_mods_are_type_errors() -> None:
    with pytest.raises(TypeError, match="client_fn must be callable"):
        ClientApp(client_fn=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mods must be a list"):
        ClientApp(mods=echo)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mods\[1\] must be callable"):
        ClientApp(mods=[lambda m, c, n: n(m, c), "nope"])  # type: ignore[list-item]


def test_unknown_legacy_type_is_a_value_error() -> None:
    app = ClientApp(client_fn=lambda context: Props())
    with pytest.raises(ValueError, match="Invalid message type: query"):
        app(make_message(MessageType.QUERY), make_context())


def test_typed_handlers_work_through_clientapp() -> None:
    handlers = MessageHandlers()
    app = ClientApp(client_fn=handlers.client_fn(lambda context: Props()))
    reply = app(make_message(MessageType.GET_PROPERTIES), make_context())
    assert lr.GET_PROPERTIES_KIND.recordset_to_res(reply.content, True).properties == {
        "node": NODE_ID
    }
    with pytest.raises(UnknownMessageTypeError, match=r"'demo\.v1\.Nothing' has no handler"):
        app(make_message("demo.v1.Nothing"), make_context())


# ------------------------------------------------------------------ registered functions


def test_registered_functions_answer_their_message_types() -> None:
    app = ClientApp()
    calls: list[str] = []

    @app.train()
    def train(message: Message, context: Context) -> Message:
        calls.append("train")
        return echo(message, context)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        calls.append("evaluate")
        return echo(message, context)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        calls.append("query")
        return echo(message, context)

    assert train is not None and evaluate is not None and query is not None  # returned as is
    for message_type in (MessageType.QUERY, MessageType.TRAIN, MessageType.EVALUATE):
        reply = app(make_message(message_type), make_context())
        assert reply.metadata.reply_to_message == "m-1"
        assert reply.content.configs_records["seen"]["n"] == 1
    assert calls == ["query", "train", "evaluate"]
    assert app.message_types == ("train", "evaluate", "query")


def test_decorator_returns_the_function_unchanged() -> None:
    app = ClientApp()
    assert app.train()(echo) is echo


def test_a_message_type_without_a_function_is_a_typed_error() -> None:
    app = ClientApp()
    app.train()(echo)
    with pytest.raises(UnknownMessageTypeError, match="'evaluate' has no handler") as info:
        app(make_message(MessageType.EVALUATE), make_context())
    assert isinstance(info.value, ValueError)
    assert "it answers 'train'" in str(info.value)
    with pytest.raises(UnknownMessageTypeError, match="'get_parameters' has no handler"):
        app(make_message(MessageType.GET_PARAMETERS), make_context())
    with pytest.raises(UnknownMessageTypeError, match="answers nothing"):
        ClientApp()(make_message(MessageType.TRAIN), make_context())


@pytest.mark.parametrize("name", ["train", "evaluate", "query"])
def test_client_fn_and_a_function_together_are_refused(name: str) -> None:
    app = ClientApp(client_fn=lambda context: Props())
    with pytest.raises(ClientAppUsageError, match=f"either `@app.{name}\\(\\)` or `client_fn`"):
        getattr(app, name)()(echo)


def test_registering_a_type_twice_is_refused() -> None:
    app = ClientApp()
    app.train()(echo)
    with pytest.raises(ClientAppUsageError, match="already registered"):
        app.train()(echo)


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"@app.query\(\) must decorate a function"):
        ClientApp().query()(42)  # type: ignore[arg-type]


def test_a_reply_that_is_not_a_message_is_a_type_error() -> None:
    app = ClientApp()
    app.train()(lambda message, context: "done")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must be a Message, got str"):
        app(make_message(MessageType.TRAIN), make_context())


# ------------------------------------------------------------------ mods


def recording_mod(name: str, log: list[str]) -> Any:
    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        log.append(f"{name} in")
        reply = call_next(message, context)
        log.append(f"{name} out")
        return reply

    return mod


def test_mods_run_in_list_order_around_client_fn() -> None:
    log: list[str] = []

    def client_fn(context: Context) -> Client:
        log.append("client")
        return Props()

    app = ClientApp(client_fn=client_fn, mods=[recording_mod("a", log), recording_mod("b", log)])
    app(make_message(MessageType.GET_PROPERTIES), make_context())
    assert log == ["a in", "b in", "client", "b out", "a out"]
    assert len(app.mods) == 2


def test_mods_run_around_every_registered_function() -> None:
    log: list[str] = []
    app = ClientApp(mods=[recording_mod("a", log), recording_mod("b", log)])

    @app.train()
    def train(message: Message, context: Context) -> Message:
        log.append("train")
        return echo(message, context)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        log.append("query")
        return echo(message, context)

    app(make_message(MessageType.TRAIN), make_context())
    app(make_message(MessageType.QUERY), make_context())
    assert log == [
        *("a in", "b in", "train", "b out", "a out"),
        *("a in", "b in", "query", "b out", "a out"),
    ]


def test_a_mod_may_answer_without_calling_next() -> None:
    def refuse(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        return message.create_error_reply(Error(code=2, reason="refused"))

    def never(context: Context) -> Client:
        raise AssertionError("client_fn must not run")

    app = ClientApp(client_fn=never, mods=[refuse])
    reply = app(make_message(MessageType.TRAIN), make_context())
    assert reply.has_error() and reply.error.reason == "refused"


def test_a_mod_sees_and_changes_the_message_and_the_reply() -> None:
    def scale(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        message.content.configs_records["extra"] = ConfigsRecord({"x": 2})
        reply = call_next(message, context)
        reply.content.configs_records["by_mod"] = ConfigsRecord({"done": True})
        return reply

    seen: list[int] = []

    def train(message: Message, context: Context) -> Message:
        seen.append(int(message.content.configs_records["extra"]["x"]))  # type: ignore[arg-type]
        return echo(message, context)

    app = ClientApp(mods=[scale])
    app.train()(train)
    reply = app(make_message(MessageType.TRAIN), make_context())
    assert seen == [2]
    assert reply.content.configs_records["by_mod"]["done"] is True


def test_a_mod_exception_propagates() -> None:
    def broken(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        raise RuntimeError("mod failed")

    app = ClientApp(client_fn=lambda context: Props(), mods=[broken])
    with pytest.raises(RuntimeError, match="mod failed"):
        app(make_message(MessageType.GET_PROPERTIES), make_context())


def test_make_ffn_without_mods_returns_the_function() -> None:
    assert make_ffn(echo, []) is echo


def test_the_mods_list_is_copied() -> None:
    log: list[str] = []
    mods = [recording_mod("a", log)]
    app = ClientApp(mods=mods)
    mods.append(recording_mod("late", log))
    app.train()(echo)
    app(make_message(MessageType.TRAIN), make_context())
    assert log == ["a in", "a out"]


# ------------------------------------------------------------------ the node's view


def test_start_client_arguments_give_the_node_a_clientapp() -> None:
    app = ClientApp(client_fn=lambda context: Props())
    config = validate(
        server_address="127.0.0.1:9092",
        client_fn=None,
        client=None,
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=None,
        transport="grpc-rere",
        authentication_keys=None,
        max_retries=None,
        max_wait_time=None,
        app=app,
    )
    assert config.app is app
    wrapped = validate(
        server_address="127.0.0.1:9092",
        client_fn=lambda context: Props(),
        client=None,
        grpc_max_message_length=1 << 20,
        root_certificates=None,
        insecure=None,
        transport="grpc-rere",
        authentication_keys=None,
        max_retries=None,
        max_wait_time=None,
    )
    assert isinstance(wrapped.app, ClientApp)
    reply = wrapped.app(make_message(MessageType.GET_PROPERTIES), make_context())
    assert lr.GET_PROPERTIES_KIND.recordset_to_res(reply.content, True).properties == {
        "node": NODE_ID
    }
