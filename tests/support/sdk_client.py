"""Run one flwr-sdk client node with options chosen by a test (our interpreter).

    python tests/support/sdk_client.py --address 127.0.0.1:PORT --index 0 [options]

The client is the deterministic ShiftClient of ``examples/numpy_client.py``; options
select transport, TLS material (as bytes or as a path), retries, and faults to inject.
Exit code 0 when ``start_client`` returns, 3 when it raises (the exception's type is
printed as ``RAISED <TypeName>: <message>`` on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import flwr_sdk  # noqa: E402
from examples.numpy_client import ShiftClient  # noqa: E402


class FaultyShiftClient(ShiftClient):
    """ShiftClient that raises in ``fit`` on chosen rounds (once per round)."""

    def __init__(self, index: int, fail_rounds: set[int]) -> None:
        super().__init__(index)
        self.fail_rounds = set(fail_rounds)

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        round_ = int(config.get("round", -1))
        if round_ in self.fail_rounds:
            self.fail_rounds.discard(round_)
            raise RuntimeError(f"injected failure in round {round_}")
        return super().fit(parameters, config)


class StatefulShiftClient(ShiftClient):
    """ShiftClient that reports how often client_fn ran for its Context and whether the
    Context object was the same every time (state kept in ``context.state``)."""

    def __init__(self, index: int, context: flwr_sdk.Context) -> None:
        super().__init__(index)
        self.context = context

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        shifted, n, metrics = super().fit(parameters, config)
        record = self.context.state.configs_records["calls"]
        metrics["state_calls"] = int(record["n"])
        metrics["context_id"] = str(id(self.context))
        return shifted, n, metrics


def stateful_client_fn(index: int):  # type: ignore[no-untyped-def]
    def client_fn(context: flwr_sdk.Context) -> flwr_sdk.Client:
        records = context.state.configs_records
        if "calls" not in records:
            records["calls"] = flwr_sdk.ConfigsRecord({"n": 0})
        records["calls"]["n"] = int(records["calls"]["n"]) + 1
        return StatefulShiftClient(index, context).to_client()

    return client_fn


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--transport", default=None)
    parser.add_argument("--root-cert-path", default=None)
    parser.add_argument("--root-cert-bytes", default=None, help="file whose bytes to pass")
    parser.add_argument("--insecure", choices=["true", "false"], default=None)
    parser.add_argument("--max-retries", type=int, default=None)
    parser.add_argument("--max-wait-time", type=float, default=None)
    parser.add_argument("--max-message-length", type=int, default=536_870_912)
    parser.add_argument("--fail-fit-round", type=int, action="append", default=[])
    parser.add_argument("--stateful", action="store_true", help="use a client_fn with state")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    root: bytes | str | None = None
    if args.root_cert_path:
        root = args.root_cert_path
    elif args.root_cert_bytes:
        root = Path(args.root_cert_bytes).read_bytes()
    client = FaultyShiftClient(args.index, set(args.fail_fit_round))
    # One client instance across rounds: fit failures are injected once per round.
    started = time.monotonic()
    try:
        chosen = (
            {"client_fn": stateful_client_fn(args.index)}
            if args.stateful
            else {"client": client.to_client()}
        )
        flwr_sdk.start_client(
            server_address=args.address,
            **chosen,
            transport=args.transport,
            root_certificates=root,
            insecure=None if args.insecure is None else args.insecure == "true",
            max_retries=args.max_retries,
            max_wait_time=args.max_wait_time,
            grpc_max_message_length=args.max_message_length,
        )
    except Exception as exc:
        print(
            f"RAISED {type(exc).__name__} after {time.monotonic() - started:.2f}s: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return 3
    print(f"RETURNED after {time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
