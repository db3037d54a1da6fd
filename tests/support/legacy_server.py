"""A real Flower legacy server (``flwr.server.start_server``) that records its results.

Runs INSIDE an isolated flwr virtualenv (never imported by the test interpreter).
FedAvg with fixed initial parameters; every round's fit/evaluate result and failure
counts and the aggregated parameters are written as JSON to ``--report``.

    python legacy_server.py --address 127.0.0.1:PORT --rounds 3 --report out.json \
        [--certificates CA CERT KEY] [--max-message-length N] [--round-timeout S]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import flwr as fl
import numpy as np
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

INITIAL = [np.zeros(3, dtype=np.float32), np.arange(4, dtype=np.float64).reshape(2, 2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--report", required=True)
    parser.add_argument("--certificates", nargs=3, default=None)
    parser.add_argument("--max-message-length", type=int, default=536_870_912)
    parser.add_argument("--round-timeout", type=float, default=None)
    args = parser.parse_args()

    report: dict = {"flwr": fl.__version__, "fit": {}, "evaluate": {}}

    class RecordingFedAvg(fl.server.strategy.FedAvg):
        def aggregate_fit(self, server_round, results, failures):
            params, metrics = super().aggregate_fit(server_round, results, failures)
            report["fit"][str(server_round)] = {
                "results": len(results),
                "failures": len(failures),
                "failure_types": [
                    type(f).__name__ if isinstance(f, BaseException) else "result" for f in failures
                ],
                "num_examples": sorted(r.num_examples for _, r in results),
                "client_metrics": sorted(
                    (json.dumps(dict(r.metrics), sort_keys=True) for _, r in results)
                ),
                "parameters": None
                if params is None
                else [a.tolist() for a in parameters_to_ndarrays(params)],
            }
            flush()
            return params, metrics

        def aggregate_evaluate(self, server_round, results, failures):
            loss, metrics = super().aggregate_evaluate(server_round, results, failures)
            report["evaluate"][str(server_round)] = {
                "results": len(results),
                "failures": len(failures),
                "loss": loss,
            }
            flush()
            return loss, metrics

    def flush() -> None:
        Path(args.report).write_text(json.dumps(report, indent=1))

    strategy = RecordingFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=args.clients,
        min_evaluate_clients=args.clients,
        min_available_clients=args.clients,
        initial_parameters=ndarrays_to_parameters(INITIAL),
        on_fit_config_fn=lambda rnd: {"round": rnd, "lr": 0.5, "tag": "fit"},
        on_evaluate_config_fn=lambda rnd: {"round": rnd},
    )
    certificates = None
    if args.certificates:
        certificates = tuple(Path(p).read_bytes() for p in args.certificates)
    history = fl.server.start_server(
        server_address=args.address,
        config=fl.server.ServerConfig(num_rounds=args.rounds, round_timeout=args.round_timeout),
        strategy=strategy,
        grpc_max_message_length=args.max_message_length,
        certificates=certificates,
    )
    report["losses_distributed"] = [list(x) for x in history.losses_distributed]
    report["done"] = True
    flush()
    print("legacy server finished", flush=True)


if __name__ == "__main__":
    sys.exit(main())
