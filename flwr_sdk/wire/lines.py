"""The Flower wire lines this SDK speaks, by name.

A line is one adapter module under :mod:`flwr_sdk.wire` with a ``LINE`` object (a
:class:`~flwr_sdk.wire.base.FleetLine`); :func:`get_line` imports only the one asked
for. Adding a line adds a row here (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib

from flwr_sdk.wire.base import FleetLine

__all__ = ["LINE_MODULES", "all_lines", "get_line"]

LINE_MODULES: dict[str, str] = {
    "1.42": "flwr_sdk.wire.v1_42",
    "1.15": "flwr_sdk.wire.v1_15",
    "1.12": "flwr_sdk.wire.v1_12",
}
"""Line name → the adapter module that implements it, newest first (detection order)."""


def get_line(name: str) -> FleetLine:
    """The adapter of line ``name``.

    Raises:
        ValueError: no such line (the message lists the supported ones).

    """
    module_name = LINE_MODULES.get(name)
    if module_name is None:
        raise ValueError(f"unknown Flower wire line {name!r}; supported: {', '.join(LINE_MODULES)}")
    line: FleetLine = importlib.import_module(module_name).LINE
    return line


def all_lines() -> list[FleetLine]:
    """Every supported line's adapter, newest first."""
    return [get_line(name) for name in LINE_MODULES]
