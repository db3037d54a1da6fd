"""What ``flwr-sdk client`` shows while a node runs: its progress events, drawn for a person.

:class:`ClientDisplay` is an ``on_event`` callback (:data:`flwr_sdk.events.EventCallback`)
that turns the events of :mod:`flwr_sdk.events` into:

* one line per instruction received and per reply sent, with the round (Flower's
  ``group_id``), the message type, the size and, for a reply, the seconds from receiving
  the instruction to sending the reply; a line when user code failed;
* a progress bar while a big message moves (``TransferProgress``, at least
  ``bar_min_bytes``);
* a line per connection made, registration, retry (its delay and reason) and disconnection;
* a summary when the node stops (:meth:`~flwr_sdk.events.NodeSummary.describe`: the
  instructions handled per message type, or for each type with failures how many failed
  and the first error).

On a terminal it draws with `rich <https://github.com/Textualize/rich>`_ (colours, a live
progress bar that is erased when the transfer ends; rich is a base dependency); elsewhere
(a pipe, a file, a CI log) it writes plain lines without control codes, and a big
transfer's progress as a line at each quarter.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

from flwr_sdk.events import (
    TRANSFER_PROGRESS_STEP,
    Connected,
    Disconnected,
    InstructionFailed,
    InstructionReceived,
    NodeEvent,
    Registered,
    ReplySent,
    Retrying,
    Stopped,
    TransferProgress,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["ClientDisplay", "format_size"]

DisplayStyle = Literal["auto", "rich", "plain"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")
_DIRECTION = {"receive": "receiving", "send": "sending"}
_UNKNOWN_TOTAL_STEP = 4 * TRANSFER_PROGRESS_STEP
"""Bytes between two plain progress lines of a transfer whose size is not known."""


def format_size(size: int) -> str:
    """``size`` bytes in binary units: ``"812 B"``, ``"1.5 KiB"``, ``"64.0 MiB"``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _instruction_line(group_id: str, message_type: str, what: str) -> str:
    # grpc-bidi carries no round: its lines start with the message type.
    where = f"round {group_id:<3} " if group_id else ""
    return f"{where}{message_type:<14} {what}"


class _Output(Protocol):
    """Where :class:`ClientDisplay` draws: plain lines or rich."""

    def line(self, text: str, style: str) -> None:
        """Write one line (``style``: a rich style; plain output ignores it)."""

    def start_transfer(self, direction: str, total: int | None) -> None:
        """A big transfer began."""

    def update_transfer(self, done: int, total: int | None) -> None:
        """The current transfer moved ``done`` bytes so far."""

    def end_transfer(self) -> None:
        """The current transfer ended (or a new event made it stale)."""


class _PlainOutput:
    """Plain lines, flushed one by one: no control codes, readable in a log file."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._direction = ""
        self._next_mark = 0

    def line(self, text: str, style: str) -> None:
        self._file.write(text + "\n")
        self._file.flush()

    def start_transfer(self, direction: str, total: int | None) -> None:
        self._direction = direction
        self._next_mark = 1 if total is not None else _UNKNOWN_TOTAL_STEP

    def update_transfer(self, done: int, total: int | None) -> None:
        if total is not None and total > 0:
            quarter = min(4 * done // total, 4)
            if quarter >= self._next_mark and done < total:
                self.line(
                    f"  {self._direction} {format_size(done)} of {format_size(total)} "
                    f"({25 * quarter}%)",
                    "",
                )
                self._next_mark = quarter + 1
        elif total is None and done >= self._next_mark:
            self.line(f"  {self._direction} {format_size(done)}", "")
            self._next_mark = (done // _UNKNOWN_TOTAL_STEP + 1) * _UNKNOWN_TOTAL_STEP

    def end_transfer(self) -> None:
        self._direction = ""


class _RichOutput:
    """A rich console: styled lines, and a live progress bar erased when its transfer ends."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def line(self, text: str, style: str) -> None:
        from rich.text import Text

        # Text, not markup: reasons and errors are shown exactly as they are.
        self._console.print(Text(text, style=style), soft_wrap=True)

    def start_transfer(self, direction: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.end_transfer()
        self._progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
            # Redrawn on each event (every TRANSFER_PROGRESS_STEP bytes): no thread.
            auto_refresh=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(direction, total=total)

    def update_transfer(self, done: int, total: int | None) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, completed=done, total=total)
        self._progress.refresh()

    def end_transfer(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


def _rich_console(file: TextIO, style: DisplayStyle) -> Console | None:
    """A rich console on ``file`` when the display should use rich, else None."""
    if style == "plain":
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    if style == "rich":
        return Console(file=file, force_terminal=True, highlight=False)
    console = Console(file=file, highlight=False)
    return console if console.is_terminal and not console.is_dumb_terminal else None


class ClientDisplay:
    """An ``on_event`` callback that draws a node's progress for a person.

    Pass it as ``start_client(..., on_event=ClientDisplay())``; call :meth:`close` when
    ``start_client`` has returned or raised (it ends a progress bar still drawn).

    Args:
        file: where to draw (default ``sys.stdout``).
        style: ``"auto"`` (default): rich on a terminal when rich is installed, plain lines
            otherwise; ``"rich"``: rich even when ``file`` is not a terminal (tests);
            ``"plain"``: plain lines.
        bar_min_bytes: the smallest transfer that gets a progress bar.
        show_error: whether the summary at the end names the error the node stopped
            with (``flwr-sdk client`` prints that on stderr instead).

    """

    def __init__(
        self,
        file: TextIO | None = None,
        *,
        style: DisplayStyle = "auto",
        bar_min_bytes: int = 2 * TRANSFER_PROGRESS_STEP,
        show_error: bool = True,
    ) -> None:
        if style not in ("auto", "rich", "plain"):
            raise ValueError(f"style must be 'auto', 'rich' or 'plain', got {style!r}")
        target = sys.stdout if file is None else file
        console = _rich_console(target, style)
        self._out: _Output = _PlainOutput(target) if console is None else _RichOutput(console)
        self._bar_min_bytes = bar_min_bytes
        self._show_error = show_error
        # The transfer drawn now: its direction and the bytes done at its last event.
        self._transfer: tuple[str, int] | None = None
        self._stopped: Stopped | None = None

    @property
    def uses_rich(self) -> bool:
        """Whether this display draws with rich (else plain lines)."""
        return isinstance(self._out, _RichOutput)

    @property
    def stopped(self) -> Stopped | None:
        """The node's :class:`~flwr_sdk.events.Stopped` event, once it came."""
        return self._stopped

    def __call__(self, event: NodeEvent) -> None:
        """Draw one event."""
        if isinstance(event, TransferProgress):
            self._on_transfer(event)
            return
        self._end_transfer()
        if isinstance(event, Connected):
            over = f"{event.address} over {event.transport}"
            line = f"; the SuperLink speaks the Flower {event.line} Fleet API" if event.line else ""
            self._out.line(f"connected to {over}{line}", "green")
        elif isinstance(event, Registered):
            self._out.line(f"registered as node {event.node_id}", "")
        elif isinstance(event, Retrying):
            self._out.line(
                f"retrying in {event.delay:.1f} s (retry {event.attempt}): {event.reason}",
                "yellow",
            )
        elif isinstance(event, InstructionReceived):
            what = f"received  {format_size(event.size)}"
            self._out.line(_instruction_line(event.group_id, event.message_type, what), "")
        elif isinstance(event, InstructionFailed):
            what = f"FAILED    {event.error}"
            self._out.line(_instruction_line(event.group_id, event.message_type, what), "red")
        elif isinstance(event, ReplySent):
            sent = "error reply" if event.failed else format_size(event.size)
            what = f"replied   {sent} in {event.duration:.2f} s"
            line = _instruction_line(event.group_id, event.message_type, what)
            self._out.line(line, "red" if event.failed else "")
        elif isinstance(event, Disconnected):
            then = "reconnecting" if event.will_reconnect else "not reconnecting"
            self._out.line(f"disconnected ({event.reason}); {then}", "yellow")
        elif isinstance(event, Stopped):
            self._on_stopped(event)

    def close(self) -> None:
        """End a progress bar that is still drawn (``start_client`` returned or raised)."""
        self._end_transfer()

    def _on_transfer(self, event: TransferProgress) -> None:
        if self._transfer is not None:
            direction, last_done = self._transfer
            if direction != event.direction or event.done < last_done:
                self._end_transfer()  # another message's bytes: that one is over
        complete = event.total is not None and event.done >= event.total
        if self._transfer is None:
            size = event.total if event.total is not None else event.done
            if complete or size < self._bar_min_bytes:
                return
            self._out.start_transfer(_DIRECTION[event.direction], event.total)
        self._transfer = (event.direction, event.done)
        self._out.update_transfer(event.done, event.total)
        if complete:
            self._end_transfer()

    def _end_transfer(self) -> None:
        if self._transfer is not None:
            self._out.end_transfer()
            self._transfer = None

    def _on_stopped(self, event: Stopped) -> None:
        self._stopped = event
        failed = event.summary.failures > 0
        self._out.line(f"stopped: {event.summary.describe()}", "bold red" if failed else "bold")
        if event.error is not None and self._show_error:
            self._out.line(f"stopped with an error: {event.error}", "bold red")
