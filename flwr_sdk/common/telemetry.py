"""Flower's telemetry names, as harmless no-ops: flwr-sdk sends no telemetry.

Flower 1.12 reports usage events (``event(EventType.START_CLIENT_ENTER)``) to its
telemetry server unless ``FLWR_TELEMETRY_ENABLED=0``. flwr-sdk never does; these exist so
that code written for ``flwr.common`` runs unchanged. :func:`event` sends nothing and
returns an already completed future.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from enum import Enum
from typing import Any

__all__ = ["EventType", "event"]


class EventType(str, Enum):
    """The event names of Flower 1.12's telemetry (each value is its name)."""

    PING = "PING"
    START_CLIENT_ENTER = "START_CLIENT_ENTER"
    START_CLIENT_LEAVE = "START_CLIENT_LEAVE"
    START_SERVER_ENTER = "START_SERVER_ENTER"
    START_SERVER_LEAVE = "START_SERVER_LEAVE"
    START_SIMULATION_ENTER = "START_SIMULATION_ENTER"
    START_SIMULATION_LEAVE = "START_SIMULATION_LEAVE"
    RUN_SUPEREXEC_ENTER = "RUN_SUPEREXEC_ENTER"
    RUN_SUPEREXEC_LEAVE = "RUN_SUPEREXEC_LEAVE"
    CLI_FLOWER_SIMULATION_ENTER = "CLI_FLOWER_SIMULATION_ENTER"
    CLI_FLOWER_SIMULATION_LEAVE = "CLI_FLOWER_SIMULATION_LEAVE"
    PYTHON_API_RUN_SIMULATION_ENTER = "PYTHON_API_RUN_SIMULATION_ENTER"
    PYTHON_API_RUN_SIMULATION_LEAVE = "PYTHON_API_RUN_SIMULATION_LEAVE"
    RUN_SUPERLINK_ENTER = "RUN_SUPERLINK_ENTER"
    RUN_SUPERLINK_LEAVE = "RUN_SUPERLINK_LEAVE"
    RUN_SUPERNODE_ENTER = "RUN_SUPERNODE_ENTER"
    RUN_SUPERNODE_LEAVE = "RUN_SUPERNODE_LEAVE"
    RUN_SERVER_APP_ENTER = "RUN_SERVER_APP_ENTER"
    RUN_SERVER_APP_LEAVE = "RUN_SERVER_APP_LEAVE"
    RUN_CLIENT_APP_ENTER = "RUN_CLIENT_APP_ENTER"
    RUN_CLIENT_APP_LEAVE = "RUN_CLIENT_APP_LEAVE"


def event(event_type: EventType, event_details: Mapping[str, Any] | None = None) -> Future[None]:
    """Accept a telemetry event and send nothing; return a completed future (result ``None``).

    Raises:
        TypeError: ``event_type`` is not an :class:`EventType` or ``event_details`` not a
            mapping.

    """
    if not isinstance(event_type, EventType):
        raise TypeError(f"event_type must be an EventType, got {type(event_type).__name__}")
    if event_details is not None and not isinstance(event_details, Mapping):
        raise TypeError(
            f"event_details must be a mapping or None, got {type(event_details).__name__}"
        )
    done: Future[None] = Future()
    done.set_result(None)
    return done
