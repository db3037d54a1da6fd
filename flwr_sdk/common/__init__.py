"""The user-facing data model (layer 1), under Flower's ``flwr.common`` names.

Plain Python and NumPy: no wire classes, no transport. ``flwr_sdk.common`` offers every
name of ``flwr.common.__all__`` in Flower 1.12, so ``from flwr_sdk.common import
ndarrays_to_parameters, Context, log`` works as it does with ``flwr``. The submodules
hold the implementations: :mod:`.records`, :mod:`.message`, :mod:`.context`,
:mod:`.legacy_types`, :mod:`.ndarrays`, :mod:`.typing`, :mod:`.constant`,
:mod:`.logger`, :mod:`.telemetry` (no-ops: flwr-sdk sends no telemetry), :mod:`.date`
and :mod:`.conversion_utils`. See ``docs/flower-api.md`` for what differs from Flower.
"""

from flwr_sdk.common.constant import DEFAULT_TTL, GRPC_MAX_MESSAGE_LENGTH, MessageTypeLegacy
from flwr_sdk.common.context import Context
from flwr_sdk.common.conversion_utils import array_from_numpy
from flwr_sdk.common.date import now
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
from flwr_sdk.common.logger import configure, log
from flwr_sdk.common.message import Error, Message, MessageType, Metadata
from flwr_sdk.common.ndarrays import (
    NDArray,
    NDArrays,
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    ConfigsRecordValues,
    MetricsRecord,
    MetricsRecordValues,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.common.telemetry import EventType, event
from flwr_sdk.common.typing import ClientMessage, MetricsAggregationFn, ServerMessage

__all__ = [
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
