"""Run one flwr-sdk client node with options chosen by a test (our interpreter).

    python tests/support/sdk_client.py --address 127.0.0.1:PORT --index 0 [options]

The client is the deterministic ShiftClient of ``examples/numpy_client.py``; options
select transport, TLS material (as bytes or as a path), retries, the wire line (default:
detected), and faults to inject.
Exit code 0 when ``start_client`` returns, 3 when it raises (the exception's type is
printed as ``RAISED <TypeName>: <message>`` on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import flwr_sdk  # noqa: E402
from examples.numpy_client import ShiftClient  # noqa: E402


class FaultyShiftClient(ShiftClient):
    """ShiftClient that raises in ``fit`` on chosen rounds (once per round), and sleeps
    ``fit_delay`` seconds in every other ``fit``.

    With ``report_context`` its fit metrics also carry what the SDK's Context says:
    ``node_id`` (str), ``run_config`` (JSON) and ``fits_in_state``, a counter kept in
    ``context.state`` (shows that state persists across messages of a run).
    """

    def __init__(
        self,
        index: int,
        fail_rounds: set[int],
        report_context: bool = False,
        fit_delay: float = 0.0,
    ) -> None:
        super().__init__(index)
        self.fail_rounds = set(fail_rounds)
        self.report_context = report_context
        self.fit_delay = fit_delay

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        round_ = int(config.get("round", -1))
        if round_ in self.fail_rounds:
            self.fail_rounds.discard(round_)
            raise RuntimeError(f"injected failure in round {round_}")
        if self.fit_delay:
            print(f"FIT round {round_}: sleeping {self.fit_delay} s", file=sys.stderr, flush=True)
            time.sleep(self.fit_delay)
        shifted, num_examples, metrics = super().fit(parameters, config)
        # "seen" is a prefix of "seen_round": node auth must serialize such map keys in
        # protobuf's deterministic (upb) order, or the SuperLink rejects the HMAC.
        metrics["seen"] = round_
        if self.report_context:
            context = self.context
            records = context.state.configs_records
            counter = records.get("sdk-test", flwr_sdk.ConfigsRecord({"fits": 0}))
            counter["fits"] = int(counter["fits"]) + 1
            records["sdk-test"] = counter
            metrics = {
                **metrics,
                "node_id": str(context.node_id),
                "run_config": json.dumps(dict(context.run_config), sort_keys=True),
                "fits_in_state": int(counter["fits"]),
            }
        return shifted, num_examples, metrics


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
    parser.add_argument("--fit-delay", type=float, default=0.0, help="seconds fit sleeps")
    parser.add_argument("--stateful", action="store_true", help="use a client_fn with state")
    parser.add_argument("--report-context", action="store_true")
    parser.add_argument("--auth-private-key", default=None, help="OpenSSH EC private key file")
    parser.add_argument("--auth-public-key", default=None, help="OpenSSH EC public key file")
    parser.add_argument("--wire", default=None, help="Flower wire line (default: detect it)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    root: bytes | str | None = None
    if args.root_cert_path:
        root = args.root_cert_path
    elif args.root_cert_bytes:
        root = Path(args.root_cert_bytes).read_bytes()
    keys = None
    if args.auth_private_key:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_ssh_private_key(Path(args.auth_private_key).read_bytes(), None)
        public = serialization.load_ssh_public_key(Path(args.auth_public_key).read_bytes())
        keys = (private, public)
    client = FaultyShiftClient(
        args.index, set(args.fail_fit_round), args.report_context, args.fit_delay
    )
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
            authentication_keys=keys,  # type: ignore[arg-type]
            wire=args.wire,
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
