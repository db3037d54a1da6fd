"""Wake-up on work: when one node of a swarm gets an instruction, the idle others poll soon.

An idle node polls every ``poll_interval`` seconds; a long interval makes an idle swarm
cheap (N nodes poll N / interval times a second) but would start every round late, since
a node notices its instruction only at its next poll. The swarm as a whole still polls
often enough to notice work within ``interval / N`` seconds, so a :class:`WakeUp`
spreads that news: the first instruction any node receives wakes every node sleeping
between two polls, each at a random moment within :data:`WAKE_WINDOW` seconds (through
the shared connection's gate like any poll, so 10,000 nodes do not stampede), after
which each falls back to its idle interval.

One wake-up per burst: the instructions its woken nodes then receive do not wake anyone
again until every woken node has polled (or :data:`WAKE_HOLD` seconds passed), so a
round's N instructions cost one extra poll per idle node, not N. When that wave found
work, the burst may still be arriving (a server that hands out a round's instructions
one by one), so the nodes asleep again get one more wave, until a wave finds nothing:
a burst costs each idle node a poll per wave, at least two. The price is that
extra poll: a server that sends work to few of many nodes (a sampled round) makes every
idle node poll once per round for nothing. ``SwarmConfig(wake=False)``
(``flwr-sdk swarm --no-wake``) turns it off. The sessions' polls that find no work are
counted either way (:attr:`WakeUp.empty_polls`: the swarm's idle exit waits for a round
of them).
"""

from __future__ import annotations

import asyncio
import random

from flwr_sdk.common.message import Message
from flwr_sdk.transport.base import Connection, Connector
from flwr_sdk.wire.base import Reconnect, RunInfo

__all__ = ["WAKE_HOLD", "WAKE_WINDOW", "WakeUp", "WakingConnector"]

WAKE_WINDOW = 1.0
"""Seconds over which a wake-up's polls are spread (each node at a random moment)."""

WAKE_HOLD = 30.0
"""Seconds after which a wake-up whose woken nodes have not all polled yet is over anyway
(a node stopped meanwhile never polls)."""


class WakeUp:
    """One swarm's wake-up signal, on one event loop (see the module docs)."""

    def __init__(
        self, window: float = WAKE_WINDOW, rng: random.Random | None = None, *, enabled: bool = True
    ) -> None:
        """A signal that spreads a wake-up's polls over ``window`` seconds.

        ``enabled`` False: idle waits last their interval, nobody is woken (the polls
        are still counted, :attr:`empty_polls`).
        """
        self.enabled = enabled
        #: Polls that found no work so far (every node's).
        self.empty_polls = 0
        self._window = window
        self._rng = rng if rng is not None else random.Random()
        self._sleepers: dict[asyncio.Future[bool], asyncio.TimerHandle] = {}
        self._pending = 0
        self._found = 0
        self._hold_until = 0.0
        #: Wake-ups so far (each woke the nodes idle at that moment).
        self.wakes = 0

    @property
    def sleeping(self) -> int:
        """Nodes waiting between two polls right now."""
        return len(self._sleepers)

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less when woken; whether a wake-up ended the wait."""
        if not self.enabled:
            await asyncio.sleep(seconds)
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._sleepers[waiter] = loop.call_later(seconds, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            handle = self._sleepers.pop(waiter, None)
            if handle is not None:
                handle.cancel()

    def work_seen(self) -> None:
        """A node received an instruction: wake the sleeping nodes, unless one is under way."""
        if not self.enabled:
            return
        now = asyncio.get_running_loop().time()
        if self._pending and now < self._hold_until:
            return
        self._wave(now)

    def _wave(self, now: float) -> None:
        """Wake every sleeping node at a random moment within the window."""
        loop = asyncio.get_running_loop()
        self._pending = self._found = 0
        woken = 0
        for waiter, handle in self._sleepers.items():
            at = now + self._rng.uniform(0.0, self._window)
            if waiter.done() or handle.when() <= at:
                continue  # it polls as soon anyway
            handle.cancel()
            self._sleepers[waiter] = loop.call_at(at, _resolve, waiter, True)
            woken += 1
        if woken:
            self.wakes += 1
            self._pending = woken
            self._hold_until = now + self._window + WAKE_HOLD

    def polled(self, found: bool) -> None:
        """A woken node's poll returned (``found``: with an instruction).

        When the last woken node has polled and some found work, the burst may still be
        arriving (a server that hands out a round's instructions one by one): the nodes
        asleep again are woken once more, until a wave finds nothing.
        """
        if not self._pending:
            return
        self._pending -= 1
        self._found += found
        if not self._pending and self._found:
            self._wave(asyncio.get_running_loop().time())


def _resolve(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)


class WakingConnection(Connection):
    """A session whose idle waits a :class:`WakeUp` can cut short, and that reports work."""

    def __init__(self, inner: Connection, wake: WakeUp) -> None:
        """Wraps ``inner`` (every call goes to it)."""
        self._inner = inner
        self._wake = wake
        self._woken = False
        self.supports_error_replies = inner.supports_error_replies

    @property
    def poll_interval(self) -> float:
        """The wrapped session's idle interval."""
        return self._inner.poll_interval

    @poll_interval.setter
    def poll_interval(self, seconds: float) -> None:
        self._inner.poll_interval = seconds

    @property
    def line_name(self) -> str | None:
        """The wrapped session's line."""
        return self._inner.line_name

    @property
    def node_id(self) -> int:
        """The wrapped session's node id."""
        return self._inner.node_id

    async def receive(self) -> Message | Reconnect | None:
        """The wrapped session's next instruction; one that arrives wakes the others."""
        woken, self._woken = self._woken, False
        item: Message | Reconnect | None = None
        try:
            item = await self._inner.receive()
            if isinstance(item, Message):
                self._wake.work_seen()  # before polled(): a woken node's work is the same burst
            elif item is None:
                self._wake.empty_polls += 1
        finally:
            if woken:
                self._wake.polled(found=isinstance(item, Message))
        return item

    async def idle(self) -> None:
        """Wait the idle interval, or less when another node's work wakes this one."""
        self._woken = await self._wake.sleep(self._inner.poll_interval)

    async def send(self, reply: Message) -> None:
        """Send through the wrapped session."""
        await self._inner.send(reply)

    async def run_info(self, run_id: int) -> RunInfo:
        """The wrapped session's run info."""
        return await self._inner.run_info(run_id)

    async def close(self) -> None:
        """Close the wrapped session."""
        await self._inner.close()


class WakingConnector(Connector):
    """Wraps a connector: every session it opens wakes and is woken through ``wake``."""

    def __init__(self, inner: Connector, wake: WakeUp) -> None:
        """Sessions of ``inner``, each wrapped in a :class:`WakingConnection`."""
        self.name = inner.name
        self._inner = inner
        self._wake = wake

    async def connect(self) -> Connection:
        """The inner connector's session, wrapped."""
        return WakingConnection(await self._inner.connect(), self._wake)
