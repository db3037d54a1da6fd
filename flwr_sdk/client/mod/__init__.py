"""Flower's ``flwr.client.mod`` names: the client mods of Flower 1.12.

Re-exports :mod:`flwr_sdk.clientapp.mods`. Flower's secure-aggregation mods
(``secagg_mod``, ``secaggplus_mod``) are not provided: importing them raises
:class:`flwr_sdk.errors.UnsupportedFeatureError` (an ``ImportError``) that says why.
"""

from flwr_sdk.clientapp.mods import (
    LocalDpMod,
    adaptiveclipping_mod,
    fixedclipping_mod,
    make_ffn,
    message_size_mod,
    parameters_size_mod,
)
from flwr_sdk.errors import UnsupportedFeatureError

__all__ = [
    "LocalDpMod",
    "adaptiveclipping_mod",
    "fixedclipping_mod",
    "make_ffn",
    "message_size_mod",
    "parameters_size_mod",
]

SECURE_AGGREGATION_MODS = ("secagg_mod", "secaggplus_mod")
"""Flower's mods that flwr-sdk leaves out."""

SECURE_AGGREGATION_REASON = (
    "secure aggregation is not supported by flwr-sdk. Flower's SecAgg/SecAgg+ is a "
    "multi-round cryptographic protocol (key agreement, secret sharing, masking) whose "
    "client side must match Flower's server workflow exactly; a re-implementation that "
    "differs in any detail would look like it protects updates while it does not, so "
    "flwr-sdk offers none rather than an unaudited one. Run this client with Flower "
    "itself (flwr) for secure aggregation, or use LocalDpMod / fixedclipping_mod / "
    "adaptiveclipping_mod from flwr_sdk.client.mod for differential privacy."
)
"""Why :data:`SECURE_AGGREGATION_MODS` are left out (the text of the error)."""


def __getattr__(name: str) -> object:
    """Raise :class:`UnsupportedFeatureError` for the secure-aggregation mods."""
    if name in SECURE_AGGREGATION_MODS:
        raise UnsupportedFeatureError(
            f"{name}: {SECURE_AGGREGATION_REASON}", name=name, path=__file__
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
