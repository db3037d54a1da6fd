"""Nodes per process: what N client nodes cost in one ``flwr_sdk.swarm`` process.

``python -m bench.swarm`` (also a table of ``python -m bench``) measures, for N = 100,
1,000 and 10,000 grpc-rere nodes of one swarm against the reference server (a process
of its own, Flower 1.12 wire):

* **idle**: the server waits for N + 1 nodes, so no round starts; once all N nodes are
  registered (or :data:`REGISTER_CAP` s passed) and :data:`SETTLE` s more, the swarm
  process's CPU time over :func:`idle_window` s (at least two poll intervals and one
  heartbeat period, so that every node's calls are in it as often as in the long run)
  gives "CPU per second idle" (share of one core);
* **active**: the server waits for N nodes and runs one FedAvg round (fit + evaluate)
  on all of them with the app of ``tests/swarm/swarm_app.py``; "round time" is the
  server's round;
* **cadence** (:data:`ROWS`): the line's (Flower's 3-s poll, 30-s heartbeat) or the
  swarm's idle cadence (:data:`SWARM_CADENCE`: a 60-s poll and a 120-s heartbeat
  interval, the one that kept 10,000 nodes online on a flwr 1.12.0 SuperLink; the
  swarm's wake-up makes every idle node poll within a second of the first instruction
  any node receives, so rounds do not wait for the slow poll);
* **peak RSS**: ``VmHWM`` of the swarm process at its end;
* beside it, Flower's one-process-per-node cost: the RSS (``VmHWM``) of one flwr 1.12.0
  ``start_client`` (grpc-rere) process, registered and idle, times N.

The swarm runs in a child process (``python -m bench.swarm child …``) so that its RSS
is the swarm's own. Writes ``bench/swarm.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for entry in (str(REPO), str(REPO / "tests")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from bench.rounds import flower_env, free_ports, vm_hwm, wait_for_port  # noqa: E402

SIZES = (100, 1000, 10_000)
SETTLE = 5.0
"""Seconds after the last registration before the idle window starts."""
IDLE_WINDOW = 30.0
"""Seconds of idle CPU measured at least."""
REGISTER_CAP = 300.0
"""Seconds the idle measurement waits for every node to register before it starts anyway."""
LINE_CADENCE: tuple[float | None, float | None] = (None, None)
"""(poll, heartbeat interval) of the line: Flower's 3-s poll and 30-s heartbeat."""
SWARM_CADENCE: tuple[float | None, float | None] = (60.0, 120.0)
"""(poll, heartbeat interval) of an idle swarm that wakes on work: 10,000 nodes then make
~170 polls and ~110 heartbeats a second instead of 3,333 and ~500."""
QUIET_CADENCE: tuple[float | None, float | None] = (120.0, 300.0)
"""A quieter idle swarm (120-s poll, 300-s heartbeat): ~83 polls and ~42 heartbeats a
second for 10,000 nodes; a node the server loses is noticed after 300 s."""
BOTH = ("idle", "active")
ROWS: dict[int, tuple[tuple[tuple[float | None, float | None], tuple[str, ...]], ...]] = {
    100: ((LINE_CADENCE, BOTH),),
    1000: ((LINE_CADENCE, BOTH), (SWARM_CADENCE, BOTH)),
    10_000: ((SWARM_CADENCE, BOTH), (QUIET_CADENCE, ("idle",))),
}
"""(cadence, modes) measured by N; a size not listed: the line's, idle and active. At
the line's cadence 10,000 nodes ask the reference server (one Python process) for 3,333
pulls a second, more than it serves."""
START_RATE = 500.0
MiB = 2**20

FLOWER_CLIENT = """
import sys
import numpy as np
from flwr.client import NumPyClient, start_client

class C(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(2, dtype=np.float32)]

start_client(server_address=sys.argv[1], client=C().to_client(), transport="grpc-rere")
"""


def idle_window(poll: float | None, heartbeat: float | None) -> float:
    """Seconds of the idle measurement: two polls and one heartbeat period at least.

    A node pings every ``(h - 5) * U(0.7, 0.9)`` s (at most ``0.9 * h``) and polls every
    ``poll * U(0.9, 1.1)`` s; a shorter window would miss calls the long run makes.
    """
    return max(IDLE_WINDOW, 2.2 * (poll or 3.0), 0.9 * (heartbeat or 30.0))


def _server(nodes: int, rounds: int, port: int, report: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "flwr_sdk", "server", "--transport", "grpc-rere"]
    args += ["--port", str(port), "--min-clients", str(nodes), "--rounds", str(rounds)]
    args += ["--report", str(report)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _child(args: argparse.Namespace) -> None:
    """Run the swarm in this process and write what it measured to ``args.out``."""
    from swarm.swarm_app import client_fn

    from flwr_sdk.swarm import NodeState, Swarm, SwarmConfig

    config = SwarmConfig(
        server_address=args.address,
        nodes=args.nodes,
        app=client_fn,
        start_rate=START_RATE,
        poll_interval=args.poll,
        heartbeat_interval=args.heartbeat,
        idle_exit=None if args.mode == "idle" else 20.0,
    )
    out: dict[str, Any] = {}

    async def main() -> None:
        swarm = Swarm(config)
        started = time.monotonic()
        task = asyncio.create_task(swarm.run())

        def registered() -> int:
            return swarm.stats.count(NodeState.REGISTERED) + swarm.stats.count(NodeState.WORKING)

        while registered() < args.nodes and not task.done():
            if time.monotonic() - started > REGISTER_CAP:
                break
            await asyncio.sleep(0.2)
        out["registered_after"] = time.monotonic() - started
        out["registered"] = registered()
        if out["registered"] < args.nodes and args.mode == "active":
            swarm.stop()  # the server waits for all N: no round would start
        if args.mode == "idle":
            await asyncio.sleep(SETTLE)
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.sleep(idle_window(args.poll, args.heartbeat))
            out["idle_cpu"] = (time.process_time() - cpu) / (time.monotonic() - wall)
            out["still_registered"] = swarm.stats.count(NodeState.REGISTERED)
            swarm.stop()
        result = await task
        out["failed_nodes"] = len(result.failed_nodes)
        out["replies"] = result.totals.replies

    asyncio.run(main())
    out["peak_rss"] = vm_hwm(os.getpid())
    Path(args.out).write_text(json.dumps(out))


def measure(
    nodes: int, mode: str, cadence: tuple[float | None, float | None], workdir: Path
) -> dict[str, Any]:
    """One swarm of ``nodes`` nodes, idle or active; what the child and the server saw."""
    (port,) = free_ports(1)
    poll, heartbeat = cadence
    tag = f"{mode}-{nodes}-{poll or 'line'}-{heartbeat or 'line'}"
    report = workdir / f"server-{tag}.json"
    server = _server(
        nodes + 1 if mode == "idle" else nodes, 1, port, report, workdir / f"server-{tag}.log"
    )
    out = workdir / f"swarm-{tag}.json"
    args = [sys.executable, "-m", "bench.swarm", "child", "--nodes", str(nodes)]
    args += ["--mode", mode, "--address", f"127.0.0.1:{port}", "--out", str(out)]
    if poll is not None:
        args += ["--poll", str(poll)]
    if heartbeat is not None:
        args += ["--heartbeat", str(heartbeat)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    try:
        subprocess.run(
            args,
            cwd=REPO,
            env=env,
            check=True,
            timeout=900,
            stdout=(workdir / f"swarm-{tag}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    finally:
        _stop(server)
    data: dict[str, Any] = json.loads(out.read_text())
    data.update(nodes=nodes, mode=mode, poll=poll or 3.0, heartbeat=heartbeat or 30.0)
    if mode == "active" and report.exists():
        history = json.loads(report.read_text())
        first = history["rounds"].get("1", {})
        data["round_seconds"] = first.get("seconds")
        data["round_ok"] = first.get("fit_results") == nodes
    return data


def flower_client_rss(workdir: Path) -> int:
    """``VmHWM`` of one flwr 1.12.0 ``start_client`` process, registered and idle."""
    env = flower_env("1.12.0")
    (port,) = free_ports(1)
    server = _server(2, 1, port, workdir / "server-flwr.json", workdir / "server-flwr.log")
    script = workdir / "flwr_client.py"
    script.write_text(FLOWER_CLIENT)
    client = env.popen(
        ["python", str(script), f"127.0.0.1:{port}"],
        stdout=(workdir / "flwr-client.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(8.0)
        return vm_hwm(client.pid)
    finally:
        _stop(client)
        _stop(server)


def table(rows: list[dict[str, Any]], flower_rss: int) -> list[str]:
    """The "nodes per process" table (Markdown lines)."""
    lines = [
        "| nodes | state | poll / heartbeat | peak RSS | per node | CPU idle (share of a core) "
        "| round time | Flower: 1 process per node (RSS x N) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rss = row["peak_rss"]
        cpu = f"{row['idle_cpu'] * 100:.1f} %" if "idle_cpu" in row else "-"
        rnd = f"{row['round_seconds']:.1f} s" if row.get("round_seconds") else "-"
        if row.get("registered", row["nodes"]) < row["nodes"]:
            cpu += f" ({row['registered']:,} registered)"
        lines.append(
            f"| {row['nodes']:,} | {row['mode']} "
            f"| {row['poll']:g} s / {row.get('heartbeat', 30):g} s | {rss / MiB:.0f} MiB "
            f"| {rss / row['nodes'] / 1024:.0f} KiB | {cpu} | {rnd} "
            f"| {flower_rss * row['nodes'] / 2**30:.1f} GiB |"
        )
    lines.append("")
    lines.append(
        f"One flwr 1.12.0 `start_client` process (grpc-rere, idle): {flower_rss / MiB:.0f} MiB."
    )
    return lines


def run(workdir: Path, sizes: tuple[int, ...] = SIZES) -> tuple[list[dict[str, Any]], int]:
    """Every measurement; rows and Flower's per-process RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for nodes in sizes:
        for cadence, modes in ROWS.get(nodes, ((LINE_CADENCE, BOTH),)):
            for mode in modes:
                rows.append(measure(nodes, mode, cadence, workdir))
                print(json.dumps(rows[-1]), flush=True)
    return rows, flower_client_rss(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.swarm")
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("child")
    child.add_argument("--nodes", type=int, required=True)
    child.add_argument("--mode", choices=("idle", "active"), required=True)
    child.add_argument("--address", required=True)
    child.add_argument("--poll", type=float, default=None)
    child.add_argument("--heartbeat", type=float, default=None)
    child.add_argument("--out", required=True)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/flwr-sdk-bench-swarm"))
    parser.add_argument("--out", type=Path, default=BENCH / "swarm.json")
    args = parser.parse_args()
    if args.command == "child":
        _child(args)
        return
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rows, flower_rss = run(args.workdir, sizes)
    args.out.write_text(json.dumps({"rows": rows, "flower_client_rss": flower_rss}, indent=1))
    print("\n".join(table(rows, flower_rss)))


if __name__ == "__main__":
    main()
