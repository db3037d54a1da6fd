"""Tests for flwr_sdk.transport.retry."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time

import pytest

from flwr_sdk.errors import RetriesExhaustedError, ServerUnavailableError
from flwr_sdk.events import NodeEvent, Retrying
from flwr_sdk.transport.retry import Backoff, RetryPolicy, call_failure, failure_reason


def _no_jitter() -> float:
    """A ``random`` that makes every wait its nominal value."""
    return 1.0


class FakeTime:
    """A fake monotonic clock whose sleep advances it; records the sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """An attempt that fails ``failures`` times (taking ``duration`` fake seconds each)."""

    def __init__(
        self,
        fake: FakeTime,
        failures: int | None,
        *,
        duration: float = 0.0,
        error: type[Exception] = ServerUnavailableError,
    ) -> None:
        self.fake = fake
        self.failures = failures
        self.duration = duration
        self.error = error
        self.started_at: list[float] = []

    async def __call__(self) -> str:
        self.started_at.append(self.fake.now)
        self.fake.now += self.duration
        if self.failures is None or len(self.started_at) <= self.failures:
            raise self.error(f"down #{len(self.started_at)}")
        return "ok"


def _policy(
    fake: FakeTime, max_retries: int | None, max_wait_time: float | None, **kw: object
) -> RetryPolicy:
    return RetryPolicy(
        max_retries,
        max_wait_time,
        sleep=fake.sleep,
        clock=fake.clock,
        **kw,  # type: ignore[arg-type]
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_retries": True, "max_wait_time": None}, TypeError, "max_retries"),
        ({"max_retries": 1.0, "max_wait_time": None}, TypeError, "max_retries"),
        ({"max_retries": "3", "max_wait_time": None}, TypeError, "max_retries"),
        ({"max_retries": -1, "max_wait_time": None}, ValueError, "max_retries"),
        ({"max_retries": None, "max_wait_time": "5"}, TypeError, "max_wait_time"),
        ({"max_retries": None, "max_wait_time": False}, TypeError, "max_wait_time"),
        ({"max_retries": None, "max_wait_time": -0.1}, ValueError, "max_wait_time"),
        ({"max_retries": None, "max_wait_time": float("nan")}, ValueError, "max_wait_time"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_accepts_limits() -> None:
    policy = RetryPolicy(0, 0)
    assert RetryPolicy(None, 2.5).max_wait_time == 2.5
    assert RetryPolicy(None, 3).max_wait_time == 3.0
    assert repr(policy) == "RetryPolicy(max_retries=0, max_wait_time=0.0)"


# --- waits / Backoff --------------------------------------------------------------------------


def test_waits_without_jitter_double_and_cap() -> None:
    policy = RetryPolicy(8, None, random=_no_jitter)
    assert list(policy.waits()) == [1, 2, 4, 8, 16, 20, 20, 20]


def test_waits_full_jitter_is_uniform_fraction_of_nominal() -> None:
    values = iter([0.5, 0.0, 0.999, 0.25])
    policy = RetryPolicy(4, None, random=lambda: next(values))
    assert list(policy.waits()) == pytest.approx([0.5, 0.0, 3.996, 2.0])


def test_waits_jitter_stays_in_range() -> None:
    policy = RetryPolicy(None, None)
    nominal = [min(20.0, 2.0**i) for i in range(200)]
    for wait, top in zip(itertools.islice(policy.waits(), 200), nominal, strict=True):
        assert 0.0 <= wait <= top


def test_unlimited_waits_are_infinite_and_do_not_overflow() -> None:
    policy = RetryPolicy(None, None, random=_no_jitter)
    assert list(itertools.islice(policy.waits(), 2000))[-1] == 20.0


def test_backoff_reset() -> None:
    backoff = Backoff(random=_no_jitter)
    assert [backoff.next_wait() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0]
    backoff.reset()
    assert backoff.next_wait() == 1.0


def test_backoff_clamps_random() -> None:
    assert Backoff(random=lambda: 7.0).next_wait() == 1.0
    assert Backoff(random=lambda: -1.0).next_wait() == 0.0


# --- run ----------------------------------------------------------------------------------------


def test_success_first_try(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    attempt = Flaky(fake, 0)
    with caplog.at_level(logging.DEBUG, logger="flwr_sdk"):
        result = asyncio.run(_policy(fake, 3, None).run(attempt, describe="Connecting"))
    assert result == "ok"
    assert fake.sleeps == []
    assert caplog.records == []


def test_success_after_retries_logs_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    attempt = Flaky(fake, 2)
    policy = _policy(fake, 4, None, random=_no_jitter)
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        result = asyncio.run(policy.run(attempt, describe="Connecting to 127.0.0.1:8080"))
    assert result == "ok"
    assert len(attempt.started_at) == 3
    assert fake.sleeps == [1.0, 2.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "Connecting to 127.0.0.1:8080 failed (attempt 1 of 5): down #1; retrying in 1.00 s",
        "Connecting to 127.0.0.1:8080 failed (attempt 2 of 5): down #2; retrying in 2.00 s",
    ]
    assert {r.name for r in caplog.records} == {"flwr_sdk", "flwr_sdk.retry"}
    assert all(r.name == "flwr_sdk.retry" for r in warnings)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["Connecting to 127.0.0.1:8080 succeeded after 3 attempts in 3.00 s"]


def test_unlimited_retries_log_without_total(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        asyncio.run(
            _policy(fake, None, None, random=lambda: 0.5).run(Flaky(fake, 1), describe="Pinging")
        )
    assert caplog.records[0].getMessage().startswith("Pinging failed (attempt 1): ")
    assert caplog.records[0].getMessage().endswith("retrying in 0.50 s")


def test_max_retries_exhausted() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None)
    policy = _policy(fake, 2, None, random=_no_jitter)
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(policy.run(attempt, describe="Connecting to x:1"))
    error = info.value
    assert error.attempts == 3
    assert len(attempt.started_at) == 3
    assert error.elapsed == pytest.approx(3.0)
    assert fake.sleeps == [1.0, 2.0]
    assert isinstance(error.__cause__, ServerUnavailableError)
    assert str(error.__cause__) == "down #3"
    message = str(error)
    assert "max_retries=2" in message
    assert "max_wait_time=None" in message
    assert "Connecting to x:1" in message
    assert "3 times" in message


def test_zero_retries_means_one_attempt() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None)
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(_policy(fake, 0, None).run(attempt, describe="x"))
    assert info.value.attempts == 1
    assert fake.sleeps == []


def test_non_retryable_propagates_immediately() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None, error=PermissionError)
    with pytest.raises(PermissionError, match="down #1"):
        asyncio.run(_policy(fake, 5, None).run(attempt, describe="x"))
    assert len(attempt.started_at) == 1
    assert fake.sleeps == []


def test_non_retryable_after_retryable_propagates_unchanged() -> None:
    fake = FakeTime()
    errors = [ServerUnavailableError("a"), KeyError("b")]

    async def attempt() -> None:
        raise errors.pop(0)

    with pytest.raises(KeyError, match="b"):
        asyncio.run(_policy(fake, 5, None).run(attempt, describe="x"))
    assert len(fake.sleeps) == 1


def test_max_wait_time_clips_last_wait() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None)
    policy = _policy(fake, None, 2.5, random=_no_jitter)
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(policy.run(attempt, describe="x"))
    assert fake.sleeps == [1.0, 1.5]
    starts = [t - 100.0 for t in attempt.started_at]
    assert starts == [0.0, 1.0, 2.5]
    assert info.value.attempts == 3
    assert info.value.elapsed == pytest.approx(2.5)
    assert "max_wait_time=2.5" in str(info.value)
    assert "max_retries=None" in str(info.value)


def test_no_attempt_starts_after_budget_with_slow_attempts() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None, duration=1.0)
    policy = _policy(fake, 10, 3.0, random=_no_jitter)
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(policy.run(attempt, describe="x"))
    starts = [t - 100.0 for t in attempt.started_at]
    assert starts == [0.0, 2.0]  # fail at 1, wait 1, attempt at 2 fails at 3 = budget
    assert all(s <= 3.0 for s in starts)
    assert info.value.attempts == 2


def test_zero_wait_time_means_one_attempt() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None)
    with pytest.raises(RetriesExhaustedError):
        asyncio.run(_policy(fake, None, 0).run(attempt, describe="x"))
    assert len(attempt.started_at) == 1


def test_both_limits_first_one_wins() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, None)
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(_policy(fake, 100, 10.0, random=_no_jitter).run(attempt, describe="x"))
    # waits 1, 2, 4, then clipped to 3 -> attempts at 0, 1, 3, 7, 10
    assert [t - 100.0 for t in attempt.started_at] == [0.0, 1.0, 3.0, 7.0, 10.0]
    assert info.value.attempts == 5


def test_unlimited_keeps_going_with_capped_waits() -> None:
    fake = FakeTime()
    attempt = Flaky(fake, 30)
    result = asyncio.run(_policy(fake, None, None, random=_no_jitter).run(attempt, describe="x"))
    assert result == "ok"
    assert len(attempt.started_at) == 31
    assert max(fake.sleeps) == 20.0


def test_cancellation_during_wait_propagates() -> None:
    async def run() -> None:
        policy = RetryPolicy(None, None, random=_no_jitter)

        async def attempt() -> None:
            raise ServerUnavailableError("down")

        task = asyncio.create_task(policy.run(attempt, describe="x"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.exclusive  # times a wall-clock bound
def test_real_time_gives_up_against_closed_port() -> None:
    """max_retries=2 with the real clock: waits 1 s + 2 s (no jitter), then gives up."""
    port = _closed_port()
    attempts = 0

    async def connect() -> None:
        nonlocal attempts
        attempts += 1
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError as exc:
            raise ServerUnavailableError(f"connection refused: {exc}") from exc
        writer.close()  # pragma: no cover - the port is closed

    policy = RetryPolicy(2, None, random=_no_jitter)
    start = time.monotonic()
    with pytest.raises(RetriesExhaustedError) as info:
        asyncio.run(
            policy.run(
                connect,
                describe=f"Connecting to 127.0.0.1:{port}",
            )
        )
    elapsed = time.monotonic() - start
    assert attempts == 3
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, ServerUnavailableError)
    assert 3.0 <= elapsed < 3.8
    assert 3.0 <= info.value.elapsed < 3.8


# --- failure texts and events ------------------------------------------------------------------


def test_failure_texts_name_the_call_once() -> None:
    error = ServerUnavailableError("Ping failed: UNAVAILABLE: connection refused")
    assert call_failure("Ping", error) == "Ping failed: UNAVAILABLE: connection refused"
    assert failure_reason(error, "Ping") == "UNAVAILABLE: connection refused"
    # Errors that do not name the call get its name once; foreign ones keep their type.
    assert call_failure("Ping", ServerUnavailableError("TLS handshake failed")) == (
        "Ping failed: TLS handshake failed"
    )
    assert call_failure("DeleteNode", OSError("reset")) == "DeleteNode failed: OSError: reset"
    assert failure_reason(KeyError()) == "KeyError"


def test_a_call_name_in_the_error_is_not_repeated_in_retry_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    errors = [ServerUnavailableError("PullTaskIns failed: UNAVAILABLE: gone")]

    async def attempt() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    policy = _policy(fake, 3, None, random=_no_jitter)
    with caplog.at_level(logging.WARNING, logger="flwr_sdk"):
        asyncio.run(
            policy.run(
                attempt,
                describe="PullTaskIns (node 5)",
                call="PullTaskIns",
            )
        )
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "PullTaskIns (node 5) failed (attempt 1 of 4): UNAVAILABLE: gone; retrying in 1.00 s"
    )


def test_each_wait_is_reported_as_a_retrying_event_and_giving_up_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    events: list[NodeEvent] = []
    policy = _policy(fake, 2, None, random=_no_jitter, on_event=events.append)
    with (
        caplog.at_level(logging.WARNING, logger="flwr_sdk"),
        pytest.raises(RetriesExhaustedError, match="giving up"),
    ):
        asyncio.run(policy.run(Flaky(fake, None), describe="Connecting"))
    assert events == [
        Retrying(1.0, "Connecting failed: down #1", 1),
        Retrying(2.0, "Connecting failed: down #2", 2),
    ]
    # Two waits logged; the final failure is the error the caller gets, not a log line.
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "Connecting failed (attempt 1 of 3): down #1",
        "Connecting failed (attempt 2 of 3): down #2",
    ]
