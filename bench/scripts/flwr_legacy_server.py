"""A real Flower legacy server (``flwr.server.start_server``, grpc-bidi) for the round bench.

Runs INSIDE the isolated flwr 1.12.0 virtualenv. One round per measurement; before round
``r`` it waits for ``<control>/go-<r>.json`` (written by ``python -m bench``) naming the
payload size, then sends FitIns with that payload to the one connected client it has not
used yet. It writes ``<control>/done-<r>.json`` with two round times:

* ``seconds`` (client side, at the gRPC boundary, see ``grpc_stamps.py``): from the FitIns
  bytes being ready to send to the FitRes bytes completely received;
* ``server_seconds`` (as the strategy sees it): from ``configure_fit`` handing the FitIns
  over to ``aggregate_fit`` getting the FitRes; adds the server's own work (Flower's
  protobuf copies and serialization of the FitIns, parsing of the FitRes).

    python flwr_legacy_server.py --address 127.0.0.1:PORT --rounds N --control DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flwr as fl
import grpc_stamps
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
            nan = float("nan")
            sent = grpc_stamps.LAST.get("send", {"field": None, "t1": nan})
            got = grpc_stamps.LAST.get("recv", {"field": None, "t0": nan})
            ok = len(results) == 1 and not failures
            ok = ok and sent["field"] == "fit_ins" and got["field"] == "fit_res"
            ok = ok and stamps[server_round] < sent["t1"] < got["t0"] < received
            if ok:
                arrays = fl.common.parameters_to_ndarrays(results[0][1].parameters)
                plan = json.loads((control / f"go-{server_round}.json").read_text())
                expected = sum(a.nbytes for a in payload(plan["nbytes"], plan["arrays"]))
                ok = sum(a.nbytes for a in arrays) == expected
            (control / f"done-{server_round}.json").write_text(
                json.dumps(
                    {
                        "round": server_round,
                        "seconds": got["t0"] - sent["t1"],
                        "server_seconds": received - stamps[server_round],
                        "sent_at": stamps[server_round],
                        "received_at": received,
                        "instruction_bytes_ready_at": sent["t1"],
                        "reply_bytes_received_at": got["t0"],
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

    grpc_stamps.install()
    fl.server.start_server(
        server_address=args.address,
        config=fl.server.ServerConfig(num_rounds=args.rounds, round_timeout=600),
        strategy=BenchStrategy(),
    )


if __name__ == "__main__":
    main()
