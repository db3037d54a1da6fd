"""gRPC message bodies moved without joining them: chunked sends, preallocated receives.

Two copies of every large payload happen inside grpclib 0.4.9 by default:

* **send**: ``grpclib.stream.send_message`` builds ``prefix + body`` (a second full copy of
  the encoded message) and ``Stream.send_data`` slices it into DATA frames;
* **receive**: ``grpclib.protocol.Buffer.read`` collects the DATA frames of one message and
  joins them with ``b"".join`` (the frames and the joined copy are alive at the same time).

This module provides the two pieces that remove them. Both are used by
:class:`flwr_sdk.net.limits.SizeLimitedStream`, the stream class of every tuned
endpoint:

* :class:`~flwr_sdk.net.chunks.EncodedChunks` (a serialized message held as a sequence
  of buffers: small encoded pieces and zero-copy views of tensor data) goes out frame by
  frame. A codec may return it from ``encode``; the tuned endpoints hand it to grpclib
  explicitly (see :class:`~flwr_sdk.net.grpclib_internals.ChunkHandoffCodec`), so the
  stream's ``send_data`` receives the prefixed chunks and writes them frame by frame with
  :func:`send_chunks`. ``prefix + chunks`` (``EncodedChunks.__radd__``) is a plain
  operator for any caller; nothing relies on grpclib using it.
* :func:`read_into` fills a preallocated buffer (sized from the gRPC length prefix, after
  the size limit was checked) straight from the stream's received DATA chunks, releasing
  each chunk as soon as it is copied.

Transfer progress: a client node sets :data:`TRANSFER_EVENTS` (a context variable) to its
event callback for as long as it runs; :func:`transfer_meter` then gives the send and
receive loops above (and the REST transport's body loops) a :class:`TransferMeter` for
each message of at least :data:`~flwr_sdk.events.TRANSFER_PROGRESS_MIN` bytes, which
reports :class:`~flwr_sdk.events.TransferProgress` events as the bytes move. Without a
callback (a server, or a node without ``on_event``) the cost is one context-variable
lookup per large message; the meter only counts, it never touches the payload.

The grpclib internals these need (the stream's h2 connection and transport, the receive
buffer's queues) are reached through :mod:`flwr_sdk.net.grpclib_internals`, which names
each of them and guards them by version; the remaining grpclib attributes used here are
public-named (``Stream.connection`` / ``window_updated`` / ``data_sent``,
``Connection.write_ready`` / ``data_sent`` / ``data_send_process``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from contextvars import ContextVar
from typing import Any, Literal

import numpy as np

from flwr_sdk.events import (
    TRANSFER_PROGRESS_MIN,
    TRANSFER_PROGRESS_STEP,
    EventCallback,
    TransferProgress,
)
from flwr_sdk.net import grpclib_internals
from flwr_sdk.net.chunks import ChunkCursor, EncodedChunks

__all__ = [
    "TRANSFER_EVENTS",
    "ZERO_COPY_FRAME_MIN",
    "Progress",
    "TransferMeter",
    "read_declared",
    "read_into",
    "send_chunks",
    "transfer_meter",
]

#: DATA frames at least this large go out without a copy when the h2 connection offers
#: ``send_data_frame`` (:class:`flwr_sdk.net.grpc_tuning.TunedH2Connection`).
ZERO_COPY_FRAME_MIN = 16 * 1024

Progress = Callable[[int], None]
"""Told the number of bytes of one message moved so far (see :class:`TransferMeter`)."""

TRANSFER_EVENTS: ContextVar[EventCallback | None] = ContextVar(
    "flwr_sdk_transfer_events", default=None
)
"""The event callback of the client node running in this context (None: report nothing).

Set by the node loop for as long as it runs; the callback must not raise (the node
passes a guarded one).
"""


class TransferMeter:
    """Reports one message's transfer as :class:`~flwr_sdk.events.TransferProgress` events.

    Call it with the bytes moved so far (``done``, growing): it reports ``done=0`` when
    created, then at most every :data:`~flwr_sdk.events.TRANSFER_PROGRESS_STEP` bytes,
    and once when ``done`` reaches ``total``. ``offset`` bytes at the start of the
    transfer (a gRPC frame prefix) are not counted.
    """

    __slots__ = ("_callback", "_direction", "_next", "_offset", "_total")

    def __init__(
        self,
        callback: EventCallback,
        direction: Literal["receive", "send"],
        total: int,
        offset: int = 0,
    ) -> None:
        self._callback = callback
        self._direction: Literal["receive", "send"] = direction
        self._total = total
        self._offset = offset
        # The next byte count to report: one step on, never past the end.
        self._next = min(TRANSFER_PROGRESS_STEP, total)
        callback(TransferProgress(direction, 0, total))

    def __call__(self, moved: int) -> None:
        """Note that ``moved`` bytes (prefix included) have moved; report when due."""
        done = min(max(moved - self._offset, 0), self._total)
        if done >= self._next:
            # After the end has been reported, nothing more is.
            total = self._total
            self._next = min(done + TRANSFER_PROGRESS_STEP, total) if done < total else total + 1
            self._callback(TransferProgress(self._direction, done, total))


def transfer_meter(
    direction: Literal["receive", "send"], total: int, offset: int = 0
) -> TransferMeter | None:
    """A meter for a message of ``total`` bytes, or None when nothing is to be reported.

    None when no node callback is set in this context (:data:`TRANSFER_EVENTS`) or the
    message is smaller than :data:`~flwr_sdk.events.TRANSFER_PROGRESS_MIN`.
    """
    if total < TRANSFER_PROGRESS_MIN:
        return None
    callback = TRANSFER_EVENTS.get()
    if callback is None:
        return None
    return TransferMeter(callback, direction, total, offset)


async def send_chunks(
    stream: Any,
    chunks: EncodedChunks,
    end_stream: bool = False,
    progress: Progress | None = None,
) -> None:
    """Write ``chunks`` on a grpclib ``protocol.Stream`` as DATA frames (flow-controlled).

    Same behaviour as ``grpclib.protocol.Stream.send_data`` (waits for the transport and
    the stream's window, frames of at most the peer's max frame size), but takes the
    frames from the pieces instead of one contiguous buffer, and, on a connection with
    ``send_data_frame``, hands frames of at least :data:`ZERO_COPY_FRAME_MIN` bytes to the
    transport as views (the transport copies only what the socket does not take at once).
    ``progress`` is told the bytes written so far after every frame.
    """
    assert stream.id is not None
    h2, transport = grpclib_internals.stream_parts(stream)
    connection = stream.connection
    # Tuned connections send big frames without copying them (see TunedH2Connection).
    zero_copy = hasattr(h2, "send_data_frame")
    total = len(chunks)
    cursor = ChunkCursor(chunks.pieces)
    sent = 0
    while True:
        await connection.write_ready.wait()
        window = h2.local_flow_control_window(stream.id)
        if not window > 0:
            stream.window_updated.clear()
            await stream.window_updated.wait()
            continue
        size = min(window, h2.max_outbound_frame_size, total - sent)
        frame = cursor.take(size)
        frame_len = len(frame)
        sent += frame_len
        last = sent >= total
        if zero_copy and frame_len >= ZERO_COPY_FRAME_MIN and not (end_stream and last):
            # Header first, then the body as the view it is (no copy in h2).
            transport.write(h2.send_data_frame(stream.id, memoryview(frame)))
            transport.write(frame)
        else:
            h2.send_data(stream.id, frame, end_stream=end_stream and last)
            transport.write(h2.data_to_send())
        stream.data_sent += frame_len
        connection.data_sent += frame_len
        connection.data_send_process()
        if progress is not None:
            progress(sent)
        if last:
            break


async def read_into(buffer: Any, target: memoryview, progress: Progress | None = None) -> None:
    """Fill ``target`` from a grpclib ``protocol.Buffer`` (what ``read(len(target))`` reads).

    Received chunks are copied into ``target`` and released one by one (and acknowledged
    to the peer's flow control as grpclib does), so no joined copy of the message exists.
    ``progress`` is told the bytes filled so far after every chunk.
    See :func:`flwr_sdk.net.grpclib_internals.read_into`.

    Raises:
        AssertionError: the stream ended before ``len(target)`` bytes arrived (grpclib's
            own error for this case).

    """
    await grpclib_internals.read_into(buffer, target, progress)


async def read_declared(chunks: AsyncIterable[bytes], size: int) -> memoryview:
    """Read a body announced as ``size`` bytes into one buffer; return a writable view of it.

    The buffer is allocated uninitialised once (the caller checks ``size`` against its
    limit first) and each chunk is copied into it as it arrives, so no joined copy exists.
    The buffer belongs to this one body, so the arrays decoded from it are handed to user
    code writable, without a copy. Progress is reported as described in the module docs
    (:func:`transfer_meter`).

    Raises:
        ValueError: the body is longer or shorter than announced; the message says which
            ("body is longer than its Content-Length" / "... shorter ...").

    """
    target = np.empty(size, dtype=np.uint8).data
    meter = transfer_meter("receive", size)
    filled = 0
    async for chunk in chunks:
        end = filled + len(chunk)
        if end > size:
            raise ValueError("body is longer than its Content-Length")
        target[filled:end] = chunk
        filled = end
        if meter is not None:
            meter(filled)
    if filled != size:
        raise ValueError("body is shorter than its Content-Length")
    return target
