"""How many swarm nodes a real flwr 1.12.0 SuperLink holds on this machine.

``python -m bench.superlink_limit`` starts, for each cadence and growing N, a flwr 1.12.0
SuperLink (in-memory state, grpc-rere Fleet API; ``tests/support/superlink.py``), the
probe ServerApp ``tests/swarm/apps/superlink_probe`` (Driver API) and a swarm of N of our
nodes (:class:`flwr_sdk.swarm.Swarm`, in a child process of its own) that starts them at
:data:`START_RATE` per second. The probe counts the nodes the SuperLink considers online
(``Driver.get_node_ids()``) every second, waits :data:`SETTLE` s more, then runs one
FedAvg round (train + evaluate) over all of them.

**Holds** (per N and cadence): all N nodes are online (``get_node_ids()``) within
:data:`REGISTER_CAP` s of the first node starting; every sample of the settle period
(:data:`SETTLE` s, more than the nodes' 30-s ping interval) still counts N; one round
over the N nodes returns N train and N evaluate results within :data:`ROUND_CAP` s per
phase; afterwards N are still online; and the swarm saw no failed node, no failed
instruction and no re-registration. A cadence's sweep stops at the first N that does not
hold.

Cadences: ``flower`` (Flower's own: a 3-s poll, a 30-s ping) and ``slow`` (a 30-s poll,
``SwarmConfig.poll_interval``; the same 30-s ping).

Per run it records the SuperLink's and the swarm's CPU time (user + system, from
``/proc``) per phase and peak RSS, the load average (this box's 2 cores are shared), the
swarm's retries and failures. Writes ``bench/superlink_limit.json`` (every run so far,
rewritten after each) and prints a Markdown table.

Options: ``--sizes 1000,2000,5000,10000,20000``, ``--cadences flower,slow``,
``--workdir DIR`` (logs; default a new temp dir), ``--out FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for entry in (str(REPO), str(REPO / "tests")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from bench.rounds import flower_env, vm_hwm  # noqa: E402

APPS = REPO / "tests" / "swarm" / "apps"
PROBE_APP = APPS / "superlink_probe"
SIZES = (1000, 2000, 5000, 10_000, 20_000)
CADENCES: dict[str, float | None] = {"flower": None, "slow": 30.0}
"""Poll interval of the swarm per cadence (None: the line's, Flower's 3 s)."""
START_RATE = 500.0
REGISTER_CAP = 240.0
"""Seconds from the probe's start for all N nodes to be online."""
SETTLE = 40.0
"""Seconds the count must stay at N after registration (ping interval: 30 s)."""
ROUND_CAP = 240.0
"""Seconds per phase (train, evaluate) of the round."""
LEAVE_CAP = 120.0
"""Seconds the swarm gets to leave (DeleteNode per node) once told to stop."""
SAMPLE = 1.0
MiB = 2**20
TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------- the swarm (child)


def client_fn(context: Any) -> Any:
    """A node that trains on nothing: ``num_examples = partition-id + 1``, no data held."""
    from flwr_sdk import NumPyClient

    partition = int(context.node_config["partition-id"])

    class Probe(NumPyClient):
        def get_parameters(self, config: dict[str, object]) -> list[Any]:
            import numpy as np

            return [np.zeros(2, dtype=np.float32)]

        def fit(self, parameters: list[Any], config: dict[str, object]) -> Any:
            return parameters, partition + 1, {}

        def evaluate(self, parameters: list[Any], config: dict[str, object]) -> Any:
            return 0.0, partition + 1, {}

    return Probe().to_client()


def _child(args: argparse.Namespace) -> None:
    """Run the swarm here until ``args.stop`` exists; write its timeline to ``args.out``."""
    from flwr_sdk.swarm import NodeState, Swarm, SwarmConfig

    config = SwarmConfig(
        server_address=args.address,
        nodes=args.nodes,
        app=client_fn,
        start_rate=START_RATE,
        poll_interval=args.poll,
        idle_exit=None,
    )
    stop = Path(args.stop)
    out: dict[str, Any] = {"timeline": []}

    async def main() -> None:
        swarm = Swarm(config)
        out["started"] = time.time()
        task = asyncio.create_task(swarm.run())
        while not stop.exists() and not task.done():
            snap = swarm.stats.snapshot()
            online = snap.states.get("registered", 0) + snap.states.get("working", 0)
            out["timeline"].append(
                [round(time.time() - out["started"], 2), online, snap.retries, snap.failed]
            )
            if online >= args.nodes and "all_registered" not in out:
                out["all_registered"] = time.time() - out["started"]
            await asyncio.sleep(SAMPLE)
        out["stopping"] = time.time()
        out["registered_at_stop"] = swarm.stats.count(NodeState.REGISTERED)
        swarm.stop()
        result = await task
        out["left_seconds"] = time.time() - out["stopping"]
        summary = result.to_dict()
        out["totals"] = summary["totals"]
        out["failed_nodes"] = summary["failed_nodes"]
        out["errors"] = sorted({n["error"] for n in summary["per_node"] if n["error"]})[:5]
        out["registrations"] = sum(n["registrations"] for n in summary["per_node"])
        out["handled"] = summary["handled"]

    asyncio.run(main())
    out["cpu_seconds"] = time.process_time()
    out["peak_rss"] = vm_hwm(os.getpid())
    Path(args.out).write_text(json.dumps(out))


# ------------------------------------------------------------------ one run (parent)


def _proc_cpu(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, RSS bytes) of ``pid`` now."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _cpu_between(series: list[list[float]], start: float, end: float) -> float | None:
    """CPU seconds a process spent between wall times ``start`` and ``end`` (samples)."""
    inside = [cpu for t, cpu, _ in series if start <= t <= end]
    before = [cpu for t, cpu, _ in series if t <= start]
    if not inside:
        return None
    return inside[-1] - (before[-1] if before else 0.0)


def measure(nodes: int, cadence: str, workdir: Path) -> dict[str, Any]:
    """One SuperLink, the probe and a swarm of ``nodes`` nodes at ``cadence``."""
    from support.federation import Process
    from support.superlink import start_superlink

    env = flower_env("1.12.0")
    tag = f"{cadence}-{nodes}"
    run_dir = workdir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    report, child_out, stop = run_dir / "probe.json", run_dir / "swarm.json", run_dir / "stop"
    load = [_loadavg()]
    superlink = start_superlink(env, run_dir / "superlink")
    probe_env = env.environ(
        {
            "PROBE_NODES": str(nodes),
            "PROBE_REPORT": str(report),
            "PROBE_REGISTER_CAP": str(REGISTER_CAP),
            "PROBE_SETTLE": str(SETTLE),
            "SWARM_PHASE_TIMEOUT": str(ROUND_CAP),
            "PYTHONPATH": str(APPS / "swarm_fedavg"),
            "FLWR_HOME": str(run_dir / "flwr_home"),
            "FLWR_TELEMETRY_ENABLED": "0",
        }
    )
    probe = Process(
        [
            "flower-server-app",
            str(PROBE_APP),
            "--superlink",
            superlink.driver_address,
            *superlink.security_args(),
        ],
        run_dir / "probe.log",
        lambda a, **kw: env.popen(a, env=probe_env, **kw),
    )
    poll = CADENCES[cadence]
    args = [sys.executable, "-m", "bench.superlink_limit", "child", "--nodes", str(nodes)]
    args += ["--address", superlink.fleet_address, "--out", str(child_out), "--stop", str(stop)]
    if poll is not None:
        args += ["--poll", str(poll)]
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    swarm = Process(
        args, run_dir / "swarm.log", lambda a, **kw: subprocess.Popen(a, env=child_env, **kw)
    )
    link_series: list[list[float]] = []
    swarm_series: list[list[float]] = []
    deadline = time.monotonic() + REGISTER_CAP + SETTLE + 2 * ROUND_CAP + 120
    try:
        while time.monotonic() < deadline:
            now = time.time()
            link_series.append([now, *_proc_cpu(superlink.process.proc.pid)])
            if swarm.proc.poll() is None:
                swarm_series.append([now, *_proc_cpu(swarm.proc.pid)])
            load.append(_loadavg())
            if _read_json(report).get("done") or probe.proc.poll() is not None:
                break
            if swarm.proc.poll() is not None:
                break
            time.sleep(SAMPLE)
        link_peak = vm_hwm(superlink.process.proc.pid)
        stop.touch()
        with contextlib.suppress(subprocess.TimeoutExpired):
            swarm.proc.wait(timeout=LEAVE_CAP)
    finally:
        swarm.stop()
        probe.stop()
        superlink.process.stop()
    probe_data = _read_json(report)
    child = _read_json(child_out)
    log = superlink.process.log.read_text(errors="replace")
    return summarize(
        nodes, cadence, poll, probe_data, child, link_series, swarm_series, link_peak, load, log
    )


def summarize(
    nodes: int,
    cadence: str,
    poll: float | None,
    probe: dict[str, Any],
    child: dict[str, Any],
    link_series: list[list[float]],
    swarm_series: list[list[float]],
    link_peak: int,
    load: list[float],
    superlink_log: str,
) -> dict[str, Any]:
    """One row: what the probe, the swarm and the samples say, and whether N held."""
    marks = probe.get("marks", {})
    rnd = probe.get("round", {})
    settle = probe.get("settle", {})
    start = marks.get("start", link_series[0][0] if link_series else 0.0)
    phases = {
        "register": (start, marks.get("registered")),
        "settle": (marks.get("registered"), marks.get("settled")),
        "round": (marks.get("settled"), marks.get("round_done")),
    }
    link_cpu: dict[str, Any] = {}
    for name, (begin, end) in phases.items():
        if begin is None or end is None:
            continue
        spent = _cpu_between(link_series, begin, end)
        link_cpu[name] = None if spent is None else {"cpu": spent, "seconds": end - begin}
    totals = child.get("totals", {})
    checks = {
        "all_online": probe.get("registered_seconds") is not None,
        "stayed_online": settle.get("min") == nodes,
        "round": rnd.get("fit_results") == nodes and rnd.get("evaluate_results") == nodes,
        "round_in_time": rnd.get("seconds", ROUND_CAP * 3) <= 2 * ROUND_CAP,
        "online_after_round": probe.get("after_round") == nodes,
        "no_failed_node": child.get("failed_nodes", 1) == 0,
        "no_failed_instruction": totals.get("failed_instructions", 1) == 0,
        "no_reregistration": child.get("registrations", 0) == nodes,
    }
    return {
        "nodes": nodes,
        "cadence": cadence,
        "poll_seconds": poll or 3.0,
        "holds": all(checks.values()),
        "checks": checks,
        "register_seconds": probe.get("registered_seconds"),
        "registered": probe.get("registered"),
        "settle_min": settle.get("min"),
        "round": rnd,
        "after_round": probe.get("after_round"),
        "probe_timeline": probe.get("timeline", [])[::5],
        "superlink_cpu": link_cpu,
        "superlink_peak_rss": link_peak,
        "superlink_log_errors": superlink_log.count("ERROR"),
        "superlink_created": superlink_log.count("[Fleet.CreateNode] Created node_id"),
        "swarm_all_registered": child.get("all_registered"),
        "swarm_retries": totals.get("retries"),
        "swarm_failed_nodes": child.get("failed_nodes"),
        "swarm_failed_instructions": totals.get("failed_instructions"),
        "swarm_registrations": child.get("registrations"),
        "swarm_errors": child.get("errors"),
        "swarm_left_seconds": child.get("left_seconds"),
        "swarm_cpu_seconds": child.get("cpu_seconds"),
        "swarm_wall_seconds": (swarm_series[-1][0] - swarm_series[0][0]) if swarm_series else None,
        "swarm_peak_rss": child.get("peak_rss"),
        "load_start": load[0],
        "load_max": max(load),
    }


# -------------------------------------------------------------------------- report


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def _share(phase: dict[str, float] | None) -> str:
    """A phase's CPU seconds and its share of one core."""
    if not phase or not phase["seconds"]:
        return "—"
    return f"{phase['cpu']:.0f} s ({phase['cpu'] / phase['seconds']:.0%})"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of ``rows``."""
    lines = [
        "| cadence (poll / ping) | N | holds | all online after | min online (settle) "
        "| round (train + evaluate) | results | SuperLink CPU: register / settle / round "
        "| SuperLink peak RSS | swarm CPU / wall | retries | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rnd = row["round"]
        share = [_share(row["superlink_cpu"].get(name)) for name in ("register", "settle", "round")]

        failed = [name for name, ok in row["checks"].items() if not ok]
        lines.append(
            f"| {row['cadence']} ({row['poll_seconds']:.0f} s / 30 s) | {row['nodes']:,} "
            f"| {'yes' if row['holds'] else 'no: ' + ', '.join(failed)} "
            f"| {_fmt(row['register_seconds'], ' s')} "
            f"| {_fmt(row['settle_min'])} "
            f"| {_fmt(rnd.get('seconds'), ' s')} "
            f"| {_fmt(rnd.get('fit_results'))} / {_fmt(rnd.get('evaluate_results'))} "
            f"| {' / '.join(share)} "
            f"| {row['superlink_peak_rss'] / MiB:,.0f} MiB "
            f"| {_fmt(row['swarm_cpu_seconds'], ' s')} / {_fmt(row['swarm_wall_seconds'], ' s')} "
            f"| {_fmt(row['swarm_retries'])} "
            f"| {row['load_start']:.1f}-{row['load_max']:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.superlink_limit")
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("child")
    child.add_argument("--nodes", type=int, required=True)
    child.add_argument("--address", required=True)
    child.add_argument("--out", required=True)
    child.add_argument("--stop", required=True)
    child.add_argument("--poll", type=float, default=None)
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--cadences", default=",".join(CADENCES))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=BENCH / "superlink_limit.json")
    args = parser.parse_args(argv)
    if args.command == "child":
        _child(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="superlink-limit-"))
    previous = _read_json(args.out).get("runs", []) if args.out.exists() else []
    rows: list[dict[str, Any]] = list(previous)
    for cadence in args.cadences.split(","):
        for nodes in (int(n) for n in args.sizes.split(",")):
            print(f"{cadence}: {nodes} nodes (load {_loadavg():.1f}) …", flush=True)
            row = measure(nodes, cadence, workdir)
            row["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            rows = [r for r in rows if (r["cadence"], r["nodes"]) != (cadence, nodes)] + [row]
            rows.sort(key=lambda r: (r["cadence"], r["nodes"]))
            args.out.write_text(json.dumps({"runs": rows}, indent=1) + "\n")
            print("\n".join(table([row])[2:]), flush=True)
            if not row["holds"]:
                break
    print("\n".join(table(rows)))
    print(f"(logs: {workdir})")


if __name__ == "__main__":
    main()
