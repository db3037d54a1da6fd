"""Flower 1.12's client-facing module paths under flwr_sdk: names, no-ops, log, configure.

The name lists are flwr 1.12.0's ``__all__``; `tests/interop/test_flower_mods.py` checks
them against the real release.
"""

from __future__ import annotations

import importlib
import logging
from concurrent.futures import Future
from datetime import timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import flwr_sdk
import flwr_sdk as fl
from flwr_sdk.errors import FlwrSdkError, UnsupportedFeatureError

FLWR_CLIENT_ALL = [
    "Client",
    "ClientApp",
    "ClientFn",
    "ClientFnExt",
    "NumPyClient",
    "mod",
    "start_client",
    "start_numpy_client",
]
FLWR_CLIENT_MOD_ALL = [
    "LocalDpMod",
    "adaptiveclipping_mod",
    "fixedclipping_mod",
    "make_ffn",
    "message_size_mod",
    "parameters_size_mod",
    "secagg_mod",
    "secaggplus_mod",
]
FLWR_COMMON_ALL = [
    "Array",
    "ClientMessage",
    "Code",
    "Config",
    "ConfigsRecord",
    "ConfigsRecordValues",
    "Context",
    "DEFAULT_TTL",
    "DisconnectRes",
    "Error",
    "EvaluateIns",
    "EvaluateRes",
    "EventType",
    "FitIns",
    "FitRes",
    "GRPC_MAX_MESSAGE_LENGTH",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Message",
    "MessageType",
    "MessageTypeLegacy",
    "Metadata",
    "Metrics",
    "MetricsAggregationFn",
    "MetricsRecord",
    "MetricsRecordValues",
    "NDArray",
    "NDArrays",
    "Parameters",
    "ParametersRecord",
    "Properties",
    "ReconnectIns",
    "RecordSet",
    "Scalar",
    "ServerMessage",
    "Status",
    "array_from_numpy",
    "bytes_to_ndarray",
    "configure",
    "event",
    "log",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "now",
    "parameters_to_ndarrays",
]
SECAGG = ["secagg_mod", "secaggplus_mod"]


def test_flwr_client_names() -> None:
    module = importlib.import_module("flwr_sdk.client")
    assert sorted(module.__all__) == sorted(FLWR_CLIENT_ALL)
    for name in FLWR_CLIENT_ALL:
        assert getattr(module, name) is not None


def test_flwr_common_names() -> None:
    module = importlib.import_module("flwr_sdk.common")
    assert sorted(module.__all__) == sorted(FLWR_COMMON_ALL)
    for name in FLWR_COMMON_ALL:
        assert hasattr(module, name), name


def test_flwr_client_mod_names_except_secure_aggregation() -> None:
    module = importlib.import_module("flwr_sdk.client.mod")
    expected = [n for n in FLWR_CLIENT_MOD_ALL if n not in SECAGG]
    assert sorted(module.__all__) == sorted(expected)
    namespace: dict[str, Any] = {}
    exec("from flwr_sdk.client.mod import *", namespace)
    assert set(expected) <= set(namespace)


@pytest.mark.parametrize("name", SECAGG)
def test_secure_aggregation_mods_raise_a_clear_import_error(name: str) -> None:
    with pytest.raises(
        UnsupportedFeatureError, match="secure aggregation is not supported"
    ) as info:
        exec(f"from flwr_sdk.client.mod import {name}", {})
    assert isinstance(info.value, ImportError) and isinstance(info.value, FlwrSdkError)
    assert info.value.name == name
    assert "LocalDpMod" in str(info.value)  # says what to use instead
    with pytest.raises(ImportError):
        getattr(importlib.import_module("flwr_sdk.client.mod"), name)


def test_unknown_mod_names_are_attribute_errors() -> None:
    module = importlib.import_module("flwr_sdk.client.mod")
    assert not hasattr(module, "no_such_mod")
    with pytest.raises(ImportError, match="cannot import name 'no_such_mod'"):
        exec("from flwr_sdk.client.mod import no_such_mod", {})


def test_import_flwr_sdk_as_fl_reaches_the_submodules() -> None:
    assert fl.client.start_client is flwr_sdk.start_client
    assert fl.client.ClientApp is fl.ClientApp
    assert fl.client.mod.LocalDpMod is not None
    assert fl.common.ndarrays_to_parameters is flwr_sdk.ndarrays_to_parameters
    assert fl.common.Context is flwr_sdk.Context
    assert fl.client.typing.ClientAppCallable is not None


def test_flower_constants() -> None:
    from flwr_sdk.common import DEFAULT_TTL, GRPC_MAX_MESSAGE_LENGTH, MessageType, MessageTypeLegacy

    assert DEFAULT_TTL == 3600
    assert GRPC_MAX_MESSAGE_LENGTH == 536_870_912
    assert (MessageTypeLegacy.GET_PROPERTIES, MessageTypeLegacy.GET_PARAMETERS) == (
        "get_properties",
        "get_parameters",
    )
    assert (MessageType.TRAIN, MessageType.EVALUATE, MessageType.QUERY) == (
        "train",
        "evaluate",
        "query",
    )


def test_client_and_server_message_dataclasses() -> None:
    from flwr_sdk.common import ClientMessage, FitIns, Parameters, ServerMessage

    fit_ins = FitIns(Parameters([], ""), {})
    assert ServerMessage(fit_ins=fit_ins).fit_ins is fit_ins
    assert ServerMessage().evaluate_ins is None
    assert ClientMessage().fit_res is None


def test_array_from_numpy_matches_numpy_save() -> None:
    import io

    from flwr_sdk.common import Array, array_from_numpy

    ndarray = np.arange(6, dtype=np.int16).reshape(2, 3)
    array = array_from_numpy(ndarray)
    saved = io.BytesIO()
    np.save(saved, ndarray, allow_pickle=False)
    assert array == Array("int16", [2, 3], "numpy.ndarray", saved.getvalue())
    with pytest.raises(TypeError):
        array_from_numpy([1, 2])  # type: ignore[arg-type]


def test_now_is_aware_utc() -> None:
    from flwr_sdk.common import now

    assert now().tzinfo is timezone.utc


# ------------------------------------------------------------------ log / configure


def test_log_logs_on_the_flwr_sdk_logger(caplog: pytest.LogCaptureFixture) -> None:
    from flwr_sdk.common import log

    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        log(logging.INFO, "round %s of %d", "3", 5)
    [record] = [r for r in caplog.records if r.getMessage() == "round 3 of 5"]
    assert record.name == "flwr_sdk" and record.levelno == logging.INFO


def test_configure_writes_a_tagged_log_file(tmp_path: Path) -> None:
    from flwr_sdk.common import configure, log
    from flwr_sdk.common.logger import logger

    path = tmp_path / "client.log"
    handlers_before = list(logger.handlers)
    level_before = logger.level
    logger.setLevel(logging.INFO)
    try:
        configure("client-7", filename=str(path))
        configure("client-8", filename=str(path))  # replaces, does not duplicate
        assert len(logger.handlers) == len(handlers_before) + 1
        log(logging.INFO, "hello %s", "file")
        text = path.read_text()
    finally:
        for handler in logger.handlers:
            if handler not in handlers_before:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level_before)
    [line] = text.splitlines()
    assert line.startswith("client-8 | INFO flwr_sdk ")
    assert line.endswith("| test_flower_paths.py:" + line.rsplit(":", 1)[1])
    assert line.endswith("| hello file")


def test_configure_without_file_adds_nothing_and_refuses_remote_logging() -> None:
    from flwr_sdk.common import configure
    from flwr_sdk.common.logger import logger

    before = list(logger.handlers)
    configure("x")
    assert logger.handlers == before
    with pytest.raises(ValueError, match="does not send log records to a remote server"):
        configure("x", host="http://logs.example:8080")
    with pytest.raises(TypeError, match="identifier must be a str"):
        configure(7)  # type: ignore[arg-type]
    assert logger.handlers == before


# ------------------------------------------------------------------ telemetry


def test_event_is_a_harmless_no_op() -> None:
    from flwr_sdk.common import EventType, event

    future = event(EventType.START_CLIENT_ENTER, {"k": 1})
    assert isinstance(future, Future) and future.done() and future.result() is None
    assert event(EventType.PING).result() is None
    assert EventType("RUN_CLIENT_APP_LEAVE") is EventType.RUN_CLIENT_APP_LEAVE
    assert EventType.PING == "PING"
    with pytest.raises(TypeError, match="event_type must be an EventType"):
        event("PING")  # type: ignore[arg-type]


# ------------------------------------------------------------------ start_numpy_client


def test_start_numpy_client_warns_converts_and_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import flwr_sdk.start_numpy as start_numpy
    from flwr_sdk.client import Client, NumPyClient, start_numpy_client

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(start_numpy, "start_client", lambda **kwargs: calls.append(kwargs))

    class Numpy(NumPyClient):
        pass

    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        start_numpy_client(server_address="127.0.0.1:8080", client=Numpy(), transport="rest")
    assert "start_numpy_client() is deprecated" in caplog.text
    [kwargs] = calls
    assert isinstance(kwargs.pop("client"), Client)
    assert kwargs == {
        "server_address": "127.0.0.1:8080",
        "grpc_max_message_length": 536_870_912,
        "root_certificates": None,
        "insecure": None,
        "transport": "rest",
    }


def test_start_numpy_client_wants_a_numpy_client() -> None:
    from flwr_sdk.client import Client, start_numpy_client

    with pytest.raises(TypeError, match="client must be a flwr_sdk"):
        start_numpy_client(server_address="127.0.0.1:8080", client=Client())  # type: ignore[arg-type]
