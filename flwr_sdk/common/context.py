"""The :class:`Context` a client's code runs in."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flwr_sdk.common.records import RecordSet

__all__ = ["Context", "UserConfig", "UserConfigValue"]

UserConfigValue = bool | float | int | str
"""A value of ``run_config`` / ``node_config``."""
UserConfig = dict[str, UserConfigValue]
"""A run or node configuration."""


def _check_config(name: str, config: object) -> dict[str, UserConfigValue]:
    if not isinstance(config, Mapping):
        raise TypeError(f"Context.{name} must be a mapping, got {type(config).__name__}")
    result: dict[str, UserConfigValue] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise TypeError(f"Context.{name} keys must be str, got {type(key).__name__}")
        if not isinstance(value, (bool, float, int, str)):
            raise TypeError(
                f"Context.{name} value for key {key!r} must be bool, float, int or str, "
                f"got {type(value).__name__}"
            )
        result[key] = value
    return result


class Context:
    """Where a client runs: its node, the run's configuration and state kept across messages.

    One Context exists per run: the same object (and so the same ``state`` RecordSet) is
    passed for every message of that run, so changes to ``state`` persist.
    ``run_config`` is read-only: item assignment raises :class:`TypeError` and the
    attribute itself cannot be replaced.

    Args:
        node_id: this node's id (``-1`` on grpc-bidi, which has no node ids).
        node_config: the node's configuration (``{}`` with ``start_client``).
        state: the run's state, kept across messages.
        run_config: the run's configuration (copied, then frozen).
        run_id: the run's id (``0`` on grpc-bidi).

    """

    __slots__ = ("_run_config", "node_config", "node_id", "run_id", "state")

    def __init__(
        self,
        node_id: int,
        node_config: Mapping[str, UserConfigValue],
        state: RecordSet,
        run_config: Mapping[str, UserConfigValue],
        run_id: int = 0,
    ) -> None:
        """Create a Context (see class docstring)."""
        for name, value in (("node_id", node_id), ("run_id", run_id)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Context.{name} must be int, got {type(value).__name__}")
        if not isinstance(state, RecordSet):
            raise TypeError(f"Context.state must be RecordSet, got {type(state).__name__}")
        self.node_id: int = node_id
        self.node_config: UserConfig = _check_config("node_config", node_config)
        self.state: RecordSet = state
        self.run_id: int = run_id
        self._run_config: Mapping[str, UserConfigValue] = MappingProxyType(
            _check_config("run_config", run_config)
        )

    @property
    def run_config(self) -> Mapping[str, UserConfigValue]:
        """The run's configuration, read-only."""
        return self._run_config

    def __eq__(self, other: object) -> bool:
        """Equal when every field is equal."""
        if not isinstance(other, Context):
            return NotImplemented
        return (
            self.node_id == other.node_id
            and self.run_id == other.run_id
            and self.node_config == other.node_config
            and dict(self._run_config) == dict(other._run_config)
            and self.state == other.state
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show every field."""
        return (
            f"Context(node_id={self.node_id!r}, node_config={self.node_config!r}, "
            f"state={self.state!r}, run_config={dict(self._run_config)!r}, "
            f"run_id={self.run_id!r})"
        )
