"""Round-trip a large bytes payload through a local grpclib server, stock vs tuned.

Usage: python bench/grpclib_tuning.py [--mib 128] [--repeat 3]

Each variant starts its own server on 127.0.0.1 and sends the payload as one unary request
whose reply echoes it back (a raw bytes codec, so only transport cost is measured). Prints
the best of ``--repeat`` round trips in seconds. Variants: ``stock`` (plain grpclib
Channel/Server), ``windows`` (64 MiB windows only), ``windows+frame`` (plus 1 MiB
MAX_FRAME_SIZE), ``tuned`` (plus no per-frame hex dump; what TunedChannel/tuned_server use).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, cast

from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream

from flwr_sdk.net.grpc_tuning import (
    GrpcTuning,
    TunedChannel,
    tuned_configuration,
    tuned_server,
)
from flwr_sdk.net.grpclib_internals import internals_problems, internals_usable

METHOD = "/flwr_sdk.bench.Echo/Echo"


class RawBytesCodec(CodecBase):
    """Messages are bytes on the wire as they are."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class Echo:
    async def echo(self, stream: Stream[bytes, bytes]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {METHOD: Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes)}


async def run_variant(name: str, payload: bytes, repeat: int) -> float:
    codec = RawBytesCodec()
    if name == "stock":
        server: Server = Server([Echo()], codec=codec)
    elif name == "windows":
        server = tuned_server(
            [Echo()], codec=codec, tuning=GrpcTuning(max_frame_size=None, quiet_data_frames=False)
        )
    elif name == "windows+frame":
        server = tuned_server([Echo()], codec=codec, tuning=GrpcTuning(quiet_data_frames=False))
    else:
        server = tuned_server([Echo()], codec=codec)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    port = cast(asyncio.Server, server._server).sockets[0].getsockname()[1]
    if name == "stock":
        channel: Channel = Channel("127.0.0.1", port, codec=codec)
    elif name == "windows":
        channel = Channel("127.0.0.1", port, codec=codec, config=tuned_configuration())
    elif name == "windows+frame":
        channel = TunedChannel(
            "127.0.0.1", port, codec=codec, tuning=GrpcTuning(quiet_data_frames=False)
        )
    else:
        channel = TunedChannel("127.0.0.1", port, codec=codec)
    method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(channel, METHOD, bytes, bytes)
    best = float("inf")
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            reply = await method(payload)
            best = min(best, time.perf_counter() - start)
            assert len(reply) == len(payload)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--variants", default="stock,windows,windows+frame,tuned", help="comma-separated"
    )
    args = parser.parse_args()
    payload = bytes(range(256)) * (args.mib * 2**20 // 256)
    print(f"payload {args.mib} MiB, best of {args.repeat} round trips")
    if not internals_usable():
        # The non-stock variants then measure stock grpclib too (see grpclib_internals).
        reason = "; ".join(internals_problems()) or "forced (FLWR_SDK_STOCK_GRPCLIB)"
        print(f"tuned path unavailable, all variants run stock grpclib: {reason}")
    for name in args.variants.split(","):
        seconds = await run_variant(name, payload, args.repeat)
        print(f"{name:>14}: {seconds:.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
