"""``flwr_sdk.cli_display``: what ``flwr-sdk client`` draws, from synthetic node events."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from flwr_sdk.cli_display import ClientDisplay, format_size
from flwr_sdk.events import (
    TRANSFER_PROGRESS_STEP,
    Connected,
    Disconnected,
    InstructionFailed,
    InstructionReceived,
    NodeEvent,
    NodeSummary,
    Registered,
    ReplySent,
    Retrying,
    Stopped,
    TransferProgress,
)

MiB = 1 << 20
MODEL = 64 * MiB
ANSI = re.compile(r"\x1b\[")


def transfer(direction: str, total: int | None, size: int = MODEL) -> Iterator[TransferProgress]:
    """Progress events as a node reports them: 0, every step, and the end."""
    done = 0
    while True:
        yield TransferProgress(direction, done, total)  # type: ignore[arg-type]
        if done == size:
            return
        done = min(done + TRANSFER_PROGRESS_STEP, size)


def two_rounds(total_known: bool = True) -> list[NodeEvent]:
    """A 64 MiB model: round 1 trains and evaluates, round 2's training fails."""
    total = MODEL if total_known else None
    events: list[NodeEvent] = [
        Retrying(delay=1.25, reason="ServerUnavailableError: connection refused", attempt=1),
        Connected(address="127.0.0.1:9092", transport="grpc-rere", line="1.12"),
        Registered(node_id=42),
    ]
    for rnd, fails in (("1", False), ("2", True)):
        events += transfer("receive", total)
        events.append(InstructionReceived(1, f"m{rnd}", "train", rnd, MODEL))
        if fails:
            events.append(InstructionFailed("train", rnd, "ValueError: bad shape"))
            events.append(ReplySent("train", rnd, 0, 0.02, True))
            continue
        events += transfer("send", total)
        events.append(ReplySent("train", rnd, MODEL, 2.5, False))
        events += transfer("receive", total)
        events.append(InstructionReceived(1, f"e{rnd}", "evaluate", rnd, MODEL))
        events += transfer("send", 120, size=120)
        events.append(ReplySent("evaluate", rnd, 0, 0.1, False))
    events.append(Disconnected(reason="the server ended the run", will_reconnect=False))
    summary = NodeSummary(
        handled={"train": 2, "evaluate": 1},
        failed={"train": 1},
        first_errors={"train": "ValueError: bad shape"},
    )
    events.append(Stopped(summary=summary, error=None))
    return events


def draw(events: list[NodeEvent], **kwargs: object) -> tuple[ClientDisplay, str]:
    out = io.StringIO()
    display = ClientDisplay(out, **kwargs)  # type: ignore[arg-type]
    for event in events:
        display(event)
    display.close()
    return display, out.getvalue()


def test_plain_lines_per_round_without_control_codes() -> None:
    display, text = draw(two_rounds(), style="plain")
    assert not display.uses_rich
    assert not ANSI.search(text), text
    lines = text.splitlines()
    assert lines[0] == "retrying in 1.2 s (retry 1): ServerUnavailableError: connection refused"
    assert lines[1] == (
        "connected to 127.0.0.1:9092 over grpc-rere; the SuperLink speaks the Flower 1.12 Fleet API"
    )
    assert lines[2] == "registered as node 42"
    rounds = [line for line in lines if line.startswith("round ")]
    assert rounds == [
        "round 1   train          received  64.0 MiB",
        "round 1   train          replied   64.0 MiB in 2.50 s",
        "round 1   evaluate       received  64.0 MiB",
        "round 1   evaluate       replied   0 B in 0.10 s",
        "round 2   train          received  64.0 MiB",
        "round 2   train          FAILED    ValueError: bad shape",
        "round 2   train          replied   error reply in 0.02 s",
    ]
    assert "disconnected (the server ended the run); not reconnecting" in lines
    assert lines[-1] == "stopped: 1 of 2 train instructions failed (first: ValueError: bad shape)"
    assert display.stopped is not None and display.stopped.summary.failures == 1


def test_plain_progress_of_a_64_mib_transfer_is_a_line_per_quarter() -> None:
    _, text = draw(two_rounds(), style="plain")
    lines = text.splitlines()
    first = lines.index("round 1   train          received  64.0 MiB")
    assert lines[first - 3 : first] == [
        "  receiving 16.0 MiB of 64.0 MiB (25%)",
        "  receiving 32.0 MiB of 64.0 MiB (50%)",
        "  receiving 48.0 MiB of 64.0 MiB (75%)",
    ]
    sent = lines.index("round 1   train          replied   64.0 MiB in 2.50 s")
    assert lines[sent - 1] == "  sending 48.0 MiB of 64.0 MiB (75%)"
    # 3 big receives and 1 big send; the 120-byte reply draws no progress
    assert sum("receiving" in line for line in lines) == 9
    assert sum("sending" in line for line in lines) == 3


def test_plain_progress_when_the_size_is_unknown() -> None:
    _, text = draw(two_rounds(total_known=False), style="plain")
    lines = text.splitlines()
    first = lines.index("round 1   train          received  64.0 MiB")
    assert lines[first - 4 : first] == [
        "  receiving 16.0 MiB",
        "  receiving 32.0 MiB",
        "  receiving 48.0 MiB",
        "  receiving 64.0 MiB",
    ]


def test_rich_draws_a_progress_bar_for_a_64_mib_transfer() -> None:
    display, text = draw(two_rounds(), style="rich")
    assert display.uses_rich
    assert "━" in text  # the bar
    assert "32.0/64.0 MiB" in text  # rich's DownloadColumn, binary units
    assert "receiving" in text and "sending" in text
    plain = ANSI.sub("", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))
    for line in (
        "round 1   train          received  64.0 MiB",
        "round 1   train          replied   64.0 MiB in 2.50 s",
        "round 2   train          FAILED    ValueError: bad shape",
        "stopped: 1 of 2 train instructions failed (first: ValueError: bad shape)",
    ):
        assert line in plain, (line, plain)


def test_rich_prints_reasons_verbatim_not_as_markup() -> None:
    _, text = draw([InstructionFailed("train", "3", "KeyError: '[bold]x[/bold]'")], style="rich")
    assert "[bold]x[/bold]" in text


def test_small_transfers_draw_no_bar() -> None:
    events: list[NodeEvent] = [*transfer("receive", 3 * MiB, size=3 * MiB)]
    events.append(InstructionReceived(1, "m", "train", "1", 3 * MiB))
    _, text = draw(events, style="rich")
    assert "━" not in text
    _, text = draw(events, style="plain")
    assert text == "round 1   train          received  3.0 MiB\n"


def test_a_bar_left_open_is_closed() -> None:
    """start_client raised mid-transfer: close() ends the bar, the next line is clean."""
    events = list(transfer("receive", MODEL))[:5]
    display, text = draw(events, style="rich")
    assert "━" in text
    assert display.stopped is None


def test_stopped_with_an_error_and_no_instructions() -> None:
    error = "RetriesExhaustedError: connecting to 127.0.0.1:1 failed 2 times"
    _, text = draw([Stopped(NodeSummary(), error)], style="plain")
    assert text.splitlines() == [
        "stopped: no instructions handled",
        f"stopped with an error: {error}",
    ]
    _, text = draw([Stopped(NodeSummary(), error)], style="plain", show_error=False)
    assert text.splitlines() == ["stopped: no instructions handled"]


def test_auto_style_is_plain_on_a_pipe() -> None:
    display = ClientDisplay(io.StringIO())
    assert not display.uses_rich


def test_bidi_connection_has_no_line() -> None:
    _, text = draw([Connected("127.0.0.1:8080", "grpc-bidi", None)], style="plain")
    assert text == "connected to 127.0.0.1:8080 over grpc-bidi\n"


def test_bad_style() -> None:
    with pytest.raises(ValueError, match="style"):
        ClientDisplay(io.StringIO(), style="fancy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (MODEL, "64.0 MiB"), (3 << 30, "3.0 GiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_grpc_bidi_lines_have_no_round() -> None:
    events: list[NodeEvent] = [
        InstructionReceived(0, "m", "train", "", MODEL),
        ReplySent("train", "", MODEL, 1.5, False),
    ]
    _, text = draw(events, style="plain")
    assert text.splitlines() == [
        "train          received  64.0 MiB",
        "train          replied   64.0 MiB in 1.50 s",
    ]
