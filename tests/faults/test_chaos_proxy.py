"""The chaos proxy itself (tests/support/chaos_proxy.py), in front of a local echo server.

Each fault is checked at the socket: a cut lands at the byte offset drawn, a stall holds
bytes for its length and then delivers them, a black hole sends no byte, FIN or RST
(a reader waits), heal lets new connections through and leaves the old ones dead.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from support.chaos_proxy import ChaosProxy, LoopThread


@pytest.fixture
def echo() -> Iterator[tuple[LoopThread, int]]:
    """An echo server on its own loop thread: (thread, port)."""
    thread = LoopThread("echo")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0)

    server = thread.run(serve())
    try:
        yield thread, int(server.sockets[0].getsockname()[1])
    finally:
        thread.call(server.close)
        thread.close()


@pytest.fixture
def proxy(echo: tuple[LoopThread, int]) -> Iterator[ChaosProxy]:
    with ChaosProxy("127.0.0.1", echo[1], seed="chaos-proxy-test") as chaos:
        yield chaos


def _connect(proxy: ChaosProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def test_relays_and_counts(proxy: ChaosProxy) -> None:
    with _connect(proxy) as sock:
        sock.sendall(b"hello" * 1000)
        assert _recv_exactly(sock, 5000) == b"hello" * 1000
    assert proxy.connections == 1
    assert proxy.bytes_up == 5000 and proxy.bytes_down == 5000


def test_cut_at_seeded_offset(proxy: ChaosProxy) -> None:
    again = ChaosProxy("127.0.0.1", 1, seed="chaos-proxy-test")
    expected = again.rng.randint(1, 4096)
    offset = proxy.cut_after()
    assert offset == expected  # the seed decides the offset
    with _connect(proxy) as sock:
        sock.sendall(b"x" * 10_000)
        got = _recv_exactly(sock, 10_000)
    # The first `offset` bytes crossed (upstream), the echo came back until the cut.
    assert len(got) < 10_000
    assert proxy.cuts == 1
    assert proxy.bytes_up == offset


@pytest.mark.exclusive  # times a wall-clock bound
def test_stall_holds_then_delivers(proxy: ChaosProxy) -> None:
    with _connect(proxy, timeout=5.0) as sock:
        sock.sendall(b"a")
        assert _recv_exactly(sock, 1) == b"a"
        proxy.stall(1.0)
        started = time.monotonic()
        sock.sendall(b"b")
        assert _recv_exactly(sock, 1) == b"b"
        held = time.monotonic() - started
    print(f"\nstall 1.0 s: byte held {held:.2f} s")
    assert 0.8 <= held <= 2.5


def test_black_hole_is_silent_and_heal_serves_new_connections(proxy: ChaosProxy) -> None:
    old = _connect(proxy, timeout=1.0)
    old.sendall(b"a")
    assert _recv_exactly(old, 1) == b"a"
    proxy.black_hole()
    old.sendall(b"b")
    with pytest.raises(socket.timeout):  # no byte, no FIN (b""), no RST (ConnectionError)
        old.recv(1)
    during = _connect(proxy, timeout=1.0)  # accepted, but nothing comes back
    during.sendall(b"c")
    with pytest.raises(socket.timeout):
        during.recv(1)
    proxy.heal()
    with _connect(proxy) as fresh:
        fresh.sendall(b"d")
        assert _recv_exactly(fresh, 1) == b"d"
    with pytest.raises(socket.timeout):  # the NAT forgot the old ones
        old.recv(1)
    with pytest.raises(socket.timeout):
        during.recv(1)
    old.close()
    during.close()
    assert proxy.connections == 3


def test_heal_revive_delivers_what_was_held(proxy: ChaosProxy) -> None:
    with _connect(proxy, timeout=1.0) as sock:
        proxy.black_hole()
        sock.sendall(b"held")
        with pytest.raises(socket.timeout):
            sock.recv(1)
        proxy.heal(revive=True)
        sock.settimeout(3.0)
        assert _recv_exactly(sock, 4) == b"held"


def test_stop_closes_everything(echo: tuple[LoopThread, int]) -> None:
    chaos = ChaosProxy("127.0.0.1", echo[1]).start()
    sock = _connect(chaos, timeout=3.0)
    chaos.black_hole()
    chaos.stop()
    try:
        assert sock.recv(1) == b""
    except ConnectionError:
        pass
    finally:
        sock.close()
