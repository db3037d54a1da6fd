"""The client mods: size logging, client-side clipping, local DP (values worked by hand).

`tests/interop/test_flower_mods.py` checks the same mods against flwr's own outputs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from flwr_sdk.clientapp import (
    ClientApp,
    Config,
    FitIns,
    NDArrays,
    NumPyClient,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr_sdk.clientapp.mods import (
    KEY_CLIPPING_NORM,
    KEY_NORM_BIT,
    LocalDpMod,
    adaptiveclipping_mod,
    fixedclipping_mod,
    message_size_mod,
    parameters_size_mod,
)
from flwr_sdk.clientapp.mods.comms import (
    configs_record_bytes,
    metrics_record_bytes,
    parameters_record_bytes,
)
from flwr_sdk.clientapp.mods.dp import clip_model_update, l2_norm
from flwr_sdk.common import legacy_records as lr
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Error, Message, MessageType, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.errors import ModInputError


def make_context() -> Context:
    return Context(node_id=1, node_config={}, state=RecordSet(), run_config={})


def make_message(message_type: str, content: RecordSet) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=0,
        dst_node_id=1,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type=message_type,
    )
    return Message(metadata, content=content)


def train_message(weights: NDArrays, config: Config) -> Message:
    ins = FitIns(ndarrays_to_parameters(weights), config)
    return make_message(MessageType.TRAIN, lr.fitins_to_recordset(ins, True))


class Returns(NumPyClient):
    """Returns fixed parameters from fit."""

    def __init__(self, weights: NDArrays, metrics: dict[str, Any] | None = None) -> None:
        self.weights = weights
        self.metrics = metrics or {}

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Any]]:
        return self.weights, 10, dict(self.metrics)


def run_fit(mod: Any, sent: NDArrays, returned: NDArrays, config: Config) -> tuple[NDArrays, Any]:
    app = ClientApp(client_fn=lambda context: Returns(returned).to_client(), mods=[mod])
    reply = app(train_message(sent, config), make_context())
    fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
    return parameters_to_ndarrays(fitres.parameters), fitres


# ------------------------------------------------------------------ sizes


def test_record_sizes_are_counted_like_flower() -> None:
    array = Array.from_numpy(np.zeros(3, dtype=np.float32))
    assert parameters_record_bytes(ParametersRecord({"w": array})) == len(array.data) + 1
    assert metrics_record_bytes(MetricsRecord({"acc": 0.5, "hist": [1, 2, 3]})) == 8 + 3 + 24 + 4
    configs = ConfigsRecord(
        {"flag": True, "n": 3, "name": "abc", "blob": b"12", "names": ["a", "bc"], "xs": [1.0, 2.0]}
    )
    assert configs_record_bytes(configs) == (1 + 4) + (8 + 1) + (3 + 4) + (2 + 4) + (3 + 5) + (
        16 + 2
    )
    # Flower raises on these; they count 0 here.
    assert configs_record_bytes(ConfigsRecord({"e": "", "l": []})) == 2


def test_message_size_mod_logs_the_content_size(caplog: pytest.LogCaptureFixture) -> None:
    content = RecordSet(
        parameters_records={"p": ParametersRecord({"w": Array("", [], "x", b"1234")})},
        metrics_records={"m": MetricsRecord({"a": 1})},
        configs_records={"c": ConfigsRecord({"k": "vv"})},
    )
    message = make_message(MessageType.QUERY, content)
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        reply = message_size_mod(message, make_context(), lambda m, c: m.create_reply(RecordSet()))
    assert reply.metadata.reply_to_message == "m"
    assert "message carries 17 bytes" in caplog.text  # 4+1 + 8+1 + 2+1


def test_parameters_size_mod_logs_counts_per_record(caplog: pytest.LogCaptureFixture) -> None:
    weights = [np.zeros((2, 3), dtype=np.float32), np.zeros(4, dtype=np.int64)]
    message = train_message(weights, {})
    record = message.content.parameters_records["fitins.parameters"]
    size = parameters_record_bytes(record)
    shaped = ParametersRecord({"a": Array.from_numpy(np.zeros((5, 2)))})
    message.content.parameters_records["shaped"] = shaped
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        parameters_size_mod(message, make_context(), lambda m, c: m.create_reply(RecordSet()))
    assert f"record 'fitins.parameters': 10 parameters, {size} bytes" in caplog.text
    shaped_size = parameters_record_bytes(shaped)
    assert f"record 'shaped': 10 parameters, {shaped_size} bytes" in caplog.text
    assert f"{size + shaped_size} bytes of parameters in total" in caplog.text


# ------------------------------------------------------------------ clipping arithmetic


def test_clip_scales_the_update_to_the_norm() -> None:
    old = [np.zeros(2, dtype=np.float64), np.zeros(2, dtype=np.float64)]
    new = [np.array([3.0, 0.0]), np.array([0.0, 4.0])]
    originals = [a.copy() for a in new]
    assert l2_norm(new) == 5.0
    assert clip_model_update(new, old, 1.0, "t") is True
    np.testing.assert_allclose(np.concatenate(new), [0.6, 0.0, 0.0, 0.8])
    assert clip_model_update(new, old, 10.0, "t") is False  # norm 1 < 10: unchanged
    np.testing.assert_allclose(np.concatenate(new), [0.6, 0.0, 0.0, 0.8])
    assert [a.tolist() for a in originals] == [[3.0, 0.0], [0.0, 4.0]]


def test_clip_keeps_a_zero_update() -> None:
    old = [np.ones(3, dtype=np.float32)]
    new = [np.ones(3, dtype=np.float32)]
    assert clip_model_update(new, old, 0.5, "t") is False
    assert new[0].dtype == np.float32 and new[0].tolist() == [1.0, 1.0, 1.0]


def test_clip_scales_zero_dimensional_arrays_too() -> None:
    new = [np.array(3.0), np.array([4.0])]
    clip_model_update(new, [np.array(0.0), np.array([0.0])], 1.0, "t")
    assert isinstance(new[0], np.ndarray)
    np.testing.assert_allclose([float(new[0]), float(new[1][0])], [0.6, 0.8])


def test_clip_refuses_a_different_model() -> None:
    with pytest.raises(ModInputError, match="2 arrays but the instruction 1"):
        clip_model_update([np.zeros(2), np.zeros(2)], [np.zeros(2)], 1.0, "t")
    with pytest.raises(ModInputError, match=r"array 0 of the reply has shape \(3,\)"):
        clip_model_update([np.zeros(3)], [np.zeros(2)], 1.0, "t")


# ------------------------------------------------------------------ the clipping mods


def test_fixedclipping_mod_clips_the_fit_reply(caplog: pytest.LogCaptureFixture) -> None:
    sent = [np.zeros(2, dtype=np.float32)]
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        params, fitres = run_fit(
            fixedclipping_mod, sent, [np.array([3.0, 4.0], np.float32)], {KEY_CLIPPING_NORM: 2}
        )
    np.testing.assert_allclose(params[0], [1.2, 1.6], rtol=1e-6)
    assert params[0].dtype == np.float32
    assert fitres.num_examples == 10 and KEY_NORM_BIT not in fitres.metrics
    assert "fixedclipping_mod: model update clipped to norm 2.0000" in caplog.text


def test_fixedclipping_mod_leaves_received_arrays_alone() -> None:
    message = train_message([np.zeros(2, dtype=np.float32)], {KEY_CLIPPING_NORM: 1.0})
    before = message.content.parameters_records["fitins.parameters"]["0"].numpy().copy()
    app = ClientApp(
        client_fn=lambda context: Returns([np.array([3.0, 4.0], np.float32)]).to_client(),
        mods=[fixedclipping_mod],
    )
    app(message, make_context())
    after = message.content.parameters_records["fitins.parameters"]["0"].numpy()
    assert np.array_equal(before, after)


def test_adaptiveclipping_mod_reports_the_norm_bit() -> None:
    sent = [np.zeros(2)]
    params, fitres = run_fit(
        adaptiveclipping_mod, sent, [np.array([3.0, 4.0])], {"clipping_norm": 1.0}
    )
    np.testing.assert_allclose(params[0], [0.6, 0.8])
    assert fitres.metrics[KEY_NORM_BIT] is True
    params, fitres = run_fit(
        adaptiveclipping_mod, sent, [np.array([3.0, 4.0])], {"clipping_norm": 9.0}
    )
    np.testing.assert_allclose(params[0], [3.0, 4.0])
    assert fitres.metrics[KEY_NORM_BIT] is False


@pytest.mark.parametrize("mod", [fixedclipping_mod, adaptiveclipping_mod])
def test_clipping_mods_need_the_servers_norm(mod: Any) -> None:
    with pytest.raises(ModInputError, match="carries no 'clipping_norm'") as info:
        run_fit(mod, [np.zeros(2)], [np.ones(2)], {})
    assert isinstance(info.value, KeyError)  # Flower raises KeyError here
    with pytest.raises(ModInputError, match="positive finite number"):
        run_fit(mod, [np.zeros(2)], [np.ones(2)], {"clipping_norm": -1.0})


def test_adaptiveclipping_mod_wants_a_float_norm_like_flower() -> None:
    with pytest.raises(ModInputError, match="must be a float, got int") as info:
        run_fit(adaptiveclipping_mod, [np.zeros(2)], [np.ones(2)], {"clipping_norm": 1})
    assert isinstance(info.value, ValueError)
    with pytest.raises(ModInputError, match="must be a number"):
        run_fit(fixedclipping_mod, [np.zeros(2)], [np.ones(2)], {"clipping_norm": "x"})


@pytest.mark.parametrize(
    "mod", [fixedclipping_mod, adaptiveclipping_mod, LocalDpMod(1.0, 1.0, 1.0, 0.1)]
)
def test_dp_mods_pass_other_messages_and_error_replies(mod: Any) -> None:
    query = make_message(MessageType.QUERY, RecordSet())
    reply = mod(query, make_context(), lambda m, c: m.create_reply(RecordSet()))
    assert reply.content == RecordSet()
    message = train_message([np.zeros(2)], {"clipping_norm": 1.0})
    failed = mod(
        message, make_context(), lambda m, c: m.create_error_reply(Error(code=2, reason="x"))
    )
    assert failed.has_error() and failed.error.reason == "x"


# ------------------------------------------------------------------ LocalDpMod


def test_localdp_mod_adds_seeded_gaussian_noise_after_clipping() -> None:
    sent = [np.zeros(3, dtype=np.float32), np.zeros((2, 2), dtype=np.float64)]
    returned = [np.array([3.0, 0.0, 0.0], np.float32), np.array([[0.0, 4.0], [0.0, 0.0]])]
    mod = LocalDpMod(clipping_norm=1.0, sensitivity=0.5, epsilon=2.0, delta=1e-3)
    stddev = 0.5 * np.sqrt(2 * np.log(1.25 / 1e-3)) / 2.0
    assert mod.noise_stddev == pytest.approx(stddev)
    np.random.seed(1234)
    params, _ = run_fit(mod, sent, returned, {})
    np.random.seed(1234)
    noise = [np.random.normal(0, stddev, a.shape) for a in sent]
    clipped = [np.array([0.6, 0.0, 0.0], np.float32), np.array([[0.0, 0.8], [0.0, 0.0]])]
    expected = [(clipped[0] + noise[0]).astype(np.float32), clipped[1] + noise[1]]
    assert params[0].dtype == np.float32 and params[1].dtype == np.float64
    for got, want in zip(params, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_localdp_mod_without_sensitivity_only_clips() -> None:
    params, _ = run_fit(LocalDpMod(1.0, 0.0, 1.0, 0.5), [np.zeros(2)], [np.array([3.0, 4.0])], {})
    np.testing.assert_allclose(params[0], [0.6, 0.8])


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0.0, 1.0, 1.0, 0.1), ValueError, "clipping_norm must be positive"),
        ((1.0, -1.0, 1.0, 0.1), ValueError, "sensitivity must not be negative"),
        ((1.0, 1.0, 0.0, 0.1), ValueError, "epsilon must be positive"),
        ((1.0, 1.0, 1.0, 0.0), ValueError, "delta must be between 0 and 1"),
        ((1.0, 1.0, 1.0, 1.0), ValueError, "delta must be between 0 and 1"),
        ((1.0, float("nan"), 1.0, 0.1), ValueError, "sensitivity must be finite"),
        (("1", 1.0, 1.0, 0.1), TypeError, "clipping_norm must be a number, got str"),
        ((1.0, True, 1.0, 0.1), TypeError, "sensitivity must be a number, got bool"),
    ],
)
def test_localdp_mod_checks_its_arguments(args: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        LocalDpMod(*args)


def test_localdp_mod_repr_and_numpy_numbers() -> None:
    mod = LocalDpMod(np.float32(1.5), 1, 2, np.float64(0.25))
    assert repr(mod) == "LocalDpMod(clipping_norm=1.5, sensitivity=1.0, epsilon=2.0, delta=0.25)"
