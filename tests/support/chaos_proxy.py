"""A TCP chaos proxy for the fault suite: sits in front of a real server and breaks the path.

Every connection a client opens to the proxy is relayed to ``target`` byte for byte,
until the test tells the proxy to misbehave:

* :meth:`ChaosProxy.cut_after` — close both sides of whichever connection carries the
  N-th byte from now (N drawn from the seeded RNG when not given; counted over both
  directions of all connections); ``rst=True`` aborts (RST) instead of closing (FIN).
* :meth:`ChaosProxy.cut_all` — close every open connection now.
* :meth:`ChaosProxy.stall` — stop forwarding for S seconds on every connection (sockets
  stay open, bytes wait in buffers), then deliver what was held back.
* :meth:`ChaosProxy.black_hole` — stop forwarding and never answer: no FIN, no RST, bytes
  already read are held, new connections are accepted (the proxy cannot drop a SYN) but
  get no upstream and no byte back — a NAT timeout, a Wi-Fi drop, a crashed host.
* :meth:`ChaosProxy.heal` — new connections are relayed again. Connections caught in the
  black hole stay dead (the NAT forgot them) unless ``revive=True``, which delivers what
  they held and relays them again (the link came back and TCP retransmitted).

Counters: :attr:`ChaosProxy.opened` (monotonic time of every accepted connection),
:attr:`ChaosProxy.bytes_up` / :attr:`ChaosProxy.bytes_down` (client → server /
server → client, forwarded), :attr:`ChaosProxy.last_down` (monotonic time of the last
byte forwarded to a client), :attr:`ChaosProxy.cuts`.

The proxy runs on its own event loop in a daemon thread (:class:`LoopThread`), so a
synchronous pytest test that runs the client as a subprocess drives it with plain calls;
every control method is thread-safe. ``with ChaosProxy(host, port) as proxy:`` starts
and stops it; :meth:`ChaosProxy.stop` closes every socket it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["ChaosProxy", "LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread; run coroutines on it from tests."""

    def __init__(self, name: str = "chaos-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Call ``fn`` on the loop's thread and return its result."""
        if threading.current_thread() is self._thread:
            return fn()

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@dataclass(eq=False)
class _Conn:
    """One relayed connection: the client's writer, the server's (once connected)."""

    number: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    alive: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False
    closed: bool = False

    def close(self, *, rst: bool) -> None:
        self.closed = True
        for writer in (self.client, self.server):
            if writer is None:
                continue
            if rst:
                writer.transport.abort()
            else:
                writer.close()


class ChaosProxy:
    """A TCP relay to ``target_host:target_port`` with faults on command (see the module)."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        seed: int | str = 0,
        loop: LoopThread | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.rng = random.Random(seed)
        self._own_loop = loop is None
        self._thread = loop
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flowing: asyncio.Event | None = None
        self._hole = False
        self._cut_remaining: int | None = None
        self._cut_rst = False
        self._stall_handle: asyncio.TimerHandle | None = None
        # Figures (written on the loop's thread, read from anywhere).
        self.opened: list[float] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self.last_down = 0.0
        self.last_up = 0.0
        self.cuts = 0
        self.black_holed_at: float | None = None
        self.healed_at: float | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def address(self) -> str:
        """``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """How many connections the proxy accepted so far."""
        return len(self.opened)

    def start(self) -> ChaosProxy:
        """Listen on a free port of ``host`` (starts the proxy's loop thread if needed)."""
        if self._thread is None:
            self._thread = LoopThread("chaos-proxy")
        self._thread.run(self.astart())
        return self

    async def astart(self) -> None:
        """Listen on a free port; call on the loop that will run the proxy."""
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and every connection; stop the loop thread if it is ours."""
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._thread.run(self.astop(), timeout=15)
        if self._own_loop:
            self._thread.close()
        self._thread = None

    async def astop(self) -> None:
        """Close the listener and every connection (on the proxy's loop)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close(rst=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------- faults

    def _do(self, fn: Callable[[], T]) -> T:
        assert self._thread is not None, "start the proxy first"
        return self._thread.call(fn)

    def cut_after(self, nbytes: int | None = None, *, most: int = 4096, rst: bool = False) -> int:
        """Close the connection that carries the ``nbytes``-th byte from now; the offset.

        ``nbytes`` None draws it from the seeded RNG in ``[1, most]``.
        """
        offset = self.rng.randint(1, most) if nbytes is None else nbytes

        def arm() -> None:
            self._cut_remaining = offset
            self._cut_rst = rst

        self._do(arm)
        return offset

    def cut_all(self, *, rst: bool = False) -> int:
        """Close every open connection now; how many were open."""

        def cut() -> int:
            live = [c for c in self._conns if not c.closed]
            for conn in live:
                conn.close(rst=rst)
            self.cuts += len(live)
            return len(live)

        return self._do(cut)

    def stall(self, seconds: float) -> None:
        """Stop forwarding for ``seconds`` (sockets stay open), then deliver what waited."""

        def pause() -> None:
            assert self._flowing is not None
            self._flowing.clear()
            if self._stall_handle is not None:
                self._stall_handle.cancel()
            self._stall_handle = asyncio.get_running_loop().call_later(seconds, self._flowing.set)

        self._do(pause)

    def black_hole(self) -> None:
        """Stop forwarding and answering, for every open and every new connection."""

        def hole() -> None:
            self._hole = True
            self.black_holed_at = time.monotonic()
            self.healed_at = None
            for conn in self._conns:
                conn.dead = True
                conn.alive.clear()

        self._do(hole)

    def heal(self, *, revive: bool = False) -> None:
        """Relay new connections again; ``revive`` also relays the black-holed ones again."""

        def mend() -> None:
            self._hole = False
            self.healed_at = time.monotonic()
            if revive:
                for conn in self._conns:
                    conn.dead = False
                    conn.alive.set()

        self._do(mend)

    def opened_since(self, moment: float) -> list[float]:
        """Monotonic times of the connections accepted at or after ``moment``."""
        return [t for t in list(self.opened) if t >= moment]

    def figures(self) -> dict[str, Any]:
        """The counters, for printing."""
        return {
            "connections": self.connections,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "cuts": self.cuts,
        }

    # ----------------------------------------------------------------- relaying

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(len(self.opened), writer)
        self.opened.append(time.monotonic())
        self._conns.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._hole:
                conn.dead = True
                await conn.alive.wait()  # only heal(revive=True) lets it through
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                conn.close(rst=True)  # nothing listens: the client sees a refused path
                return
            conn.server = upstream
            if conn.closed:
                conn.close(rst=True)
                return
            if conn.dead is False:
                conn.alive.set()
            up = self._spawn(self._pump(conn, reader, upstream, up=True))
            down = self._spawn(self._pump(conn, upstream_reader, writer, up=False))
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            # One side ended: end the other after what is in flight (unless black-holed).
            while conn.dead and not conn.closed:
                await conn.alive.wait()
            await asyncio.wait({up, down}, timeout=1.0)
            if not conn.closed:
                conn.close(rst=False)
            for pump in (up, down):
                pump.cancel()
        except (ConnectionError, asyncio.CancelledError):
            conn.close(rst=True)
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        assert self._flowing is not None
        try:
            while not conn.closed:
                data = await reader.read(65536)
                while conn.dead:  # held in the black hole: no byte, no FIN, no RST
                    await conn.alive.wait()
                if not data:
                    if not conn.closed and writer.can_write_eof():
                        writer.write_eof()
                    return
                await self._flowing.wait()
                while conn.dead:
                    await conn.alive.wait()
                if conn.closed:
                    return
                if self._cut_remaining is not None:
                    if len(data) >= self._cut_remaining:
                        self._count(self._cut_remaining, up=up)
                        writer.write(data[: self._cut_remaining])
                        self._cut_remaining = None
                        self.cuts += 1
                        conn.close(rst=self._cut_rst)
                        return
                    self._cut_remaining -= len(data)
                self._count(len(data), up=up)  # before the bytes can reach the peer
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            if not conn.dead:
                conn.close(rst=True)

    def _count(self, n: int, *, up: bool) -> None:
        now = time.monotonic()
        if up:
            self.bytes_up += n
            self.last_up = now
        else:
            self.bytes_down += n
            self.last_down = now
