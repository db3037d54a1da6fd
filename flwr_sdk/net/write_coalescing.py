"""Write coalescing: small writes of one event-loop iteration reach the socket as one.

grpclib writes every HTTP/2 step to its transport at once: a unary call is a HEADERS write
and a DATA write on the client, HEADERS, DATA and trailers on the server, plus
WINDOW_UPDATE and PING ACK writes. asyncio's socket transport turns each ``write`` into a
``send`` system call while its buffer is empty, so hundreds of small calls a second on one
shared connection (a swarm's idle nodes polling) cost one syscall per frame.

:class:`CoalescingTransport` sits between grpclib and the real transport. A small
immutable write (``bytes`` of at most :data:`COALESCE_MAX` bytes) is kept in a list and
the list is written, joined, once, from a callback scheduled with ``loop.call_soon`` by
the first kept write, i.e. right after the callbacks of the current iteration. Everything
else — bigger ``bytes``, and any ``memoryview`` or ``bytearray`` (the zero-copy frames of
:func:`flwr_sdk.net.framing.send_chunks`; a mutable buffer must not be kept for later) —
is written to the real transport directly, as the very object given, after the kept bytes
(one write of those first): the order of bytes on the wire is always the order of the
writes, and a large payload is never joined or copied here.

The rest of the transport interface is forwarded, with these rules:

* ``close`` and ``write_eof`` write the kept bytes first (so nothing written before is
  lost); ``abort`` drops them (as asyncio drops its own buffer on abort);
* writes after ``close`` are handed to the real transport as they come (it decides, as
  it would without the proxy);
* ``get_write_buffer_size`` includes the kept bytes; flow control (the real transport's
  ``pause_writing`` / ``resume_writing`` calls to the protocol) is unchanged: the kept
  bytes are at most one iteration's small frames;
* :meth:`discard` (the protocol's ``connection_lost``) drops the kept bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["COALESCE_MAX", "CoalescingTransport"]

#: Largest write (bytes) that is kept and joined; bigger ones are written directly.
COALESCE_MAX = 16 * 1024


class CoalescingTransport(asyncio.Transport):
    """A transport proxy joining small writes of one loop iteration (see the module docs).

    Args:
        transport: the real (connected) transport.
        loop: the event loop whose iteration bounds a batch; the running loop by default.

    """

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__()
        self.transport = transport
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._scheduled = False
        self._closed = False
        #: Writes the real transport received (joined batches and direct writes).
        self.writes = 0

    # --- writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` for the end of the iteration when small ``bytes``; else write it."""
        if type(data) is bytes and len(data) <= COALESCE_MAX and not self._closed:
            if data:
                self._pending.append(data)
                self._pending_size += len(data)
                if not self._scheduled:
                    self._scheduled = True
                    self._loop.call_soon(self._flush_soon)
            return
        self.flush()
        self.writes += 1
        self.transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Write each item as :meth:`write` would."""
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write the kept bytes now (one write)."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_size = 0
        self.writes += 1
        self.transport.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def discard(self) -> None:
        """Drop the kept bytes (the connection is lost: nothing can be sent any more)."""
        self._pending = []
        self._pending_size = 0

    def get_write_buffer_size(self) -> int:
        """The real transport's buffered bytes plus the kept ones."""
        return self.transport.get_write_buffer_size() + self._pending_size

    # --- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Write the kept bytes, then close the real transport (it flushes its buffer)."""
        self.flush()
        self._closed = True
        self.transport.close()

    def abort(self) -> None:
        """Drop the kept bytes and abort the real transport."""
        self.discard()
        self._closed = True
        self.transport.abort()

    def write_eof(self) -> None:
        """Write the kept bytes, then half-close the real transport."""
        self.flush()
        self._closed = True
        self.transport.write_eof()

    def is_closing(self) -> bool:
        """Whether the real transport is closing or closed."""
        return self.transport.is_closing()

    # --- forwarded as is ---------------------------------------------------------------------

    def can_write_eof(self) -> bool:
        """As the real transport."""
        return self.transport.can_write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As the real transport."""
        return self.transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As the real transport."""
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """As the real transport."""
        return self.transport.get_write_buffer_limits()

    def pause_reading(self) -> None:
        """As the real transport."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        """As the real transport."""
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        """As the real transport."""
        return self.transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """As the real transport."""
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """As the real transport."""
        return self.transport.get_protocol()

    def __repr__(self) -> str:
        """Name the real transport."""
        return f"CoalescingTransport({self.transport!r})"
