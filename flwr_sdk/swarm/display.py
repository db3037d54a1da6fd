"""What ``flwr-sdk swarm`` shows while its nodes run: one view of the whole swarm.

:class:`SwarmDisplay` is a progress callback (:data:`flwr_sdk.swarm.runner.ProgressCallback`)
fed a :class:`~flwr_sdk.swarm.SwarmSnapshot` about twice a second. On a terminal it keeps
one rich table up to date: nodes per state (pending, connecting, registered, working,
stopped, failed), instructions and replies with their rate per second, bytes moved each
way, retries, failed instructions and the slowest nodes (by the duration of their
current or last instruction). Elsewhere it writes one plain line every
:data:`PLAIN_EVERY` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from flwr_sdk.cli_display import format_size
from flwr_sdk.swarm.stats import SwarmSnapshot

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

__all__ = ["PLAIN_EVERY", "SwarmDisplay"]

PLAIN_EVERY = 5.0
"""Seconds between two plain progress lines (when not on a terminal)."""

_STATES = ("pending", "connecting", "registered", "working", "stopped", "failed")


class SwarmDisplay:
    """Draws swarm snapshots; call :meth:`close` at the end (leaves the last view)."""

    def __init__(self, stream: TextIO | None = None, *, rich: bool | None = None) -> None:
        """Draw on ``stream`` (default stderr); ``rich`` None: only on a terminal."""
        self._stream = stream if stream is not None else sys.stderr
        use_rich = self._stream.isatty() if rich is None else rich
        self._live: Live | None = None
        if use_rich:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self._stream)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()
        self._last: SwarmSnapshot | None = None
        self._last_time = 0.0
        self._rate = 0.0
        self._last_plain = 0.0

    def __call__(self, snapshot: SwarmSnapshot) -> None:
        """Show ``snapshot``."""
        now = time.monotonic()
        if self._last is not None and now > self._last_time:
            moved = snapshot.replies - self._last.replies
            self._rate = moved / (now - self._last_time)
        self._last, self._last_time = snapshot, now
        if self._live is not None:
            self._live.update(self._table(snapshot), refresh=True)
        elif now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            print(self.line(snapshot), file=self._stream, flush=True)

    def line(self, snapshot: SwarmSnapshot) -> str:
        """One plain line about ``snapshot``."""
        states = " ".join(f"{name} {snapshot.states.get(name, 0)}" for name in _STATES)
        return (
            f"swarm: {snapshot.nodes} nodes ({states}); {snapshot.replies} replies "
            f"({self._rate:.1f}/s), {format_size(snapshot.bytes_received)} in, "
            f"{format_size(snapshot.bytes_sent)} out, {snapshot.retries} retries, "
            f"{snapshot.failed_instructions} failed instructions"
        )

    def _table(self, snapshot: SwarmSnapshot) -> Table:
        from rich.table import Table

        table = Table(title=f"flwr-sdk swarm: {snapshot.nodes} nodes", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        states = "  ".join(f"{name} {snapshot.states.get(name, 0)}" for name in _STATES)
        table.add_row("nodes", states)
        table.add_row(
            "ever", f"connected {snapshot.ever_connected}  registered {snapshot.ever_registered}"
        )
        table.add_row(
            "messages",
            f"{snapshot.instructions} received, {snapshot.replies} replied "
            f"({self._rate:.1f}/s), {snapshot.failed_instructions} failed",
        )
        table.add_row(
            "bytes",
            f"{format_size(snapshot.bytes_received)} in, {format_size(snapshot.bytes_sent)} out",
        )
        table.add_row("retries", str(snapshot.retries))
        slowest = ", ".join(f"#{pid} {seconds:.2f} s" for seconds, pid in snapshot.slowest)
        table.add_row("slowest", slowest or "-")
        return table

    def close(self) -> None:
        """Stop drawing (the last view stays on the terminal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._last is not None:
            print(self.line(self._last), file=self._stream, flush=True)
