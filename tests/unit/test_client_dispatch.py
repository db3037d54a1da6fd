"""Client / NumPyClient dispatch: NOT_IMPLEMENTED codes, Success status, errors, Context."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from flwr_sdk.clientapp import (
    Client,
    Code,
    Config,
    EvaluateIns,
    FitIns,
    FitRes,
    GetParametersIns,
    GetPropertiesIns,
    Metrics,
    NDArrays,
    NumPyClient,
    Parameters,
    Status,
    adapt_client_fn,
    error_reply_for,
    handle_message,
    load_error_reply_for,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    to_client,
)
from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Error, Message, MessageType, Metadata
from flwr_sdk.common.records import ConfigsRecord, MetricsRecord, RecordSet

NODE_ID = 17023248977011432554
WEIGHTS: NDArrays = [
    np.arange(6, dtype=np.float32).reshape(3, 2),
    np.array([1, 2, 3], dtype=np.int64),
]


def make_context() -> Context:
    return Context(node_id=NODE_ID, node_config={}, state=RecordSet(), run_config={"k": 1})


def make_message(message_type: str, content: RecordSet | None = None) -> Message:
    if content is None:
        parameters = ndarrays_to_parameters(WEIGHTS)
        config: Config = {"round": 1}
        contents = {
            MessageType.TRAIN: lr.fitins_to_recordset(FitIns(parameters, config), True),
            MessageType.EVALUATE: lr.evaluateins_to_recordset(
                EvaluateIns(parameters, config), True
            ),
            MessageType.GET_PARAMETERS: lr.getparametersins_to_recordset(GetParametersIns({})),
            MessageType.GET_PROPERTIES: lr.getpropertiesins_to_recordset(GetPropertiesIns({})),
        }
        content = contents.get(message_type, RecordSet())
    metadata = Metadata(
        run_id=3624090848287157123,
        message_id="2250dffa-1111-4000-8000-000000000000",
        src_node_id=0,
        dst_node_id=NODE_ID,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type=message_type,
    )
    return Message(metadata, content=content)


def status_of(reply: Message, prefix: str) -> tuple[Any, Any]:
    record = reply.content.configs_records[f"{prefix}.status"]
    return record["code"], record["message"]


class BareClient(Client):
    """Overrides nothing."""


# ------------------------------------------------------------ NOT_IMPLEMENTED codes


@pytest.mark.parametrize(
    ("message_type", "prefix", "code", "method"),
    [
        (MessageType.GET_PROPERTIES, "getpropertiesres", 1, "get_properties"),
        (MessageType.GET_PARAMETERS, "getparametersres", 2, "get_parameters"),
        (MessageType.TRAIN, "fitres", 3, "fit"),
        (MessageType.EVALUATE, "evaluateres", 4, "evaluate"),
    ],
)
def test_bare_client_answers_not_implemented(
    message_type: str, prefix: str, code: int, method: str
) -> None:
    reply = handle_message(make_message(message_type), make_context(), lambda _: BareClient())
    assert status_of(reply, prefix) == (code, f"Client does not implement `{method}`")


def test_bare_client_payloads_are_empty() -> None:
    context = make_context()
    fit = handle_message(make_message(MessageType.TRAIN), context, lambda _: BareClient())
    fitres = lr.recordset_to_fitres(fit.content, keep_input=True)
    assert fitres.parameters == Parameters(tensors=[], tensor_type="")
    assert list(fit.content.parameters_records["fitres.parameters"]) == ["_empty"]
    assert fitres.num_examples == 0 and fitres.metrics == {}
    evaluate = handle_message(make_message(MessageType.EVALUATE), context, lambda _: BareClient())
    evaluateres = lr.recordset_to_evaluateres(evaluate.content)
    assert (evaluateres.loss, evaluateres.num_examples, evaluateres.metrics) == (0.0, 0, {})
    props = handle_message(
        make_message(MessageType.GET_PROPERTIES), context, lambda _: BareClient()
    )
    assert len(props.content.configs_records["getpropertiesres.properties"]) == 0


# ----------------------------------------------------------------------- NumPyClient


class FullNumPyClient(NumPyClient):
    def __init__(self) -> None:
        self.received: NDArrays = []

    def get_properties(self, config: Config) -> dict[str, Any]:
        return {"name": "c0", "cores": 4}

    def get_parameters(self, config: Config) -> NDArrays:
        return WEIGHTS

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        self.received = parameters
        return [p * 2 for p in parameters], 10, {"round": config["round"], "ok": True}

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Metrics]:
        return 0.5, 7, {"acc": 0.9}


def test_numpy_client_fit_success() -> None:
    numpy_client = FullNumPyClient()
    reply = handle_message(
        make_message(MessageType.TRAIN), make_context(), lambda _: numpy_client.to_client()
    )
    assert status_of(reply, "fitres") == (0, "Success")
    fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
    assert fitres.num_examples == 10
    assert fitres.metrics == {"round": 1, "ok": True}
    assert fitres.parameters.tensor_type == "numpy.ndarray"
    for got, original in zip(parameters_to_ndarrays(fitres.parameters), WEIGHTS, strict=True):
        assert got.tolist() == (original * 2).tolist()
    for got, original in zip(numpy_client.received, WEIGHTS, strict=True):
        assert got.dtype == original.dtype and got.tolist() == original.tolist()


def test_numpy_client_evaluate_get_parameters_get_properties() -> None:
    context = make_context()

    def client_fn(_: Context) -> Client:
        return FullNumPyClient().to_client()

    evaluate = handle_message(make_message(MessageType.EVALUATE), context, client_fn)
    assert status_of(evaluate, "evaluateres") == (0, "Success")
    assert evaluate.content.metrics_records["evaluateres.loss"] == MetricsRecord({"loss": 0.5})
    assert evaluate.content.configs_records["evaluateres.metrics"] == ConfigsRecord({"acc": 0.9})

    params = handle_message(make_message(MessageType.GET_PARAMETERS), context, client_fn)
    assert status_of(params, "getparametersres") == (0, "Success")
    res = lr.recordset_to_getparametersres(params.content, keep_input=True)
    assert [a.tolist() for a in parameters_to_ndarrays(res.parameters)] == [
        w.tolist() for w in WEIGHTS
    ]

    props = handle_message(make_message(MessageType.GET_PROPERTIES), context, client_fn)
    assert status_of(props, "getpropertiesres") == (0, "Success")
    assert props.content.configs_records["getpropertiesres.properties"] == ConfigsRecord(
        {"name": "c0", "cores": 4}
    )


class FitOnlyNumPyClient(NumPyClient):
    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        return parameters, 1, {}


@pytest.mark.parametrize(
    ("message_type", "prefix", "code"),
    [
        (MessageType.GET_PROPERTIES, "getpropertiesres", Code.GET_PROPERTIES_NOT_IMPLEMENTED),
        (MessageType.GET_PARAMETERS, "getparametersres", Code.GET_PARAMETERS_NOT_IMPLEMENTED),
        (MessageType.EVALUATE, "evaluateres", Code.EVALUATE_NOT_IMPLEMENTED),
        (MessageType.TRAIN, "fitres", Code.OK),
    ],
)
def test_numpy_client_unimplemented_methods(message_type: str, prefix: str, code: Code) -> None:
    reply = handle_message(
        make_message(message_type), make_context(), lambda _: FitOnlyNumPyClient().to_client()
    )
    assert status_of(reply, prefix)[0] == int(code)


def test_numpy_client_from_client_fn_is_converted_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        reply = handle_message(
            make_message(MessageType.TRAIN), make_context(), lambda _: FullNumPyClient()
        )
    assert status_of(reply, "fitres") == (0, "Success")
    assert any(
        r.name == "flwr_sdk" and r.levelno == logging.WARNING and "NumPyClient" in r.message
        for r in caplog.records
    )


class WrongFit(NumPyClient):
    def __init__(self, result: Any) -> None:
        self.result = result

    def fit(self, parameters: NDArrays, config: Config) -> Any:
        return self.result


class WrongEvaluate(WrongFit):
    def evaluate(self, parameters: NDArrays, config: Config) -> Any:
        return self.result


@pytest.mark.parametrize(
    "result",
    [
        None,
        ([], 1),
        ([], 1, {}, 0),
        (np.zeros(2), 1, {}),
        ([np.zeros(2)], 1.5, {}),
        ([np.zeros(2)], True, {}),
        ([np.zeros(2)], 1, [("a", 1)]),
        ([[1.0, "a"]], 1, {}),
    ],
)
def test_fit_wrong_return_raises_type_error(result: Any) -> None:
    with pytest.raises(TypeError, match=r"NumPyClient\.fit"):
        handle_message(make_message(MessageType.TRAIN), make_context(), lambda _: WrongFit(result))


def test_fit_may_return_lists_of_numbers_as_flower_accepts() -> None:
    reply = handle_message(
        make_message(MessageType.TRAIN),
        make_context(),
        lambda _: WrongFit(([[1.0, 2.0], 3], 1, {})),
    )
    fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
    got = parameters_to_ndarrays(fitres.parameters)
    assert [a.tolist() for a in got] == [[1.0, 2.0], 3]


@pytest.mark.parametrize(
    "result", [0.5, (0.5, 1), ("0.5", 1, {}), (0.5, 1.0, {}), (0.5, 1, None), (None, 1, {})]
)
def test_evaluate_wrong_return_raises_type_error(result: Any) -> None:
    with pytest.raises(TypeError, match=r"NumPyClient\.evaluate"):
        handle_message(
            make_message(MessageType.EVALUATE), make_context(), lambda _: WrongEvaluate(result)
        )


def test_evaluate_accepts_int_and_numpy_numbers() -> None:
    reply = handle_message(
        make_message(MessageType.EVALUATE),
        make_context(),
        lambda _: WrongEvaluate((np.float32(1.5), np.int64(3), {})),
    )
    res = lr.recordset_to_evaluateres(reply.content)
    assert (res.loss, res.num_examples) == (1.5, 3)
    assert type(res.num_examples) is int


def test_to_client() -> None:
    client = BareClient()
    assert client.to_client() is client
    adapter = FullNumPyClient().to_client()
    assert isinstance(adapter, Client)
    assert to_client(client) is client
    with pytest.raises(TypeError, match="Client or a NumPyClient"):
        to_client(object())


# ------------------------------------------------------------------------- dispatch


def test_invalid_message_type() -> None:
    with pytest.raises(ValueError, match=r"^Invalid message type: query$"):
        handle_message(make_message(MessageType.QUERY), make_context(), lambda _: BareClient())


def test_error_message_is_not_dispatched() -> None:
    message = make_message(MessageType.TRAIN)
    with_error = Message(message.metadata, error=Error(code=0))
    with pytest.raises(ValueError, match="error"):
        handle_message(with_error, make_context(), lambda _: BareClient())


def test_client_fn_returning_wrong_type() -> None:
    with pytest.raises(TypeError, match="client_fn must return"):
        handle_message(make_message(MessageType.TRAIN), make_context(), lambda _: "client")  # type: ignore[arg-type,return-value]


def test_client_method_returning_wrong_type() -> None:
    class Broken(Client):
        def fit(self, ins: FitIns) -> FitRes:
            return {"status": 0}  # type: ignore[return-value]

    with pytest.raises(TypeError, match=r"Client\.fit must return FitRes"):
        handle_message(make_message(MessageType.TRAIN), make_context(), lambda _: Broken())


def test_reply_follows_metadata_rules() -> None:
    message = make_message(MessageType.TRAIN)
    reply = handle_message(message, make_context(), lambda _: BareClient())
    meta = reply.metadata
    assert meta.message_id == "" and meta.reply_to_message == message.metadata.message_id
    assert (meta.src_node_id, meta.dst_node_id) == (NODE_ID, 0)
    assert (meta.run_id, meta.group_id, meta.message_type) == (
        message.metadata.run_id,
        "1",
        MessageType.TRAIN,
    )
    assert meta.created_at > message.metadata.created_at
    assert meta.ttl <= 3600.0


class CountingClient(Client):
    """Counts fits in the Context state; a fresh instance per message."""

    def fit(self, ins: FitIns) -> FitRes:
        state = self.context.state
        if "counter" not in state.metrics_records:
            state.metrics_records["counter"] = MetricsRecord({"fits": 0})
        record = state.metrics_records["counter"]
        fits = record["fits"]
        assert isinstance(fits, int)
        record["fits"] = fits + 1
        return FitRes(
            status=Status(Code.OK, "Success"),
            parameters=ins.parameters,
            num_examples=fits + 1,
            metrics={"run_config_k": self.context.run_config["k"]},
        )


def test_context_is_set_and_state_persists_across_messages() -> None:
    context = make_context()
    seen: list[Client] = []

    def client_fn(ctx: Context) -> Client:
        assert ctx is context
        client = CountingClient()
        seen.append(client)
        return client

    for expected in (1, 2, 3):
        reply = handle_message(make_message(MessageType.TRAIN), context, client_fn)
        fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
        assert fitres.num_examples == expected
        assert fitres.metrics == {"run_config_k": 1}
    assert len({id(c) for c in seen}) == 3  # a fresh client each time
    assert all(c.context is context for c in seen)
    assert context.state.metrics_records["counter"]["fits"] == 3


def test_numpy_client_context_is_set() -> None:
    context = make_context()
    holder: list[NumPyClient] = []

    def client_fn(_: Context) -> NumPyClient:
        holder.append(FitOnlyNumPyClient())
        return holder[-1]

    handle_message(make_message(MessageType.TRAIN), context, client_fn)
    assert holder[0].context is context


def test_context_unset_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="context"):
        _ = BareClient().context
    with pytest.raises(AttributeError, match="context"):
        _ = FitOnlyNumPyClient().context


# --------------------------------------------------------------------------- errors


def test_error_reply_reason_format() -> None:
    message = make_message(MessageType.TRAIN)
    reply = error_reply_for(message, ValueError("some failure"))
    assert reply.has_error() and not reply.has_content()
    assert reply.error.code == 2
    assert reply.error.reason == "<class 'ValueError'>:<'some failure'>"
    assert reply.metadata.reply_to_message == message.metadata.message_id
    assert reply.metadata.dst_node_id == 0 and reply.metadata.src_node_id == NODE_ID


def test_error_reply_for_dispatch_failure() -> None:
    message = make_message(MessageType.QUERY)
    try:
        handle_message(message, make_context(), lambda _: BareClient())
    except ValueError as exc:
        reply = error_reply_for(message, exc)
    assert reply.error.reason == "<class 'ValueError'>:<'Invalid message type: query'>"


def test_load_error_reply() -> None:
    reply = load_error_reply_for(make_message(MessageType.TRAIN))
    assert reply.error == Error(
        code=1, reason="An exception was raised when attempting to load `ClientApp`"
    )


# ------------------------------------------------------------- deprecated client_fn


def test_adapt_client_fn_cid_style(caplog: pytest.LogCaptureFixture) -> None:
    cids: list[str] = []

    def legacy_fn(cid: str) -> Client:
        cids.append(cid)
        return BareClient()

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        adapted = adapt_client_fn(legacy_fn)
    assert "deprecated" in caplog.text
    context = make_context()
    handle_message(make_message(MessageType.TRAIN), context, adapted)
    context.node_config["partition-id"] = 5
    handle_message(make_message(MessageType.TRAIN), context, adapted)
    assert cids == [str(NODE_ID), "5"]


def test_adapt_client_fn_leaves_context_style_alone() -> None:
    def client_fn(context: Context) -> Client:
        return BareClient()

    assert adapt_client_fn(client_fn) is client_fn
    with pytest.raises(TypeError, match="callable"):
        adapt_client_fn(42)  # type: ignore[arg-type]
