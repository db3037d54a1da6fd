"""The client mods Flower 1.12 ships (``flwr.client.mod``), minus secure aggregation.

A mod is a callable ``mod(message, context, call_next) -> Message`` that a
:class:`~flwr_sdk.clientapp.app.ClientApp` runs around every message
(``ClientApp(client_fn=..., mods=[...])``); it may look at or change the message, call
``call_next(message, context)`` for the reply, and look at or change the reply.

* :func:`message_size_mod`, :func:`parameters_size_mod`: log sizes (:mod:`.comms`);
* :func:`fixedclipping_mod`, :func:`adaptiveclipping_mod`: client-side clipping for
  Flower's central-DP server wrappers; :class:`LocalDpMod`: local DP (:mod:`.dp`);
* :func:`make_ffn`: wraps a function in a list of mods.

Flower's ``secagg_mod`` and ``secaggplus_mod`` are not provided (see
``docs/flower-api.md``); ``flwr_sdk.client.mod`` explains this when they are imported.
"""

from flwr_sdk.clientapp.app import make_ffn
from flwr_sdk.clientapp.mods.comms import message_size_mod, parameters_size_mod
from flwr_sdk.clientapp.mods.dp import (
    KEY_CLIPPING_NORM,
    KEY_NORM_BIT,
    LocalDpMod,
    adaptiveclipping_mod,
    fixedclipping_mod,
)

__all__ = [
    "KEY_CLIPPING_NORM",
    "KEY_NORM_BIT",
    "LocalDpMod",
    "adaptiveclipping_mod",
    "fixedclipping_mod",
    "make_ffn",
    "message_size_mod",
    "parameters_size_mod",
]
