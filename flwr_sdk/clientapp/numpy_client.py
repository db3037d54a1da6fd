"""The :class:`NumPyClient` convenience API and its adapter to :class:`Client`.

A NumPyClient works with lists of NumPy arrays and plain dicts. :meth:`NumPyClient.to_client`
wraps it in a :class:`Client` that converts tensors (``.npy``), checks what the user's
methods return and reports ``Status(OK, "Success")``. Methods the NumPyClient does not
override answer with the matching ``*_NOT_IMPLEMENTED`` status, as in Flower.

The ``parameters`` that ``fit`` and ``evaluate`` receive are writable arrays, so training
in place (``self.w = parameters[0]; self.w -= lr * grad``) works as with Flower. From a
large received message they are views of the buffer it was received into (no copy: that
buffer belongs to this one message); from a small one, or when the tensors were already
loaded once (e.g. by a mod), they are fresh copies. The arrays ``fit`` and
``get_parameters`` return are sent without a copy, so they must not change until the
reply is sent (the node sends it before calling the client again).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flwr_sdk.clientapp.client import Client, HasContext
from flwr_sdk.common import legacy_types as lt
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_types import Code, Config, Metrics, Properties, Status
from flwr_sdk.common.ndarrays import (
    NDArrays,
    as_ndarray,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

__all__ = ["NumPyClient"]

_SUCCESS = "Success"


class NumPyClient(HasContext):
    """Base class of clients that work with NumPy arrays.

    Override any of :meth:`get_properties`, :meth:`get_parameters`, :meth:`fit` and
    :meth:`evaluate`. Subclasses need not call ``NumPyClient.__init__``.
    """

    def get_properties(self, config: Config) -> Properties:
        """Return the client's properties.

        Not overriding it answers GET_PROPERTIES_NOT_IMPLEMENTED.
        """
        return {}

    def get_parameters(self, config: Config) -> NDArrays:
        """Return the current model parameters as NumPy arrays.

        Not overriding it answers GET_PARAMETERS_NOT_IMPLEMENTED.
        """
        return []

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        """Train from ``parameters``; return (new parameters, number of examples, metrics).

        ``parameters`` are writable and yours: training in place on them is fine (see the
        module docstring). Not overriding it answers FIT_NOT_IMPLEMENTED.
        """
        return [], 0, {}

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Metrics]:
        """Evaluate ``parameters``; return (loss, number of examples, metrics).

        Not overriding it answers EVALUATE_NOT_IMPLEMENTED.
        """
        return 0.0, 0, {}

    def to_client(self) -> Client:
        """Wrap this NumPyClient in a :class:`Client`."""
        return NumPyClientAdapter(self)


def _overrides(numpy_client: NumPyClient, method: str) -> bool:
    """True if the NumPyClient's class overrides ``method`` of the base class."""
    return getattr(type(numpy_client), method, None) is not getattr(NumPyClient, method)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def _check_ndarrays(value: object, method: str, what: str) -> NDArrays:
    # Flower serializes whatever numpy.save accepts: lists of numbers pass, as there.
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"NumPyClient.{method} must return {what} as a list of numpy.ndarray, "
            f"got {_describe(value)}"
        )
    try:
        return [as_ndarray(v, f"NumPyClient.{method} {what}[{i}]") for i, v in enumerate(value)]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"NumPyClient.{method} must return {what} as a list of numpy.ndarray, "
            f"got {_describe(value)}: {exc}"
        ) from None


def _check_dict(value: object, method: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(
            f"NumPyClient.{method} must return {what} as a dict, got {_describe(value)}"
        )
    return value


def _describe(value: object) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(type(v).__name__ for v in value[:5])
        more = ", ..." if len(value) > 5 else ""
        return f"{type(value).__name__} of ({inner}{more})"
    return type(value).__name__


def _check_num_examples(value: Any, method: str) -> int:
    if not _is_int(value):
        raise TypeError(
            f"NumPyClient.{method} must return num_examples (second element) as int, "
            f"got {type(value).__name__}"
        )
    return int(value)


class NumPyClientAdapter(Client):
    """A :class:`Client` that delegates to a :class:`NumPyClient`.

    Its :attr:`context` is shared with the wrapped NumPyClient.
    """

    def __init__(self, numpy_client: NumPyClient) -> None:
        """Wrap ``numpy_client``."""
        if not isinstance(numpy_client, NumPyClient):
            raise TypeError(
                f"numpy_client must be a NumPyClient, got {type(numpy_client).__name__}"
            )
        self.numpy_client = numpy_client

    @property
    def context(self) -> Context:
        """The wrapped NumPyClient's context."""
        return self.numpy_client.context

    @context.setter
    def context(self, context: Context) -> None:
        self.numpy_client.context = context

    def _call_triple(
        self, method: str, ins: lt.FitIns | lt.EvaluateIns, signature: str
    ) -> tuple[Any, int, dict[str, Any]]:
        """Call the NumPyClient's ``fit`` or ``evaluate``; check the 3 elements it returns.

        Returns the first element unchecked, then ``num_examples`` and the metrics.
        """
        call = getattr(self.numpy_client, method)
        results = call(parameters_to_ndarrays(ins.parameters), ins.config)
        if not isinstance(results, (tuple, list)) or len(results) != 3:
            raise TypeError(
                f"NumPyClient.{method} must return a tuple {signature}, got {_describe(results)}"
            )
        num_examples = _check_num_examples(results[1], method)
        metrics = _check_dict(results[2], method, "the metrics (third element)")
        return results[0], num_examples, metrics

    def get_properties(self, ins: lt.GetPropertiesIns) -> lt.GetPropertiesRes:
        """Call the NumPyClient's ``get_properties``."""
        if not _overrides(self.numpy_client, "get_properties"):
            return super().get_properties(ins)
        properties = _check_dict(
            self.numpy_client.get_properties(ins.config), "get_properties", "the properties"
        )
        return lt.GetPropertiesRes(status=Status(Code.OK, _SUCCESS), properties=properties)

    def get_parameters(self, ins: lt.GetParametersIns) -> lt.GetParametersRes:
        """Call the NumPyClient's ``get_parameters``."""
        if not _overrides(self.numpy_client, "get_parameters"):
            return super().get_parameters(ins)
        ndarrays = _check_ndarrays(
            self.numpy_client.get_parameters(ins.config), "get_parameters", "the parameters"
        )
        return lt.GetParametersRes(
            status=Status(Code.OK, _SUCCESS),
            parameters=ndarrays_to_parameters(ndarrays, zero_copy=True),
        )

    def fit(self, ins: lt.FitIns) -> lt.FitRes:
        """Call the NumPyClient's ``fit`` with the parameters as NumPy arrays."""
        if not _overrides(self.numpy_client, "fit"):
            return super().fit(ins)
        first, num_examples, metrics = self._call_triple(
            "fit", ins, "(parameters: list[numpy.ndarray], num_examples: int, metrics: dict)"
        )
        ndarrays = _check_ndarrays(first, "fit", "the parameters (first element)")
        return lt.FitRes(
            status=Status(Code.OK, _SUCCESS),
            parameters=ndarrays_to_parameters(ndarrays, zero_copy=True),
            num_examples=num_examples,
            metrics=metrics,
        )

    def evaluate(self, ins: lt.EvaluateIns) -> lt.EvaluateRes:
        """Call the NumPyClient's ``evaluate`` with the parameters as NumPy arrays."""
        if not _overrides(self.numpy_client, "evaluate"):
            return super().evaluate(ins)
        loss, num_examples, metrics = self._call_triple(
            "evaluate", ins, "(loss: float, num_examples: int, metrics: dict)"
        )
        if not _is_real(loss):
            raise TypeError(
                "NumPyClient.evaluate must return the loss (first element) as float, "
                f"got {type(loss).__name__}"
            )
        return lt.EvaluateRes(
            status=Status(Code.OK, _SUCCESS),
            loss=float(loss),
            num_examples=num_examples,
            metrics=metrics,
        )
