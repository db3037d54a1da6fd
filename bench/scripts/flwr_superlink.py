"""A real Flower SuperLink with gRPC-boundary time stamps, for the round bench.

Runs INSIDE an isolated Flower virtualenv (flwr 1.12.0 or 1.15.2); takes
``flower-superlink``'s arguments:

    BENCH_STAMPS=stamps.jsonl python flwr_superlink.py --insecure --fleet-api-type ...

It is ``flower-superlink`` (``flwr.server.app.run_superlink``, the same entry point in both
releases) with ``grpc_stamps.install`` applied first, so every Fleet response that delivers
an instruction (1.12 PullTaskIns, 1.15 PullMessages) and every Fleet request that carries
a reply (1.12 PushTaskRes, 1.15 PushMessages) is appended to ``$BENCH_STAMPS`` with its time
stamps and ids. State stays Flower's default (in memory).
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
