"""A serialized message as a sequence of byte buffers, and a reader over such a sequence.

:class:`EncodedChunks` holds a message's encoded pieces without joining them (small
encoded pieces and zero-copy views of tensor data); :class:`ChunkCursor` takes
consecutive frames of a given size from them, copying only where a frame spans two
pieces. Plain data types with no transport in them: :mod:`flwr_sdk.net.framing` writes
them on a gRPC stream, the REST transports on an HTTP body, and
:mod:`flwr_sdk.net.grpclib_internals` hands them to grpclib.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ChunkCursor", "EncodedChunks", "Piece"]

Piece = bytes | bytearray | memoryview
"""One buffer of a message."""


def _as_bytes_view(piece: Piece) -> memoryview:
    view = memoryview(piece)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


class EncodedChunks:
    """A serialized message as an ordered sequence of byte buffers (not concatenated).

    ``len()`` is the total size; ``bytes()`` joins the pieces (one copy; for callers that
    need a contiguous buffer). ``prefix + chunks`` with a ``bytes`` prefix returns a new
    :class:`EncodedChunks` that starts with the prefix, without copying the pieces. The
    pieces are kept by reference: the buffers they view must not change until the
    message has been sent.
    """

    __slots__ = ("_nbytes", "pieces")

    def __init__(self, pieces: Iterable[Piece]) -> None:
        views = tuple(_as_bytes_view(p) for p in pieces)
        self.pieces: tuple[memoryview, ...] = tuple(v for v in views if v.nbytes)
        self._nbytes = sum(v.nbytes for v in self.pieces)

    def __len__(self) -> int:
        """Total size in bytes."""
        return self._nbytes

    @property
    def nbytes(self) -> int:
        """Total size in bytes (same as ``len``)."""
        return self._nbytes

    def __bytes__(self) -> bytes:
        """The pieces joined into one ``bytes`` object (a copy)."""
        return b"".join(self.pieces)

    def __radd__(self, prefix: object) -> EncodedChunks:
        """``prefix + self`` for a bytes-like ``prefix``: the prefix becomes the first piece."""
        if not isinstance(prefix, (bytes, bytearray, memoryview)):
            return NotImplemented
        return EncodedChunks((prefix, *self.pieces))

    def __eq__(self, other: object) -> bool:
        """Compare contents with another :class:`EncodedChunks` or a bytes-like object."""
        if isinstance(other, EncodedChunks):
            return len(self) == len(other) and bytes(self) == bytes(other)
        if isinstance(other, (bytes, bytearray, memoryview)):
            return len(self) == memoryview(other).nbytes and bytes(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Describe the size and the number of pieces, not the content."""
        return f"EncodedChunks(<{self._nbytes} bytes in {len(self.pieces)} pieces>)"


class ChunkCursor:
    """Reads consecutive slices of a sequence of byte buffers.

    :meth:`take` returns the next at most ``n`` bytes: a zero-copy slice when they lie
    within one buffer, else the joined bytes of the buffers they span (at most ``n``
    bytes copied), and ``b""`` at the end.
    """

    __slots__ = ("_index", "_offset", "_pieces")

    def __init__(self, pieces: tuple[memoryview, ...]) -> None:
        self._pieces = pieces
        self._index = 0
        self._offset = 0

    def take(self, n: int) -> Piece:
        """The next at most ``n`` bytes (``n > 0``)."""
        pieces = self._pieces
        if self._index >= len(pieces):
            return b""
        piece = pieces[self._index]
        left = piece.nbytes - self._offset
        if left >= n:
            out = piece[self._offset : self._offset + n]
            self._offset += n
            if self._offset == piece.nbytes:
                self._index += 1
                self._offset = 0
            return out
        parts = [piece[self._offset :]]
        have = left
        self._index += 1
        self._offset = 0
        while have < n and self._index < len(pieces):
            piece = pieces[self._index]
            grab = min(piece.nbytes, n - have)
            parts.append(piece[:grab])
            have += grab
            if grab == piece.nbytes:
                self._index += 1
            else:
                self._offset = grab
        return b"".join(parts)
