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
        flwr_sdk.start_client(
            server_address=args.address,
            client=client.to_client(),
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
