"""The legacy :class:`Client` base class.

Subclass it and override any of :meth:`Client.get_properties`,
:meth:`Client.get_parameters`, :meth:`Client.fit` and :meth:`Client.evaluate`. A method
that is not overridden answers the way Flower's does: a status with the matching
``*_NOT_IMPLEMENTED`` code, the message "Client does not implement `<method>`" and an
empty payload.
"""

from __future__ import annotations

from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_types import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Status,
)

__all__ = ["Client", "not_implemented_status"]


def not_implemented_status(method: str) -> Status:
    """Return the Status a client answers with when it does not implement ``method``.

    ``method`` is one of ``"get_properties"``, ``"get_parameters"``, ``"fit"``,
    ``"evaluate"``.
    """
    codes = {
        "get_properties": Code.GET_PROPERTIES_NOT_IMPLEMENTED,
        "get_parameters": Code.GET_PARAMETERS_NOT_IMPLEMENTED,
        "fit": Code.FIT_NOT_IMPLEMENTED,
        "evaluate": Code.EVALUATE_NOT_IMPLEMENTED,
    }
    if method not in codes:
        raise ValueError(f"method must be one of {sorted(codes)}, got {method!r}")
    return Status(code=codes[method], message=f"Client does not implement `{method}`")


class HasContext:
    """The ``context`` attribute shared by :class:`Client` and ``NumPyClient``.

    It is the :class:`~flwr_sdk.common.context.Context` of the message being handled, set by the
    SDK before a client method runs.
    """

    _context: Context | None = None

    @property
    def context(self) -> Context:
        """The :class:`~flwr_sdk.common.context.Context` of the current message.

        Raises:
            AttributeError: no context has been set yet.

        """
        if self._context is None:
            raise AttributeError(
                f"{type(self).__name__}.context is not set yet (the SDK sets it before "
                "calling the client's methods)"
            )
        return self._context

    @context.setter
    def context(self, context: Context) -> None:
        if not isinstance(context, Context):
            raise TypeError(f"context must be Context, got {type(context).__name__}")
        self._context = context

    def get_context(self) -> Context:
        """Return :attr:`context` (older spelling)."""
        return self.context

    def set_context(self, context: Context) -> None:
        """Set :attr:`context` (older spelling)."""
        self.context = context


class Client(HasContext):
    """Base class of legacy clients.

    The dispatcher sets :attr:`context` before calling a method. Subclasses need not
    call ``Client.__init__``.
    """

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        """Return the client's properties. Default: GET_PROPERTIES_NOT_IMPLEMENTED, ``{}``."""
        return GetPropertiesRes(status=not_implemented_status("get_properties"), properties={})

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        """Return the current model parameters.

        Default: GET_PARAMETERS_NOT_IMPLEMENTED with empty parameters.
        """
        return GetParametersRes(
            status=not_implemented_status("get_parameters"),
            parameters=Parameters(tensors=[], tensor_type=""),
        )

    def fit(self, ins: FitIns) -> FitRes:
        """Train on local data. Default: FIT_NOT_IMPLEMENTED with an empty result."""
        return FitRes(
            status=not_implemented_status("fit"),
            parameters=Parameters(tensors=[], tensor_type=""),
            num_examples=0,
            metrics={},
        )

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        """Evaluate on local data. Default: EVALUATE_NOT_IMPLEMENTED with an empty result."""
        return EvaluateRes(
            status=not_implemented_status("evaluate"), loss=0.0, num_examples=0, metrics={}
        )

    def to_client(self) -> Client:
        """Return this client (for symmetry with :meth:`NumPyClient.to_client`)."""
        return self
