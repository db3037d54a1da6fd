"""`python -m bench` end to end at tiny payloads: the harness works against real servers.

Speed is not asserted here (that is what ``bench/RESULTS.md`` is for); what is asserted is
that one run measures every client on every transport against the real Flower servers
(1.12.0 legacy server and SuperLink, 1.15.2 SuperLink; on 1.42.0 our node and Flower's own
``flower-supernode`` on one SuperLink), that the stamps are consistent, that the
nodes-per-process table runs (100 nodes only: its 10,000-node default is for bench runs),
and that the report and plot are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_both_clients_on_every_transport(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--sizes",
            "1",
            "--reps",
            "1=2",
            "--arrays",
            "3",
            "--codec-repeat",
            "1",
            "--swarm-sizes",
            "100",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=700,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((out / "results.json").read_text())
    rounds = data["rounds"]
    # 2 reps x 2 clients x 4 transports (the warm-up rounds are not reported).
    pairs = [
        ("grpc-bidi", "flwr-1.12.0"),
        ("grpc-rere", "flwr-1.12.0"),
        ("grpc-rere-1.15", "flwr-1.15.2"),
        ("http-1.42", "flwr-1.42.0"),
    ]
    seen = sorted((m["transport"], m["client"]) for m in rounds)
    assert seen == sorted([(t, c) for t, flwr in pairs for c in ("flwr-sdk", flwr)] * 2)
    for m in rounds:
        assert m["ok"], m
        assert m["nbytes"] == 1 << 20
        # The client side of a round lies inside the round the server's application sees.
        assert 0 < m["seconds"] <= m["server_seconds"] < 60, m
        # The client process ran and imported numpy at least.
        assert m["peak_rss"] > 20 << 20, m
    assert {r["codec"] for r in data["codec"]} == {"fast", "protobuf"}
    report = (out / "RESULTS.md").read_text()
    assert "## Targets" in report
    for heading in ("### grpc-bidi\n", "### grpc-rere\n", "### grpc-rere 1.15\n"):
        assert heading in report
    assert "### Fleet HTTP 1.42 (flwr-sdk node vs flower-supernode)\n" in report
    assert "- **Fleet HTTP 1.42**: flwr-sdk's node vs Flower's own" in report
    assert "| grpc-rere 1.15, 1 MiB: round time ≤ 0.5x flwr 1.15.2 |" in report
    assert "| grpc-rere 1.15, 1 MiB: flwr-sdk peak RSS ≤ 2.0x payload |" in report
    assert "flwr 1.15.2, grpcio" in report  # the Flower side of the machine section
    assert "flwr 1.42.0, grpcio" in report
    assert (out / "round_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The nodes-per-process table ran at its smallest size (idle and active swarms).
    assert "## Nodes per process" in report
