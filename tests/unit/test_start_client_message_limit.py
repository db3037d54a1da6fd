"""grpc_max_message_length through the whole client: an oversized frame from the server is
refused from its length prefix, before the body is read or allocated."""

from __future__ import annotations

import asyncio
import struct
import time
import tracemalloc

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived

from flwr_sdk import Client, Context, start_client_async
from flwr_sdk.errors import MessageTooLargeError

ANNOUNCED = 600_000_000
LIMIT = 1_000_000


async def _announce_huge_message(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A fake Flower server: answers Join with a gRPC prefix announcing 600 MB, then 1 KiB."""
    conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    headers = [(":status", "200"), ("content-type", "application/grpc")]
                    conn.send_headers(event.stream_id, headers)
                    prefix = b"\x00" + struct.pack(">I", ANNOUNCED)
                    conn.send_data(event.stream_id, prefix + b"\x00" * 1024)
            writer.write(conn.data_to_send())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _client_fn(context: Context) -> Client:
    raise AssertionError("no instruction may reach the client")


def test_oversized_server_message_is_refused_without_allocation() -> None:
    async def main() -> tuple[MessageTooLargeError, float, int]:
        server = await asyncio.start_server(_announce_huge_message, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(MessageTooLargeError) as info:
                await asyncio.wait_for(
                    start_client_async(
                        server_address=f"127.0.0.1:{port}",
                        client_fn=_client_fn,
                        grpc_max_message_length=LIMIT,
                        max_retries=0,
                    ),
                    timeout=10,
                )
            elapsed = time.monotonic() - started
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            server.close()
            await server.wait_closed()
        return info.value, elapsed, peak

    error, elapsed, peak = asyncio.run(main())
    assert error.size == ANNOUNCED and error.limit == LIMIT
    assert str(ANNOUNCED) in str(error) and str(LIMIT) in str(error)
    assert elapsed < 5
    # Memory stays flat: nothing near the announced size (or the limit) was allocated.
    assert peak < 4 * 2**20, f"peak traced allocation {peak} bytes"
