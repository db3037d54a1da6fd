"""A real Flower legacy server (``flwr.server.start_server``, grpc-bidi) for the round bench.

Runs INSIDE the isolated flwr 1.12.0 virtualenv. One round per measurement; before round
``r`` it waits for ``<control>/go-<r>.json`` (written by ``python -m bench``) naming the
payload size, then sends FitIns with that payload to the one connected client it has not
used yet. It stamps ``time.perf_counter()`` when ``configure_fit`` hands the FitIns over
(the server then serializes and sends it) and when ``aggregate_fit`` gets the FitRes
(received and parsed), and writes both to ``<control>/done-<r>.json``.

    python flwr_legacy_server.py --address 127.0.0.1:PORT --rounds N --control DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flwr as fl
import numpy as np
from flwr.common import FitIns, Parameters, ndarrays_to_parameters


def payload(nbytes: int, arrays: int) -> list[np.ndarray]:
    per = nbytes // arrays // 4
    return [np.full(per, i, dtype=np.float32) for i in range(arrays)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args()
    control = Path(args.control)
    cache: dict[tuple[int, int], Parameters] = {}
    used: set[str] = set()
    stamps: dict[int, float] = {}

    class BenchStrategy(fl.server.strategy.Strategy):
        def initialize_parameters(self, client_manager):  # type: ignore[no-untyped-def]
            return ndarrays_to_parameters([np.zeros(1, dtype=np.float32)])

        def configure_fit(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
            go = control / f"go-{server_round}.json"
            while not go.exists():
                time.sleep(0.01)
            plan = json.loads(go.read_text())
            key = (plan["nbytes"], plan["arrays"])
            if key not in cache:
                cache.clear()
                cache[key] = ndarrays_to_parameters(payload(*key))
            while True:
                fresh = [c for cid, c in client_manager.all().items() if cid not in used]
                if fresh:
                    break
                time.sleep(0.01)
            client = fresh[0]
            used.add(client.cid)
            stamps[server_round] = time.perf_counter()
            return [(client, FitIns(cache[key], {}))]

        def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            received = time.perf_counter()
            ok = len(results) == 1 and not failures
            if ok:
                arrays = fl.common.parameters_to_ndarrays(results[0][1].parameters)
                plan = json.loads((control / f"go-{server_round}.json").read_text())
                expected = sum(a.nbytes for a in payload(plan["nbytes"], plan["arrays"]))
                ok = sum(a.nbytes for a in arrays) == expected
            (control / f"done-{server_round}.json").write_text(
                json.dumps(
                    {
                        "round": server_round,
                        "seconds": received - stamps[server_round],
                        "sent_at": stamps[server_round],
                        "received_at": received,
                        "ok": ok,
                        "failures": [repr(f) for f in failures],
                    }
                )
            )
            return None, {}

        def configure_evaluate(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
            return []

        def aggregate_evaluate(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            return None, {}

        def evaluate(self, server_round, parameters):  # type: ignore[no-untyped-def]
            return None

    fl.server.start_server(
        server_address=args.address,
        config=fl.server.ServerConfig(num_rounds=args.rounds, round_timeout=600),
        strategy=BenchStrategy(),
    )


if __name__ == "__main__":
    main()
