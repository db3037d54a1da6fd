"""Flower's ``flwr.client.typing``: the type names of client functions and mods.

Custom mods written for Flower import ``ClientAppCallable`` from here. Note Flower's
naming: ``ClientFn`` is the deprecated ``(cid: str) -> Client`` form and
``ClientFnExt`` the ``(context: Context) -> Client`` form ``ClientApp`` expects.
"""

from collections.abc import Callable

from flwr_sdk.clientapp.app import ClientAppCallable, Mod
from flwr_sdk.clientapp.client import Client
from flwr_sdk.common.context import Context

__all__ = ["ClientAppCallable", "ClientFn", "ClientFnExt", "Mod"]

ClientFn = Callable[[str], Client]
"""The deprecated ``client_fn(cid: str) -> Client`` form (adapted with a warning)."""
ClientFnExt = Callable[[Context], Client]
"""``client_fn(context: Context) -> Client``, the form ``ClientApp`` expects."""
