"""Client apps that the ``flwr-sdk client`` tests run with ``--app``.

The tests put this folder on ``PYTHONPATH`` and name the apps ``cli_apps:…``:

* ``app``: a :class:`~flwr_sdk.client.ClientApp` around the ShiftClient of
  ``examples/numpy_client.py`` with a mod that writes one stderr line per message, so a
  test sees the mod run around every message;
* ``big_client_fn``: a 64 MiB model (one float32 array) that ``fit`` updates in place;
* ``failing_client_fn``: ``fit`` raises ``ValueError``, ``evaluate`` works.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from flwr_sdk.client import Client, ClientApp, NumPyClient
from flwr_sdk.clientapp.app import ClientAppCallable
from flwr_sdk.common import Context, Message

NDArrays = list[npt.NDArray[np.generic]]
Config = dict[str, bool | bytes | float | int | str]

MODEL_BYTES = 64 * 1024 * 1024
"""Size of ``big_client_fn``'s model."""


def announce_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Write ``mod: <type> round <group_id>`` to stderr, then run the rest of the chain."""
    meta = message.metadata
    print(f"mod: {meta.message_type} round {meta.group_id}", file=sys.stderr, flush=True)
    return call_next(message, context)


def _shift_client_fn(context: Context) -> Client:
    from examples.numpy_client import ShiftClient

    return ShiftClient(0).to_client()


app = ClientApp(client_fn=_shift_client_fn, mods=[announce_mod])


class BigClient(NumPyClient):
    """A 64 MiB model; ``fit`` adds 1 to the received array in place."""

    def get_parameters(self, config: Config) -> NDArrays:
        return [np.zeros(MODEL_BYTES // 4, dtype=np.float32)]

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Config]:
        parameters[0] += 1
        return parameters, 1, {}

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Config]:
        return float(parameters[0][0]), 1, {}


def big_client_fn(context: Context) -> Client:
    """A :class:`BigClient`."""
    return BigClient().to_client()


class FailingClient(NumPyClient):
    """``fit`` always raises ``ValueError: bad shape``."""

    def get_parameters(self, config: Config) -> NDArrays:
        return [np.zeros(3, dtype=np.float32)]

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Config]:
        raise ValueError("bad shape")

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Config]:
        return 0.0, 1, {}


def failing_client_fn(context: Context) -> Client:
    """A :class:`FailingClient`."""
    return FailingClient().to_client()
