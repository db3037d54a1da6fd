"""The one retry policy of every transport: a table of failure classes, and the budget.

:data:`RETRY_TABLE` says, for every class of failure (recognised by its exception type,
which the transports derive from the gRPC status, the HTTP status or what the socket
did), what the node does: retry the call after a backoff wait, register a new node,
join again, drop a reply, or give up with which typed error. :func:`rule_for` looks a
failure up; :meth:`RetryPolicy.run`, the Fleet session and the node loop act on the
row's action, so the table is the policy (``docs/reliability.md`` renders it, and a test
checks that the two agree row by row). :data:`CALL_RULES` says where single calls
deviate from it (Ping, GetRun, GetFab, DeleteNode).

The budget (Flower 1.15's semantics, made explicit and applied to every retried path):

* at most ``max_retries + 1`` attempts (``None``: unlimited) in one *streak* of failures;
  a transient server error (:class:`~flwr_sdk.errors.TransientServerError`) is retried
  at most :data:`TRANSIENT_RETRIES` times even when ``max_retries`` is ``None``;
* the streak's total time is bounded by ``max_wait_time`` seconds (``None``: unlimited):
  each wait is clipped to the time that remains, and no attempt starts once the budget
  is spent (the last attempt itself may run past it; attempts are not cancelled);
* waits grow exponentially from 1 s by a factor of 2 up to 20 s (Flower's fixed values),
  with *full jitter*: each wait is uniform in [0, nominal];
* failures whose row does not retry propagate at once, unchanged;
* giving up raises :class:`~flwr_sdk.errors.RetriesExhaustedError` from the last failure
  (logged at DEBUG only: the error itself reaches the caller);
* every wait is logged (WARNING) and, when the policy has an ``on_event`` callback,
  reported as a :class:`~flwr_sdk.events.Retrying` event before the wait starts.

A streak is a :class:`RetryBudget`. A single call (pull, push, GetRun, GetFab) has one
of its own; the node loop keeps one across connecting, re-registering and re-joining,
started again only once the server has served the node (a pull answered, a server
message received), so a server that accepts connections and then fails each one at once
is retried with growing waits and given up on, never in a loop without a delay.

Failure texts say once what failed. The transports' errors about one call already start
with ``"<call> failed: "`` (e.g. ``"Ping failed: UNAVAILABLE: …"``); :func:`failure_reason`
drops that prefix where a line names the call itself, and :func:`call_failure` adds it
only where the error does not carry it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random as _random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from numbers import Real
from typing import TypeVar

from flwr_sdk.errors import (
    AuthenticationError,
    FlwrSdkError,
    MessageTooLargeError,
    ProtocolError,
    RetriesExhaustedError,
    ServerUnavailableError,
    TLSError,
    TransientServerError,
    TransportError,
    WireLineError,
)
from flwr_sdk.events import EventCallback, Retrying

__all__ = [
    "CALL_RULES",
    "RETRY_TABLE",
    "TRANSIENT_RETRIES",
    "Action",
    "Backoff",
    "CallRule",
    "NodeLostError",
    "RetryBudget",
    "RetryPolicy",
    "Rule",
    "RunEndedError",
    "call_failure",
    "call_rule_rows",
    "failure_reason",
    "rule_for",
    "table_rows",
]

_T = TypeVar("_T")

log = logging.getLogger("flwr_sdk")
# The "retrying in N s" lines, on their own logger: a program that draws the Retrying
# event itself (flwr-sdk client) quiets this one without losing anything else.
retry_log = logging.getLogger("flwr_sdk.retry")

SleepFn = Callable[[float], Awaitable[object]]
ClockFn = Callable[[], float]
RandomFn = Callable[[], float]

FIRST_WAIT = 1.0
"""Nominal wait before the first retry, in seconds."""
WAIT_FACTOR = 2.0
"""Factor by which each nominal wait grows."""
MAX_WAIT = 20.0
"""Longest nominal wait, in seconds."""


TRANSIENT_RETRIES = 4
"""Most retries of a transient server error in one streak, whatever ``max_retries`` says.

A SuperLink whose SQLite state is busy answers UNKNOWN "database is locked" for a few
seconds (after its own 5 s busy wait); four retries wait up to 1 + 2 + 4 + 8 s.
"""


class NodeLostError(ServerUnavailableError):
    """The SuperLink no longer knows this node (e.g. it restarted); register again."""


class RunEndedError(TransportError):
    """The server refused a reply because its run is no longer running; drop the reply."""


class Action(enum.Enum):
    """What the node does about a failure (the values are the docs' words)."""

    RETRY = "retry the call"
    REGISTER_AGAIN = "register a new node"
    REJOIN = "join again"
    DROP_REPLY = "drop the reply, serve on"
    GIVE_UP = "give up"

    @property
    def retries(self) -> bool:
        """Whether the action tries again (after a backoff wait, under the budget)."""
        return self in (Action.RETRY, Action.REGISTER_AGAIN, Action.REJOIN)


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RETRY_TABLE`: a failure class and what the node does about it.

    ``errors`` recognise the class (``isinstance``; the first row that matches wins);
    ``recognised_by`` says in words what on the wire becomes those errors; ``fleet`` is
    the action on the Fleet API transports (grpc-rere, rest) and ``bidi`` the one on
    grpc-bidi (``None``: the class does not occur there); ``retries`` bounds the retries
    of this class in one streak beyond ``max_retries`` / ``max_wait_time`` (``None``: only
    those); ``gives_up_with`` is the error ``start_client`` raises when the class ends
    the node (``None``: it never does).
    """

    failure: str
    errors: tuple[type[Exception], ...]
    recognised_by: str
    fleet: Action
    bidi: Action | None
    retries: int | None
    gives_up_with: type[Exception] | None

    def action(self, transport: str) -> Action:
        """The action on ``transport`` (``"grpc-bidi"``, ``"grpc-rere"``, ``"rest"``)."""
        if transport == "grpc-bidi":
            return self.bidi if self.bidi is not None else Action.GIVE_UP
        return self.fleet


RETRY_TABLE: tuple[Rule, ...] = (
    Rule(
        "node lost",
        (NodeLostError,),
        'Ping answered success=false; a call the line reads as "node unknown" '
        '(1.15: UNAUTHENTICATED "Invalid node ID"; 1.42: HTTP 401 / UNAUTHENTICATED, the '
        "SuperLink no longer knows the key)",
        Action.REGISTER_AGAIN,
        None,
        None,
        RetriesExhaustedError,
    ),
    Rule(
        "run ended",
        (RunEndedError,),
        'a push the line reads as "run not running" (1.15: PERMISSION_DENIED "Run is finished."; '
        "1.42: HTTP 403 / PERMISSION_DENIED code 2007, also on object transfers, which drop "
        "the instruction or the reply)",
        Action.DROP_REPLY,
        None,
        0,
        None,
    ),
    Rule(
        "TLS",
        (TLSError,),
        "the TLS handshake fails (unknown authority, hostname mismatch, no TLS)",
        Action.GIVE_UP,
        Action.GIVE_UP,
        0,
        TLSError,
    ),
    Rule(
        "too large",
        (MessageTooLargeError,),
        "a message over grpc_max_message_length (either way)",
        Action.GIVE_UP,
        Action.GIVE_UP,
        0,
        MessageTooLargeError,
    ),
    Rule(
        "wire line",
        (WireLineError,),
        "the server speaks no supported Flower line, or not the one chosen",
        Action.GIVE_UP,
        None,
        0,
        WireLineError,
    ),
    Rule(
        "refused credentials",
        (AuthenticationError,),
        "gRPC UNAUTHENTICATED, PERMISSION_DENIED; HTTP 401, 403",
        Action.GIVE_UP,
        Action.GIVE_UP,
        0,
        AuthenticationError,
    ),
    Rule(
        "transient server error",
        (TransientServerError,),
        "gRPC UNKNOWN, INTERNAL, RESOURCE_EXHAUSTED sent by the server; HTTP 500",
        Action.RETRY,
        Action.REJOIN,
        TRANSIENT_RETRIES,
        RetriesExhaustedError,
    ),
    Rule(
        "unreachable",
        (ServerUnavailableError,),
        "gRPC UNAVAILABLE; no answer within the call's deadline; no byte moved within "
        "the progress deadline; connection refused, reset or cut; GOAWAY; the server "
        "ended the Join stream; HTTP 502, 503, 504",
        Action.RETRY,
        Action.REJOIN,
        None,
        RetriesExhaustedError,
    ),
    Rule(
        "protocol violation",
        (ProtocolError,),
        "an answer the protocol does not allow: undecodable, wrong shape, truncated, "
        "not gRPC, a reply rule broken",
        Action.GIVE_UP,
        Action.GIVE_UP,
        0,
        ProtocolError,
    ),
    Rule(
        "other refusal",
        (TransportError,),
        "any other gRPC status (INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, ...) or "
        "HTTP status (400, 404, ...)",
        Action.GIVE_UP,
        Action.GIVE_UP,
        0,
        TransportError,
    ),
)
"""Every failure class a transport reports, most specific first: the retry policy."""


def rule_for(exc: BaseException) -> Rule | None:
    """The first row of :data:`RETRY_TABLE` whose errors ``exc`` is; None for none.

    ``None`` (not a transport failure, e.g. :class:`~flwr_sdk.errors.RetriesExhaustedError`
    itself or a bug) means: propagate unchanged.
    """
    for rule in RETRY_TABLE:
        if isinstance(exc, rule.errors):
            return rule
    return None


@dataclass(frozen=True)
class CallRule:
    """One row of :data:`CALL_RULES`: where one call deviates from :data:`RETRY_TABLE`.

    ``degrades_on`` names the failure classes that, when they end the call (at once or
    after its retries), do not end the node; ``degrades_to`` says what happens instead.
    ``transient_retries`` replaces :data:`TRANSIENT_RETRIES` for the call (``None``: the
    call is not made under the budget at all).
    """

    call: str
    degrades_on: frozenset[str]
    degrades_to: str
    transient_retries: int | None = TRANSIENT_RETRIES

    def degrades(self, exc: BaseException) -> bool:
        """Whether ``exc`` ending the call means :attr:`degrades_to`, not the node's end."""
        if isinstance(exc, RetriesExhaustedError) and exc.__cause__ is not None:
            exc = exc.__cause__
        rule = rule_for(exc)
        return rule is not None and rule.failure in self.degrades_on


_NOT_THE_SERVER_GONE = frozenset(
    {"transient server error", "refused credentials", "protocol violation", "other refusal"}
)

CALL_RULES: dict[str, CallRule] = {
    "heartbeat": CallRule(
        "Ping, SendNodeHeartbeat",
        frozenset(rule.failure for rule in RETRY_TABLE) - {"node lost"},
        "ping again after the next backoff wait; the heartbeat never gives up (the "
        "main calls decide when the server is gone)",
        transient_retries=None,
    ),
    "get_run": CallRule(
        "GetRun",
        _NOT_THE_SERVER_GONE,
        "the run gets an empty run config (logged)",
    ),
    "get_fab": CallRule(
        "GetFab",
        _NOT_THE_SERVER_GONE,
        "the run has no FAB (logged); a transient error is retried once only, as the 1.12 "
        "SuperLink answers every REST get-fab with HTTP 500",
        transient_retries=1,
    ),
    "confirm": CallRule(
        "ConfirmMessageReceived",
        _NOT_THE_SERVER_GONE,
        "the instruction, already complete and checked, is handled anyway (logged); the "
        "server keeps its objects a while longer",
    ),
    "deactivate": CallRule(
        "DeactivateNode",
        frozenset(rule.failure for rule in RETRY_TABLE),
        "one try with a 3 s deadline when the session closes; a failure is logged (the "
        "node goes offline by itself two heartbeat intervals later)",
        transient_retries=0,
    ),
    "unregister": CallRule(
        "DeleteNode, UnregisterNode",
        frozenset(rule.failure for rule in RETRY_TABLE),
        "one try with a 3 s deadline; a failure is logged",
        transient_retries=0,
    ),
}
"""Calls whose failures do not end the node (by line role), and what they mean instead."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table_rows() -> list[str]:
    """:data:`RETRY_TABLE` as Markdown table rows, as ``docs/reliability.md`` shows it."""
    rows = [
        "| failure | recognised by | error | grpc-rere, rest | grpc-bidi | retries | "
        "gives up with |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in RETRY_TABLE:
        errors = ", ".join(f"`{error.__name__}`" for error in rule.errors)
        bidi = "—" if rule.bidi is None else rule.bidi.value
        if rule.retries is None:
            retries = "`max_retries`, `max_wait_time`"
        elif rule.retries == 0:
            retries = "none"
        else:
            retries = f"at most {rule.retries}, within `max_retries`, `max_wait_time`"
        gives_up = (
            "never ends the node"
            if rule.gives_up_with is None
            else f"`{rule.gives_up_with.__name__}`"
        )
        rows.append(
            f"| {rule.failure} | {_cell(rule.recognised_by)} | {errors} | {rule.fleet.value} "
            f"| {bidi} | {retries} | {gives_up} |"
        )
    return rows


def call_rule_rows() -> list[str]:
    """:data:`CALL_RULES` as Markdown table rows, as ``docs/reliability.md`` shows it."""
    every = frozenset(rule.failure for rule in RETRY_TABLE)
    rows = [
        "| call | failures that do not end the node | what they mean instead | transient retries |",
        "|---|---|---|---|",
    ]
    for special in CALL_RULES.values():
        if special.degrades_on == every:
            classes = "every failure"
        elif special.degrades_on == every - {"node lost"}:
            classes = "every failure but node lost"
        else:
            order = [rule.failure for rule in RETRY_TABLE if rule.failure in special.degrades_on]
            classes = ", ".join(order)
        rows.append(
            f"| {special.call} | {classes} | {_cell(special.degrades_to)} "
            f"| {'—' if special.transient_retries is None else special.transient_retries} |"
        )
    return rows


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

    def budget(self) -> RetryBudget:
        """A fresh :class:`RetryBudget` (one streak of failures) under this policy."""
        return RetryBudget(self)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with the policy's (injectable) sleep."""
        await self._sleep(seconds)

    async def run(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        describe: str,
        call: str | None = None,
        budget: RetryBudget | None = None,
        reset_on_success: bool = True,
        transient_retries: int = TRANSIENT_RETRIES,
    ) -> _T:
        """Call ``attempt()`` until it succeeds, a failure its row does not retry, or a limit.

        Args:
            attempt: makes one try; called anew for every attempt.
            describe: what is being tried, for logs and errors, e.g.
                ``"Connecting to 127.0.0.1:9092"``.
            call: the name of the call ``attempt`` makes (e.g. ``"PullTaskIns"``) when
                ``describe`` already names it: a failure's leading ``"<call> failed: "``
                is then left out of the texts (see :func:`failure_reason`).
            budget: the streak the failures count in; a fresh one when ``None``.
            reset_on_success: start the streak again after a success (the node loop
                says ``False`` for connecting: a session that fails at once is no success).
            transient_retries: the bound on transient server errors for this call.

        Returns:
            The first successful result.

        Raises:
            RetriesExhaustedError: a limit was reached; ``__cause__`` is the last failure.
            Exception: any failure whose :data:`RETRY_TABLE` row does not retry, unchanged.

        """
        streak = budget if budget is not None else self.budget()
        streak.begin()
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                rule = rule_for(exc)
                if rule is None or rule.fleet is not Action.RETRY:
                    raise
                wait = streak.failed(
                    exc, describe=describe, call=call, transient_retries=transient_retries
                )
                await self._sleep(wait)
            else:
                if reset_on_success:
                    streak.succeeded(describe)
                return result


class RetryBudget:
    """One streak of failures: counts them, keeps its backoff, bounds it by the policy.

    :meth:`failed` is told of each failure (retried ones only) and returns the wait
    before the next attempt, or raises :class:`~flwr_sdk.errors.RetriesExhaustedError`
    when a limit is reached; :meth:`succeeded` (or :meth:`reset`) ends the streak.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._start: float | None = None
        self._backoff = policy.backoff()
        self.failures = 0
        self._by_class: Counter[str] = Counter()

    @property
    def policy(self) -> RetryPolicy:
        """The policy whose limits bound this streak."""
        return self._policy

    def begin(self) -> None:
        """Start the streak's clock, unless it already runs."""
        if self._start is None:
            self._start = self._policy._clock()

    def reset(self) -> None:
        """End the streak: the next failure starts a new one, from the first wait."""
        self._start = None
        self._backoff.reset()
        self.failures = 0
        self._by_class.clear()

    def succeeded(self, describe: str) -> None:
        """An attempt succeeded: log it when it took retries, and end the streak."""
        if self.failures and self._start is not None:
            log.info(
                "%s succeeded after %d attempts in %.2f s",
                describe,
                self.failures + 1,
                self._policy._clock() - self._start,
            )
        self.reset()

    def failed(
        self,
        exc: Exception,
        *,
        describe: str,
        call: str | None = None,
        transient_retries: int = TRANSIENT_RETRIES,
    ) -> float:
        """Count a retried failure; return the wait before the next attempt.

        Logs the wait (WARNING) and reports a :class:`~flwr_sdk.events.Retrying` event.

        Raises:
            RetriesExhaustedError: ``max_retries``, ``max_wait_time`` or the failure
                class's own bound is reached (from ``exc``).

        """
        policy = self._policy
        self.begin()
        assert self._start is not None
        self.failures += 1
        rule = rule_for(exc)
        bound: int | None = None
        if rule is not None:
            self._by_class[rule.failure] += 1
            bound = rule.retries
            if bound is not None and isinstance(exc, TransientServerError):
                bound = min(bound, transient_retries)  # a call's own bound (CALL_RULES)
        elapsed = policy._clock() - self._start
        reason = failure_reason(exc, call)
        limits = policy._limits_text()
        wait: float | None = self._backoff.next_wait()
        if policy.max_retries is not None and self.failures > policy.max_retries:
            wait = None
        if rule is not None and bound is not None and self._by_class[rule.failure] > bound:
            wait = None
            limits += f"; at most {bound} retr{'y' if bound == 1 else 'ies'} of a {rule.failure}"
        if wait is not None and policy.max_wait_time is not None:
            remaining = policy.max_wait_time - elapsed
            wait = None if remaining <= 0 else min(wait, remaining)
        if wait is None:
            attempts = self.failures
            message = (
                f"{describe} failed {attempts} time{'s' if attempts != 1 else ''} in "
                f"{elapsed:.2f} s; giving up ({limits}). Last error: {reason}"
            )
            # Not a warning: the error reaches the caller, who reports it once.
            log.debug("%s", message)
            self.reset()
            raise RetriesExhaustedError(message, attempts=attempts, elapsed=elapsed) from exc
        total = "" if policy.max_retries is None else f" of {policy.max_retries + 1}"
        retry_log.warning(
            "%s failed (attempt %d%s): %s; retrying in %.2f s",
            describe,
            self.failures,
            total,
            reason,
            wait,
        )
        if policy.on_event is not None:
            policy.on_event(Retrying(wait, f"{describe} failed: {reason}", self.failures))
        return wait
