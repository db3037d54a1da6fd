"""A node that answers two custom message types with typed handlers, plus legacy fit.

The message types come from ``examples/extending/proto/demo/v1/demo.proto``; their
classes and RecordSet adapters were generated into ``examples/extending/demo_proto`` by

    flwr-sdk codegen --proto-path examples/extending/proto --out examples/extending/demo_proto

Run it against a Flower SuperLink (any server that sends ``demo.v1.SquareRequest`` /
``demo.v1.StatsRequest`` messages built per ``docs/extending.md``):

    python -m examples.extending.client --server-address 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import hashlib
import logging

import numpy as np

import flwr_sdk
from examples.extending.demo_proto.demo import v1 as demo
from examples.numpy_client import ShiftClient
from flwr_sdk import Client, Context
from flwr_sdk.clientapp.handlers import MessageHandlers
from flwr_sdk.ext import ndarray_from_numpy, ndarray_to_numpy

handlers = MessageHandlers()


@handlers.register(demo.SquareRequest)
def square(request: demo.SquareRequest, context: Context) -> demo.SquareReply:
    """Square every value; report the scaled sum and this node's id."""
    squares = [v * v for v in request.values]
    return demo.SquareReply(
        squares=squares, scaled_sum=request.scale * sum(squares), node_id=context.node_id
    )


@handlers.register(demo.StatsRequest)
def stats(request: demo.StatsRequest, context: Context) -> demo.StatsReply:
    """Compute the requested statistic of ``data`` and return it centred on its mean."""
    if request.data is None:
        raise ValueError("StatsRequest.data is required")
    data = ndarray_to_numpy(request.data).astype(np.float64)
    value = float(data.max() if request.statistic == demo.Statistic.MAX else data.mean())
    return demo.StatsReply(
        summary=demo.Summary(value=value, shape=list(data.shape)),
        centered=ndarray_from_numpy(data - data.mean()),
        label=request.label.upper(),
        digest=hashlib.sha256(request.salt + data.tobytes()).digest(),
        statistic=request.statistic,
        notes=[f"node {context.node_id}", f"{data.size} values"],
    )


def legacy_client_fn(context: Context) -> Client:
    """The legacy client for train/evaluate, served next to the typed handlers."""
    return ShiftClient(index=0).to_client()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the node until the server lets it go."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", default="127.0.0.1:9092")
    parser.add_argument("--transport", default="grpc-rere", choices=["grpc-rere", "rest"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    flwr_sdk.start_client(
        server_address=args.server_address,
        client_fn=handlers.client_fn(legacy_client_fn),
        transport=args.transport,
        insecure=None if args.transport == "rest" else True,
    )


if __name__ == "__main__":
    main()
