"""Instruction and result types of the legacy ``Client`` API (as in Flower 1.12).

These mirror the legacy protobuf messages (``FitIns``, ``FitRes``, …) as dataclasses.
Tensors are kept as ``bytes`` or ``memoryview`` so that they can move between the wire
and user code without copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from flwr_sdk.common._npy import NpyPayload

__all__ = [
    "Code",
    "Config",
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
    "Parameters",
    "Properties",
    "ReconnectIns",
    "Scalar",
    "Status",
    "TensorBytes",
]

Scalar = bool | bytes | float | int | str
"""A single config, metrics or properties value."""
Config = dict[str, Scalar]
"""Configuration sent by the server."""
Metrics = dict[str, Scalar]
"""Metrics reported by the client."""
Properties = dict[str, Scalar]
"""Properties reported by the client."""
TensorBytes = bytes | memoryview | NpyPayload
"""One serialized tensor: a ``memoryview`` when it was decoded without a copy, an
:class:`~flwr_sdk.common._npy.NpyPayload` (``.npy`` header + view of an array) when it was made by
``ndarrays_to_parameters(..., zero_copy=True)``; ``bytes(tensor)`` works for all three."""


class Code(IntEnum):
    """Status codes of legacy results (``flwr.proto.Code``)."""

    OK = 0
    GET_PROPERTIES_NOT_IMPLEMENTED = 1
    GET_PARAMETERS_NOT_IMPLEMENTED = 2
    FIT_NOT_IMPLEMENTED = 3
    EVALUATE_NOT_IMPLEMENTED = 4


@dataclass
class Status:
    """Outcome of a legacy call: a :class:`Code` and a message."""

    code: Code
    message: str


@dataclass
class Parameters:
    """Model parameters as a list of serialized tensors and their serialization type."""

    tensors: list[TensorBytes]
    tensor_type: str


@dataclass
class GetPropertiesIns:
    """Request for the client's properties."""

    config: Config


@dataclass
class GetPropertiesRes:
    """The client's properties."""

    status: Status
    properties: Properties


@dataclass
class GetParametersIns:
    """Request for the client's current model parameters."""

    config: Config


@dataclass
class GetParametersRes:
    """The client's current model parameters."""

    status: Status
    parameters: Parameters


@dataclass
class FitIns:
    """Instruction to train on local data, starting from ``parameters``."""

    parameters: Parameters
    config: Config


@dataclass
class FitRes:
    """Result of local training."""

    status: Status
    parameters: Parameters
    num_examples: int
    metrics: Metrics


@dataclass
class EvaluateIns:
    """Instruction to evaluate ``parameters`` on local data."""

    parameters: Parameters
    config: Config


@dataclass
class EvaluateRes:
    """Result of local evaluation."""

    status: Status
    loss: float
    num_examples: int
    metrics: Metrics


@dataclass
class ReconnectIns:
    """grpc-bidi control instruction: disconnect, and reconnect after ``seconds`` if set."""

    seconds: int | None = None


@dataclass
class DisconnectRes:
    """grpc-bidi answer to :class:`ReconnectIns` (``reason`` as in ``flwr.proto.Reason``)."""

    reason: str = "RECONNECT"
