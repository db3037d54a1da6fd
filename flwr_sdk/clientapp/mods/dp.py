"""Differential-privacy mods: client-side clipping for central DP, and local DP.

* :func:`fixedclipping_mod` and :func:`adaptiveclipping_mod` go with Flower's server-side
  strategy wrappers ``DifferentialPrivacyClientSideFixedClipping`` /
  ``DifferentialPrivacyClientSideAdaptiveClipping``: the server sends the clipping norm in
  the ``train`` instruction's config under ``"clipping_norm"``; the mod clips the model
  update (reply parameters minus instruction parameters) to that L2 norm. The adaptive
  one also reports under ``"norm_bit"`` in the reply's metrics whether it had to clip,
  from which the server adapts the norm.
* :class:`LocalDpMod` clips the update to a fixed norm and adds Gaussian noise to the
  parameters it sends (local DP).

Each works on ``train`` messages only (others pass through) and leaves error replies
alone. The arithmetic is Flower's, step for step, so results are equal to Flower's: the
update is ``new - old`` per array, its norm the L2 norm over all arrays flattened,
``scale = min(1, clipping_norm / norm)``, and the reply carries ``old + update * scale``.
Noise is drawn from NumPy's global generator (``numpy.random.normal``) array by array,
so ``numpy.random.seed`` makes it reproducible, as in Flower.

Where these differ from Flower 1.12 (see ``docs/flower-api.md``):

* :class:`LocalDpMod` adds its noise. Flower 1.12 draws it but drops it (it sends the
  clipped parameters only); Flower 1.13 and later add it, as here.
* An update of norm 0 is left as it is (Flower raises ``ZeroDivisionError``).
* A reply whose arrays differ in number or shape from the instruction's is refused with
  :class:`~flwr_sdk.errors.ModInputError` (Flower clips part of it, or broadcasts).
* A clipping norm that is not a positive finite number is refused (Flower would flip or
  zero the update).
"""

from __future__ import annotations

import logging
import math
from numbers import Real

import numpy as np

from flwr_sdk.clientapp.app import ClientAppCallable
from flwr_sdk.common.context import Context
from flwr_sdk.common.legacy_records import FIT_KIND
from flwr_sdk.common.legacy_types import FitIns, FitRes
from flwr_sdk.common.message import Message, MessageType
from flwr_sdk.common.ndarrays import NDArrays, ndarrays_to_parameters, parameters_to_ndarrays
from flwr_sdk.errors import ModInputError

__all__ = [
    "KEY_CLIPPING_NORM",
    "KEY_NORM_BIT",
    "LocalDpMod",
    "adaptiveclipping_mod",
    "clip_model_update",
    "fixedclipping_mod",
    "l2_norm",
    "localdp_noise_stddev",
]

logger = logging.getLogger("flwr_sdk")

KEY_CLIPPING_NORM = "clipping_norm"
"""Config key under which the server sends the clipping norm."""
KEY_NORM_BIT = "norm_bit"
"""Metrics key under which :func:`adaptiveclipping_mod` reports whether it clipped."""


def l2_norm(arrays: NDArrays) -> float:
    """The L2 norm of all ``arrays`` flattened into one vector.

    Each array's norm is taken in its own precision, then squared and summed as Python
    floats, in Flower 1.12's order. (Under NumPy 1, which Flower 1.12 requires, squaring a
    ``float32`` norm gives a ``float64``; NumPy 2 would keep ``float32``.)
    """
    norms = [float(np.linalg.norm(np.ravel(array))) for array in arrays]
    return float(np.sqrt(sum(norm**2 for norm in norms)))


def clip_model_update(new: NDArrays, old: NDArrays, clipping_norm: float, who: str) -> bool:
    """Clip the update ``new - old`` to ``clipping_norm``; store ``old + update`` in ``new``.

    ``new``'s elements are replaced (never written into), so arrays that view a receive
    buffer or user memory stay untouched. Returns whether the update was scaled down.

    Raises:
        flwr_sdk.errors.ModInputError: ``new`` and ``old`` differ in length or in an
            array's shape (``who`` names the mod in the message).

    """
    if len(new) != len(old):
        raise ModInputError(
            f"{who}: the reply carries {len(new)} arrays but the instruction {len(old)}; "
            "clipping needs the update of the same model"
        )
    for index, (a, b) in enumerate(zip(new, old, strict=True)):
        if a.shape != b.shape:
            raise ModInputError(
                f"{who}: array {index} of the reply has shape {a.shape}, the instruction's "
                f"{b.shape}; clipping needs the update of the same model"
            )
    # np.asarray: 0-d inputs give NumPy scalars, which cannot be scaled in place.
    update = [np.asarray(np.subtract(a, b)) for a, b in zip(new, old, strict=True)]
    norm = l2_norm(update)
    scale = min(1, clipping_norm / norm) if norm != 0 else 1
    for array in update:
        array *= scale
    for index, base in enumerate(old):
        new[index] = np.asarray(base + update[index])
    return scale < 1


def _positive_clipping_norm(value: float, who: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ModInputError(
            f"{who}: the server's {KEY_CLIPPING_NORM!r} must be a positive finite number, "
            f"got {value!r}"
        )
    return value


def _clipping_norm(fit_ins: FitIns, who: str, wrapper: str, *, exact_float: bool) -> float:
    if KEY_CLIPPING_NORM not in fit_ins.config:
        raise ModInputError(
            f"{who}: the train instruction carries no {KEY_CLIPPING_NORM!r} in its config; "
            f"the server must wrap its strategy in {wrapper}"
        )
    value = fit_ins.config[KEY_CLIPPING_NORM]
    if exact_float:
        if not isinstance(value, float):
            raise ModInputError(
                f"{who}: the server's {KEY_CLIPPING_NORM!r} must be a float, "
                f"got {type(value).__name__}"
            )
        return _positive_clipping_norm(value, who)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ModInputError(
            f"{who}: the server's {KEY_CLIPPING_NORM!r} must be a number, got {value!r}"
        ) from None
    return _positive_clipping_norm(number, who)


def _clip_train_reply(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    who: str,
    clipping_norm: float | None,
    wrapper: str,
    *,
    exact_float: bool = False,
) -> tuple[Message, tuple[FitRes, NDArrays, bool] | None]:
    """Run the chain and clip its reply.

    Returns the reply and, unless it is an error reply, its FitRes, the clipped arrays
    (fresh, writable; not yet stored in the FitRes) and whether the update was scaled.
    """
    fit_ins = FIT_KIND.recordset_to_ins(message.content, keep_input=True)
    if clipping_norm is None:
        clipping_norm = _clipping_norm(fit_ins, who, wrapper, exact_float=exact_float)
    sent = parameters_to_ndarrays(fit_ins.parameters)
    reply = call_next(message, context)
    if reply.has_error():
        return reply, None
    fit_res = FIT_KIND.recordset_to_res(reply.content, keep_input=True)
    arrays = parameters_to_ndarrays(fit_res.parameters)
    clipped = clip_model_update(arrays, sent, clipping_norm, who)
    logger.info("%s: model update clipped to norm %.4f", who, clipping_norm)
    return reply, (fit_res, arrays, clipped)


def _store(reply: Message, fit_res: FitRes, arrays: NDArrays) -> Message:
    fit_res.parameters = ndarrays_to_parameters(arrays)
    reply.content = FIT_KIND.res_to_recordset(fit_res, keep_input=False)
    return reply


def fixedclipping_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Clip the model update to the norm the server sends (central DP, fixed clipping).

    For Flower's ``DifferentialPrivacyClientSideFixedClipping`` server wrapper. Put it
    last among mods that change parameters. ``train`` messages only.

    Raises:
        flwr_sdk.errors.ModInputError: the instruction has no usable ``"clipping_norm"``
            (a number; Flower raises ``KeyError`` when it is missing), or the reply's
            arrays do not match the instruction's.

    """
    if message.metadata.message_type != MessageType.TRAIN:
        return call_next(message, context)
    who, wrapper = "fixedclipping_mod", "DifferentialPrivacyClientSideFixedClipping"
    reply, result = _clip_train_reply(message, context, call_next, who, None, wrapper)
    if result is None:
        return reply
    fit_res, arrays, _ = result
    return _store(reply, fit_res, arrays)


def adaptiveclipping_mod(
    message: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Clip the model update to the server's norm and report whether it clipped.

    For Flower's ``DifferentialPrivacyClientSideAdaptiveClipping`` server wrapper: the
    reply's metrics get ``"norm_bit"``, ``True`` when the update was scaled down. Put it
    last among mods that change parameters. ``train`` messages only.

    Raises:
        flwr_sdk.errors.ModInputError: the instruction's ``"clipping_norm"`` is missing or
            not a ``float`` (as in Flower), or the reply's arrays do not match the
            instruction's.

    """
    if message.metadata.message_type != MessageType.TRAIN:
        return call_next(message, context)
    who, wrapper = "adaptiveclipping_mod", "DifferentialPrivacyClientSideAdaptiveClipping"
    reply, result = _clip_train_reply(
        message, context, call_next, who, None, wrapper, exact_float=True
    )
    if result is None:
        return reply
    fit_res, arrays, clipped = result
    fit_res.metrics[KEY_NORM_BIT] = clipped
    return _store(reply, fit_res, arrays)


def localdp_noise_stddev(sensitivity: float, epsilon: float, delta: float) -> float:
    """Standard deviation of the Gaussian mechanism: ``sensitivity·√(2·ln(1.25/δ))/ε``."""
    return float(sensitivity * np.sqrt(2 * np.log(1.25 / delta)) / epsilon)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"LocalDpMod {name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"LocalDpMod {name} must be finite, got {value!r}")
    return number


class LocalDpMod:
    """Local differential privacy: clip the model update, then add Gaussian noise.

    On every ``train`` message the update (reply parameters minus instruction parameters)
    is clipped to ``clipping_norm`` as :func:`fixedclipping_mod` does, and every sent
    array gets independent Gaussian noise of standard deviation
    ``sensitivity * sqrt(2 * ln(1.25 / delta)) / epsilon`` (drawn with
    ``numpy.random.normal``).

    Args:
        clipping_norm: L2 norm the update is clipped to (> 0).
        sensitivity: sensitivity of the client model (>= 0; 0 adds no noise).
        epsilon: privacy budget (> 0; smaller is more private).
        delta: failure probability of the guarantee (0 < delta < 1).

    Raises:
        TypeError: an argument is not a number.
        ValueError: an argument is out of its range or not finite.

    Example::

        app = ClientApp(client_fn=client_fn, mods=[LocalDpMod(1.0, 1.0, 1.0, 1e-5)])

    """

    def __init__(
        self, clipping_norm: float, sensitivity: float, epsilon: float, delta: float
    ) -> None:
        clipping_norm = _real("clipping_norm", clipping_norm)
        sensitivity = _real("sensitivity", sensitivity)
        epsilon = _real("epsilon", epsilon)
        delta = _real("delta", delta)
        if clipping_norm <= 0:
            raise ValueError(f"LocalDpMod clipping_norm must be positive, got {clipping_norm}")
        if sensitivity < 0:
            raise ValueError(f"LocalDpMod sensitivity must not be negative, got {sensitivity}")
        if epsilon <= 0:
            raise ValueError(
                f"LocalDpMod epsilon must be positive (0 would mean infinite noise), got {epsilon}"
            )
        if not 0 < delta < 1:
            raise ValueError(f"LocalDpMod delta must be between 0 and 1 (exclusive), got {delta}")
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.epsilon = epsilon
        self.delta = delta

    @property
    def noise_stddev(self) -> float:
        """Standard deviation of the noise added to every parameter."""
        return localdp_noise_stddev(self.sensitivity, self.epsilon, self.delta)

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Run the chain, then clip and noise the parameters of a ``train`` reply.

        Raises:
            flwr_sdk.errors.ModInputError: the reply's arrays do not match the
                instruction's.

        """
        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        who = "LocalDpMod"
        reply, result = _clip_train_reply(
            message, context, call_next, who, self.clipping_norm, "LocalDpMod"
        )
        if result is None:
            return reply
        fit_res, arrays, _ = result
        stddev = self.noise_stddev
        for array in arrays:
            array += np.random.normal(0, stddev, array.shape)
        logger.info("LocalDpMod: Gaussian noise of stddev %.4f added to the parameters", stddev)
        return _store(reply, fit_res, arrays)

    def __repr__(self) -> str:
        """Show the four parameters."""
        return (
            f"LocalDpMod(clipping_norm={self.clipping_norm}, sensitivity={self.sensitivity}, "
            f"epsilon={self.epsilon}, delta={self.delta})"
        )
