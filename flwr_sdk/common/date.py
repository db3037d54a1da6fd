"""Flower's ``flwr.common.now``."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["now"]


def now() -> datetime:
    """The current time as a timezone-aware ``datetime`` in UTC."""
    return datetime.now(tz=timezone.utc)
