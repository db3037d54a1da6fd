"""The reconnection policy shared by all transports.

Semantics (Flower 1.15's, made explicit):

* at most ``max_retries + 1`` attempts (``None``: unlimited);
* the total time is bounded by ``max_wait_time`` seconds (``None``: unlimited): each wait
  is clipped to the time that remains, and no attempt starts once the budget is spent
  (the last attempt itself may run past it; attempts are not cancelled);
* waits grow exponentially from 1 s by a factor of 2 up to 20 s (Flower's fixed values),
  with *full jitter*: each wait is uniform in [0, nominal];
* only failures for which ``is_retryable`` returns ``True`` are retried; any other
  exception propagates at once, unchanged;
* giving up raises :class:`~flwr_sdk.errors.RetriesExhaustedError` from the last failure
  (logged at DEBUG only: the error itself reaches the caller);
* every wait is logged (WARNING) and, when the policy has an ``on_event`` callback,
  reported as a :class:`~flwr_sdk.events.Retrying` event before the wait starts.

Failure texts say once what failed. The transports' errors about one call already start
with ``"<call> failed: "`` (e.g. ``"Ping failed: UNAVAILABLE: …"``); :func:`failure_reason`
drops that prefix where a line names the call itself, and :func:`call_failure` adds it
only where the error does not carry it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import time
from collections.abc import Awaitable, Callable, Iterator
from numbers import Real
from typing import TypeVar

from flwr_sdk.errors import FlwrSdkError, RetriesExhaustedError
from flwr_sdk.events import EventCallback, Retrying

__all__ = ["Backoff", "RetryPolicy", "call_failure", "failure_reason"]

_T = TypeVar("_T")

log = logging.getLogger("flwr_sdk")

SleepFn = Callable[[float], Awaitable[object]]
ClockFn = Callable[[], float]
RandomFn = Callable[[], float]

FIRST_WAIT = 1.0
"""Nominal wait before the first retry, in seconds."""
WAIT_FACTOR = 2.0
"""Factor by which each nominal wait grows."""
MAX_WAIT = 20.0
"""Longest nominal wait, in seconds."""


def failure_reason(exc: BaseException, call: str | None = None) -> str:
    """Why something failed, for a line that already says what failed.

    flwr-sdk's own errors give their message (their type adds nothing); other exceptions
    ``"TypeName: message"``. With ``call`` (e.g. ``"Ping"``), a leading
    ``"Ping failed: "`` of the message is left out, so ``"Ping (node 5) failed: …"``
    does not say it twice.
    """
    text = str(exc)
    if call is not None and text.startswith(f"{call} failed: "):
        text = text[len(call) + len(" failed: ") :]
    if isinstance(exc, FlwrSdkError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call_failure(call: str, exc: BaseException) -> str:
    """``"<call> failed: <reason>"`` for an exception raised by that call, prefix once."""
    return f"{call} failed: {failure_reason(exc, call)}"


class Backoff:
    """Exponential backoff with full jitter, reusable by any retry loop.

    ``next_wait()`` returns the wait before the next retry: the nominal wait is
    ``FIRST_WAIT * WAIT_FACTOR**n`` capped at ``MAX_WAIT`` (``n`` = waits handed out since
    the last :meth:`reset`), and the wait is ``random()`` (clamped to [0, 1]) times that.
    A heartbeat loop calls ``next_wait()`` after each failure and ``reset()`` after a
    success. ``random=lambda: 1.0`` gives the nominal waits (for tests).
    """

    def __init__(self, random: RandomFn = _random.random) -> None:
        self._random = random
        self._nominal = FIRST_WAIT

    def next_wait(self) -> float:
        """Return the next wait in seconds and advance the sequence."""
        nominal = self._nominal
        self._nominal = min(MAX_WAIT, nominal * WAIT_FACTOR)
        return nominal * min(max(self._random(), 0.0), 1.0)

    def reset(self) -> None:
        """Start again from ``FIRST_WAIT``."""
        self._nominal = FIRST_WAIT


class RetryPolicy:
    """How often and how long a transport retries a failing call.

    Args:
        max_retries: retries after the first attempt (``None``: unlimited); an ``int >= 0``.
        max_wait_time: total seconds budget (``None``: unlimited); a real number ``>= 0``.
        sleep, clock, random: injectable ``asyncio.sleep``, ``time.monotonic`` and
            ``random.random`` (for fast, deterministic tests).
        on_event: called with a :class:`~flwr_sdk.events.Retrying` event before each
            wait (``start_client``'s ``on_event``, already guarded against raising).

    """

    def __init__(
        self,
        max_retries: int | None,
        max_wait_time: float | None,
        *,
        sleep: SleepFn = asyncio.sleep,
        clock: ClockFn = time.monotonic,
        random: RandomFn = _random.random,
        on_event: EventCallback | None = None,
    ) -> None:
        if max_retries is not None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int):
                raise TypeError(
                    f"max_retries must be an int >= 0 or None, got {type(max_retries).__name__}"
                )
            if max_retries < 0:
                raise ValueError(f"max_retries must be >= 0 or None, got {max_retries}")
        if max_wait_time is not None:
            if isinstance(max_wait_time, bool) or not isinstance(max_wait_time, Real):
                raise TypeError(
                    "max_wait_time must be a number of seconds >= 0 or None, "
                    f"got {type(max_wait_time).__name__}"
                )
            if math.isnan(float(max_wait_time)) or float(max_wait_time) < 0:
                raise ValueError(f"max_wait_time must be >= 0 or None, got {max_wait_time!r}")
        self.max_retries = max_retries
        self.max_wait_time = None if max_wait_time is None else float(max_wait_time)
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self.on_event = on_event

    def __repr__(self) -> str:
        return f"RetryPolicy({self._limits_text()})"

    def _limits_text(self) -> str:
        return f"max_retries={self.max_retries!r}, max_wait_time={self.max_wait_time!r}"

    def backoff(self) -> Backoff:
        """A fresh :class:`Backoff` using this policy's random source."""
        return Backoff(self._random)

    def waits(self) -> Iterator[float]:
        """The waits before retry 1, 2, ... (before clipping to ``max_wait_time``).

        Finite (``max_retries`` items) when ``max_retries`` is set, else infinite.
        """
        backoff = self.backoff()
        produced = 0
        while self.max_retries is None or produced < self.max_retries:
            produced += 1
            yield backoff.next_wait()

    async def run(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        is_retryable: Callable[[BaseException], bool],
        describe: str,
        call: str | None = None,
    ) -> _T:
        """Call ``attempt()`` until it succeeds, a non-retryable error occurs, or a limit hits.

        Args:
            attempt: makes one try; called anew for every attempt.
            is_retryable: ``True`` for failures worth retrying (e.g. "unavailable").
            describe: what is being tried, for logs and errors, e.g.
                ``"Connecting to 127.0.0.1:9092"``.
            call: the name of the call ``attempt`` makes (e.g. ``"PullTaskIns"``) when
                ``describe`` already names it: a failure's leading ``"<call> failed: "``
                is then left out of the texts (see :func:`failure_reason`).

        Returns:
            The first successful result.

        Raises:
            RetriesExhaustedError: a limit was reached; ``__cause__`` is the last failure.
            Exception: any failure for which ``is_retryable`` is ``False``, unchanged.

        """
        start = self._clock()
        waits = self.waits()
        total = "" if self.max_retries is None else f" of {self.max_retries + 1}"
        attempts = 0
        while True:
            attempts += 1
            try:
                result = await attempt()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                elapsed = self._clock() - start
                wait = next(waits, None)
                if wait is not None and self.max_wait_time is not None:
                    remaining = self.max_wait_time - elapsed
                    wait = None if remaining <= 0 else min(wait, remaining)
                reason = failure_reason(exc, call)
                if wait is None:
                    message = (
                        f"{describe} failed {attempts} time{'s' if attempts != 1 else ''} in "
                        f"{elapsed:.2f} s; giving up ({self._limits_text()}). Last error: "
                        f"{reason}"
                    )
                    # Not a warning: the error reaches the caller, who reports it once.
                    log.debug("%s", message)
                    raise RetriesExhaustedError(
                        message, attempts=attempts, elapsed=elapsed
                    ) from exc
                log.warning(
                    "%s failed (attempt %d%s): %s; retrying in %.2f s",
                    describe,
                    attempts,
                    total,
                    reason,
                    wait,
                )
                if self.on_event is not None:
                    self.on_event(Retrying(wait, f"{describe} failed: {reason}", attempts))
                await self._sleep(wait)
            else:
                if attempts > 1:
                    log.info(
                        "%s succeeded after %d attempts in %.2f s",
                        describe,
                        attempts,
                        self._clock() - start,
                    )
                return result
