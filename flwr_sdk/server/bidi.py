"""grpc-bidi (``FlowerService.Join``): each open stream is one node.

The wire as Flower's legacy ``start_server`` speaks it: the server speaks first, one
``ClientMessage`` answers each ``ServerMessage``, and ``ReconnectIns(seconds=0)`` ends the
session after the last round. A node that does not answer within the round timeout has
its stream ended with ``DEADLINE_EXCEEDED`` (as the legacy server does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpclib
from flwr_sdk_proto.v1_12.flwr import proto as pb
from grpclib.const import Status

from flwr_sdk.common.message import Message
from flwr_sdk.server.driver import NodePool, NodeUnavailableError, ReplyTimeoutError
from flwr_sdk.wire.bidi import (
    client_message_to_reply,
    instruction_to_server_message,
    reconnect_ins,
)

__all__ = ["BidiNodePool", "FlowerServiceServicer"]

log = logging.getLogger("flwr_sdk.server")

SERVER_NODE_ID = 0
"""grpc-bidi carries no node ids; the driver's instructions name node 0 as their sender."""

FINISH_TIMEOUT = 5.0
"""Seconds to wait for the streams to end after ReconnectIns."""


@dataclass
class _Pending:
    message: Message
    future: asyncio.Future[Message]


class _BidiNode:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self.abort = asyncio.Event()
        self.closed = asyncio.Event()
        self.current: _Pending | None = None


class BidiNodePool(NodePool):
    """The nodes connected over grpc-bidi (one per open ``Join`` stream)."""

    def __init__(self) -> None:
        super().__init__(SERVER_NODE_ID)
        self._nodes: dict[int, _BidiNode] = {}

    def register(self) -> _BidiNode:
        """Add a node for a new stream."""
        node_id = 0
        while node_id == 0 or node_id in self._nodes:
            node_id = secrets.randbits(64)
        node = _BidiNode(node_id)
        self._nodes[node_id] = node
        log.info("grpc-bidi node %d joined (%d connected)", node_id, len(self._nodes))
        self._notify()
        return node

    def unregister(self, node: _BidiNode) -> None:
        """Drop a node whose stream ended; fail whatever it still had to answer."""
        if self._nodes.pop(node.node_id, None) is None:
            return
        pending = [node.current] if node.current is not None else []
        while not node.queue.empty():
            item = node.queue.get_nowait()
            if item is not None:
                pending.append(item)
        for item in pending:
            if not item.future.done():
                item.future.set_exception(NodeUnavailableError(f"node {node.node_id} left"))
        log.info("grpc-bidi node %d left (%d connected)", node.node_id, len(self._nodes))

    def online_nodes(self) -> list[int]:
        """Nodes with an open stream."""
        return [n for n, node in self._nodes.items() if not node.abort.is_set()]

    async def request(self, message: Message, timeout: float | None) -> Message:
        """Queue the instruction on the node's stream and wait for its answer."""
        node_id = message.metadata.dst_node_id
        node = self._nodes.get(node_id)
        if node is None or node.abort.is_set():
            raise NodeUnavailableError(f"node {node_id} is not connected")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        node.queue.put_nowait(_Pending(message, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            node.abort.set()
            raise ReplyTimeoutError(f"node {node_id} did not answer within {timeout}s") from None

    async def finish(self) -> None:
        """Send ``ReconnectIns(seconds=0)`` to every node and wait for the streams to end."""
        nodes = list(self._nodes.values())
        for node in nodes:
            node.queue.put_nowait(None)
        if nodes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(node.closed.wait() for node in nodes)), FINISH_TIMEOUT
                )


async def _deliver_cancellation() -> None:
    """Give a pending cancellation a chance to arrive before a handler returns.

    When the client resets a stream, grpclib cancels the handler's task; if the handler
    then returns without awaiting anything, grpclib logs "Failed to handle
    cancellation". A zero sleep lets the CancelledError be raised here instead.
    """
    await asyncio.sleep(0)


class FlowerServiceServicer(pb.FlowerServiceBase):
    """``FlowerService.Join`` backed by a :class:`BidiNodePool`."""

    def __init__(self, pool: BidiNodePool) -> None:
        self.pool = pool

    async def join(
        self, messages: AsyncIterator[pb.ClientMessage]
    ) -> AsyncIterator[pb.ServerMessage]:
        """Serve one node: send its instructions, one at a time, and collect the answers."""
        node = self.pool.register()
        try:
            while True:
                item = await self._next(node)
                if item is None:
                    self.pool.unregister(node)
                    yield reconnect_ins(0)
                    await self._drain(messages)
                    return
                node.current = item
                try:
                    server_message = instruction_to_server_message(item.message)
                except Exception as exc:  # a bug on our side: fail the instruction only
                    item.future.set_exception(exc)
                    node.current = None
                    continue
                yield server_message
                try:
                    client_message = await self._receive(node, messages)
                except NodeUnavailableError:
                    await _deliver_cancellation()
                    return
                try:
                    reply = client_message_to_reply(client_message, item.message)
                except Exception as exc:
                    log.warning("grpc-bidi node %d sent a bad answer: %s", node.node_id, exc)
                    if not item.future.done():
                        item.future.set_exception(exc)
                else:
                    if not item.future.done():
                        item.future.set_result(reply)
                node.current = None
        finally:
            self.pool.unregister(node)
            node.closed.set()

    @staticmethod
    async def _drain(messages: AsyncIterator[pb.ClientMessage]) -> None:
        """After ReconnectIns, let the client close the stream (as the legacy server does).

        Ending the call from the server side first leaves Flower's grpcio client blocked
        in ``channel.close()`` at exit; so read (and ignore) the ``DisconnectRes`` until
        the client half-closes or resets the stream.
        """
        with contextlib.suppress(Exception):
            async for _ in messages:
                pass
        await _deliver_cancellation()

    @staticmethod
    async def _next(node: _BidiNode) -> _Pending | None:
        return await node.queue.get()

    @staticmethod
    async def _receive(
        node: _BidiNode, messages: AsyncIterator[pb.ClientMessage]
    ) -> pb.ClientMessage:
        receive = asyncio.ensure_future(anext(messages))
        abort = asyncio.ensure_future(node.abort.wait())
        try:
            await asyncio.wait({receive, abort}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # The handler itself is cancelled (the server stops, the client reset the
            # stream): the read must not outlive it, or it is left to die with the loop.
            receive.cancel()
            raise
        finally:
            abort.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(BaseException):
                await receive
            raise grpclib.GRPCError(Status.DEADLINE_EXCEEDED, "no answer within the round timeout")
        try:
            return receive.result()
        except StopAsyncIteration:
            raise NodeUnavailableError(f"node {node.node_id} closed its stream") from None
        except grpclib.GRPCError:
            raise
        except Exception as exc:  # the connection broke (reset, protocol error, ...)
            raise NodeUnavailableError(f"node {node.node_id}: {type(exc).__name__}") from exc
