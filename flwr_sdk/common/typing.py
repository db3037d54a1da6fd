"""The client-facing names of Flower's ``flwr.common.typing``.

Flower programs often import their type names from here
(``from flwr_sdk.common.typing import Config, NDArrays, Scalar``). The legacy
instruction and result types are re-exported from
:mod:`flwr_sdk.common.legacy_types`; :class:`ClientMessage`, :class:`ServerMessage`
and :data:`MetricsAggregationFn` are defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flwr_sdk.common.context import UserConfig, UserConfigValue
from flwr_sdk.common.legacy_types import (
    Code,
    Config,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Metrics,
    Parameters,
    Properties,
    ReconnectIns,
    Scalar,
    Status,
)
from flwr_sdk.common.ndarrays import NDArray, NDArrays
from flwr_sdk.common.records import (
    ConfigsRecordValues,
    ConfigsScalar,
    MetricsRecordValues,
    MetricsScalar,
)

__all__ = [
    "ClientMessage",
    "Code",
    "Config",
    "ConfigsRecordValues",
    "ConfigsScalar",
    "DisconnectRes",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Metrics",
    "MetricsAggregationFn",
    "MetricsRecordValues",
    "MetricsScalar",
    "NDArray",
    "NDArrayFloat",
    "NDArrayInt",
    "NDArrays",
    "Parameters",
    "Properties",
    "ReconnectIns",
    "Scalar",
    "ServerMessage",
    "Status",
    "UserConfig",
    "UserConfigValue",
]

NDArrayInt = npt.NDArray[np.int_]
"""A NumPy array of the default integer type."""
NDArrayFloat = npt.NDArray[np.float64]
"""A NumPy array of 64-bit floats."""

MetricsAggregationFn = Callable[[list[tuple[int, Metrics]]], Metrics]
"""Combines ``(num_examples, metrics)`` pairs of several clients into one metrics dict."""


@dataclass
class ClientMessage:
    """A legacy client reply: at most one of the four results is set."""

    get_properties_res: GetPropertiesRes | None = None
    get_parameters_res: GetParametersRes | None = None
    fit_res: FitRes | None = None
    evaluate_res: EvaluateRes | None = None


@dataclass
class ServerMessage:
    """A legacy server instruction: at most one of the four instructions is set."""

    get_properties_ins: GetPropertiesIns | None = None
    get_parameters_ins: GetParametersIns | None = None
    fit_ins: FitIns | None = None
    evaluate_ins: EvaluateIns | None = None
