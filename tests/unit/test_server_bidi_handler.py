"""The reference server's grpc-bidi handler leaves no task behind when it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flwr_sdk.server.bidi import BidiNodePool, FlowerServiceServicer


def test_a_cancelled_wait_for_an_answer_stops_the_read() -> None:
    """Cancelling the handler while it waits for the node's answer cancels the read too.

    Before, the read of the next client message stayed pending after its handler was
    gone, and died with the event loop ("Event loop is closed" at garbage collection).
    """

    async def scenario() -> list[asyncio.Task[object]]:
        reading = asyncio.Event()

        async def silent_node() -> AsyncIterator[object]:
            reading.set()
            await asyncio.Event().wait()  # never answers
            yield None

        pool = BidiNodePool()
        node = pool.register()
        receive = FlowerServiceServicer._receive(node, silent_node())  # type: ignore[arg-type]
        handler = asyncio.create_task(receive)
        await asyncio.wait_for(reading.wait(), timeout=10)
        handler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handler
        await asyncio.sleep(0)
        me = asyncio.current_task()
        return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

    assert asyncio.run(scenario()) == []
