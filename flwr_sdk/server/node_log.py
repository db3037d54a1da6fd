"""The server's log of node lifecycle events, readable at thousands of nodes.

Every registration, unregistration, activation and deactivation is logged per node at
DEBUG. At INFO a burst is summed up: the first event after a quiet
:data:`PROGRESS_SECONDS` is logged at once with its node id (so a handful of nodes reads
as before: ``node 42 registered (1 nodes)``), the events that follow within the interval
are counted and logged as one line when it ends (``nodes in the last 5s: 812 registered,
3 unregistered (3000 nodes)``; a lone event keeps its per-node form). 10,000 nodes
registering thus write a few dozen INFO lines, not 10,000.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["PROGRESS_SECONDS", "NodeEventLog"]

PROGRESS_SECONDS = 5.0
"""Longest time an INFO progress line of node events is held back."""


class NodeEventLog:
    """Node events as per-node DEBUG lines and coalesced INFO progress lines.

    ``logger``: where the lines go; ``node_count``: how many nodes the state holds now
    (stated in every INFO line). Coalesced lines are flushed by a timer of the running
    event loop; without one (or on :meth:`flush`) they are written at once.
    """

    def __init__(
        self,
        logger: logging.Logger,
        node_count: Callable[[], int],
        interval: float = PROGRESS_SECONDS,
    ) -> None:
        self._log = logger
        self._node_count = node_count
        self.interval = interval
        self._held: Counter[str] = Counter()
        self._last_held = ""
        self._last_line = -float("inf")
        self._timer: asyncio.TimerHandle | None = None

    def event(self, node_id: int, what: str) -> None:
        """Node ``node_id`` was ``what`` (``registered``, ``unregistered``, …)."""
        self._log.debug("node %d %s (%d nodes)", node_id, what, self._node_count())
        if not self._log.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        if not self._held and now - self._last_line >= self.interval:
            self._last_line = now
            self._log.info("node %d %s (%d nodes)", node_id, what, self._node_count())
            return
        self._held[what] += 1
        self._last_held = f"node {node_id} {what}"
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_at(
            loop.time() + max(0.0, self._last_line + self.interval - now), self.flush
        )

    def flush(self) -> None:
        """Write the held events now (one INFO line), if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        count = self._node_count()
        if sum(self._held.values()) == 1:
            self._log.info("%s (%d nodes)", self._last_held, count)
        else:
            seconds = time.monotonic() - self._last_line
            events = ", ".join(f"{n} {what}" for what, n in self._held.items())
            self._log.info("nodes in the last %.0fs: %s (%d nodes)", seconds, events, count)
        self._held.clear()
        self._last_line = time.monotonic()
