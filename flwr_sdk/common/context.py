"""The :class:`Context` a client's code runs in (Flower 1.12's ``flwr.common.Context``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flwr_sdk.common.records import RecordSet

__all__ = ["Context", "UserConfig", "UserConfigValue"]

UserConfigValue = bool | float | int | str
"""A value of ``run_config`` / ``node_config``."""
UserConfig = dict[str, UserConfigValue]
"""A run or node configuration."""


def _check_config(name: str, config: object) -> UserConfig:
    """``config`` itself when it is a valid ``dict``; a dict copy of another mapping."""
    if not isinstance(config, Mapping):
        raise TypeError(f"Context.{name} must be a mapping, got {type(config).__name__}")
    for key, value in config.items():
        if not isinstance(key, str):
            raise TypeError(f"Context.{name} keys must be str, got {type(key).__name__}")
        if not isinstance(value, (bool, float, int, str)):
            raise TypeError(
                f"Context.{name} value for key {key!r} must be bool, float, int or str, "
                f"got {type(value).__name__}"
            )
    return config if isinstance(config, dict) else dict(config)


def _check_id(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Context.{name} must be int, got {type(value).__name__}")
    return value


@dataclass
class Context:
    """Where a client runs: its node, the run's configuration and state kept across messages.

    A dataclass, as in Flower 1.12, and every attribute is a plain, writable attribute:
    ``run_config`` and ``node_config`` are ordinary dicts (the dicts passed in are kept,
    not copied) and user code may change them or set attributes of its own. One Context
    exists per run: the same object (and so the same ``state``, ``run_config`` and
    attributes) is passed for every message of that run, so changes persist across the
    run's messages.

    ``state`` outlives single messages, so an Array stored in it is never aliased by an
    array handed to user code (see :class:`~flwr_sdk.common.records.RecordSet`): arrays
    you got earlier from a received message cannot change it later, and ``numpy()`` on
    its Arrays returns copies, as in Flower.

    The constructor takes Flower 1.12's arguments in Flower's order, plus ``run_id``.

    Args:
        node_id: this node's id (``-1`` on grpc-bidi, which has no node ids).
        node_config: the node's configuration (``{}`` with ``start_client``).
        state: the run's state, kept across messages (also when assigned later).
        run_config: the run's configuration.
        run_id: the run's id (``0`` on grpc-bidi); not in Flower 1.12 (1.13 added it).

    Raises:
        TypeError: an argument has the wrong type (the ids must be ``int``, ``state`` a
            RecordSet, the configs mappings of ``str`` to bool, float, int or str).

    """

    node_id: int
    node_config: UserConfig
    state: RecordSet
    run_config: UserConfig
    run_id: int = 0

    def __post_init__(self) -> None:
        """Check the arguments; turn config mappings that are not dicts into dicts."""
        _check_id("node_id", self.node_id)
        _check_id("run_id", self.run_id)
        self.node_config = _check_config("node_config", self.node_config)
        self.run_config = _check_config("run_config", self.run_config)

    def __setattr__(self, name: str, value: object) -> None:
        """Set an attribute; a new ``state`` is checked and kept safe from aliasing."""
        if name == "state":
            if not isinstance(value, RecordSet):
                raise TypeError(f"Context.state must be RecordSet, got {type(value).__name__}")
            value._make_shared()
        super().__setattr__(name, value)
