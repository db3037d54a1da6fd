"""A real Flower 1.12.0 SuperLink with gRPC-boundary time stamps, for the round bench.

Runs INSIDE the isolated flwr 1.12.0 virtualenv; takes ``flower-superlink``'s arguments:

    BENCH_STAMPS=stamps.jsonl python flwr_superlink.py --insecure --fleet-api-type ...

It is ``flower-superlink`` (``flwr.server.app.run_superlink``) with
``grpc_stamps.install`` applied first, so every PullTaskIns response that carries tasks
and every PushTaskRes request is appended to ``$BENCH_STAMPS`` with its time stamps and
task ids. State stays Flower's default (in memory).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc_stamps

grpc_stamps.install(Path(os.environ["BENCH_STAMPS"]))

from flwr.server.app import run_superlink  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "flower-superlink"
    sys.exit(run_superlink())
