"""The reconnection policy shared by all transports.

Semantics (Flower 1.15's, made explicit):

* at most ``max_retries + 1`` attempts (``None``: unlimited);
* the total time is bounded by ``max_wait_time`` seconds (``None``: unlimited): each wait
  is clipped to the time that remains, and no attempt starts once the budget is spent
  (the last attempt itself may run past it; attempts are not cancelled);
* waits grow exponentially from ``base`` (1 s) by ``factor`` (2) up to ``cap`` (20 s), with
  *full jitter*: each wait is uniform in [0, nominal];
* only failures for which ``is_retryable`` returns ``True`` are retried; any other
  exception propagates at once, unchanged;
* giving up raises :class:`~flwr_sdk.errors.RetriesExhaustedError` from the last failure.
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

from flwr_sdk.errors import RetriesExhaustedError

__all__ = ["Backoff", "RetryPolicy"]

_T = TypeVar("_T")

log = logging.getLogger("flwr_sdk")

SleepFn = Callable[[float], Awaitable[object]]
ClockFn = Callable[[], float]
RandomFn = Callable[[], float]


def _check_real(name: str, value: object, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if strict and number <= minimum:
        raise ValueError(f"{name} must be > {minimum:g}, got {value!r}")
    if not strict and number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return number


def _describe_exception(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Backoff:
    """Exponential backoff with optional full jitter, reusable by any retry loop.

    ``next_wait()`` returns the wait before the next retry: the nominal wait is
    ``base * factor**n`` capped at ``cap`` (``n`` = waits handed out since the last
    :meth:`reset`); with ``jitter`` the wait is uniform in [0, nominal]. A heartbeat loop
    calls ``next_wait()`` after each failure and ``reset()`` after a success.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 20.0,
        jitter: bool = True,
        random: RandomFn = _random.random,
    ) -> None:
        self.base = _check_real("base", base, minimum=0.0, strict=True)
        self.factor = _check_real("factor", factor, minimum=1.0, strict=False)
        self.cap = _check_real("cap", cap, minimum=0.0, strict=True)
        if not isinstance(jitter, bool):
            raise TypeError(f"jitter must be a bool, got {type(jitter).__name__}")
        self.jitter = jitter
        self._random = random
        self._nominal = min(self.base, self.cap)
        self._count = 0

    @property
    def count(self) -> int:
        """Waits handed out since construction or the last :meth:`reset`."""
        return self._count

    def peek_nominal(self) -> float:
        """The nominal (un-jittered) wait that the next :meth:`next_wait` is based on."""
        return self._nominal

    def next_wait(self) -> float:
        """Return the next wait in seconds and advance the sequence."""
        nominal = self._nominal
        self._nominal = min(self.cap, nominal * self.factor)
        self._count += 1
        if not self.jitter:
            return nominal
        return nominal * min(max(self._random(), 0.0), 1.0)

    def reset(self) -> None:
        """Start again from ``base``."""
        self._nominal = min(self.base, self.cap)
        self._count = 0


class RetryPolicy:
    """How often and how long a transport retries a failing call.

    Args:
        max_retries: retries after the first attempt (``None``: unlimited); an ``int >= 0``.
        max_wait_time: total seconds budget (``None``: unlimited); a real number ``>= 0``.
        base, factor, cap, jitter: backoff parameters, see :class:`Backoff`.
        sleep, clock, random: injectable ``asyncio.sleep``, ``time.monotonic`` and
            ``random.random`` (for fast, deterministic tests).

    """

    def __init__(
        self,
        max_retries: int | None,
        max_wait_time: float | None,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 20.0,
        jitter: bool = True,
        sleep: SleepFn = asyncio.sleep,
        clock: ClockFn = time.monotonic,
        random: RandomFn = _random.random,
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
        # Validates base/factor/cap/jitter with the same messages.
        Backoff(base=base, factor=factor, cap=cap, jitter=jitter, random=random)
        self.base = float(base)
        self.factor = float(factor)
        self.cap = float(cap)
        self.jitter = jitter
        self._sleep = sleep
        self._clock = clock
        self._random = random

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_retries={self.max_retries!r}, "
            f"max_wait_time={self.max_wait_time!r}, base={self.base:g}, "
            f"factor={self.factor:g}, cap={self.cap:g}, jitter={self.jitter!r})"
        )

    @property
    def max_attempts(self) -> int | None:
        """``max_retries + 1``, or ``None`` when unlimited."""
        return None if self.max_retries is None else self.max_retries + 1

    def backoff(self) -> Backoff:
        """A fresh :class:`Backoff` with this policy's parameters."""
        return Backoff(
            base=self.base,
            factor=self.factor,
            cap=self.cap,
            jitter=self.jitter,
            random=self._random,
        )

    def waits(self) -> Iterator[float]:
        """The waits before retry 1, 2, ... (before clipping to ``max_wait_time``).

        Finite (``max_retries`` items) when ``max_retries`` is set, else infinite.
        """
        backoff = self.backoff()
        produced = 0
        while self.max_retries is None or produced < self.max_retries:
            produced += 1
            yield backoff.next_wait()

    def _limits_text(self) -> str:
        return f"max_retries={self.max_retries!r}, max_wait_time={self.max_wait_time!r}"

    async def run(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        is_retryable: Callable[[BaseException], bool],
        describe: str,
    ) -> _T:
        """Call ``attempt()`` until it succeeds, a non-retryable error occurs, or a limit hits.

        Args:
            attempt: makes one try; called anew for every attempt.
            is_retryable: ``True`` for failures worth retrying (e.g. "unavailable").
            describe: what is being tried, for logs and errors, e.g.
                ``"Connecting to 127.0.0.1:9092"``.

        Returns:
            The first successful result.

        Raises:
            RetriesExhaustedError: a limit was reached; ``__cause__`` is the last failure.
            Exception: any failure for which ``is_retryable`` is ``False``, unchanged.

        """
        start = self._clock()
        waits = self.waits()
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
                if wait is None:
                    raise self._give_up(describe, attempts, elapsed, exc) from exc
                total = "" if self.max_attempts is None else f" of {self.max_attempts}"
                log.warning(
                    "%s failed (attempt %d%s): %s; retrying in %.2f s",
                    describe,
                    attempts,
                    total,
                    _describe_exception(exc),
                    wait,
                )
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

    def _give_up(
        self, describe: str, attempts: int, elapsed: float, exc: BaseException
    ) -> RetriesExhaustedError:
        message = (
            f"{describe} failed {attempts} time{'s' if attempts != 1 else ''} in "
            f"{elapsed:.2f} s; giving up ({self._limits_text()}). Last error: "
            f"{_describe_exception(exc)}"
        )
        log.warning("%s", message)
        return RetriesExhaustedError(message, attempts=attempts, elapsed=elapsed)
