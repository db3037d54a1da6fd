"""What every wire line shares: the shapes a session hands upward."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ConfigScalar = bool | bytes | float | int | str


@dataclass(frozen=True)
class Reconnect:
    """The server asked the node to leave: come back after ``seconds``, or never if None."""

    seconds: float | None


@dataclass(frozen=True)
class RunInfo:
    """What the server says about a run (Fleet API ``GetRun``/``GetFab``)."""

    run_id: int
    run_config: Mapping[str, ConfigScalar] = field(default_factory=lambda: MappingProxyType({}))
    fab_id: str = ""
    fab_version: str = ""
    fab_hash: str = ""
