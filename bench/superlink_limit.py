"""How many swarm nodes a real flwr 1.12.0 SuperLink holds on this machine.

``python -m bench.superlink_limit`` starts, for each cadence and growing N, a flwr 1.12.0
SuperLink (in-memory state, grpc-rere Fleet API; ``tests/support/superlink.py``), the
probe ServerApp ``tests/swarm/apps/superlink_probe`` (Driver API) and a swarm of N of our
nodes (:class:`flwr_sdk.swarm.Swarm`, in a child process of its own) that starts them at
:data:`START_RATE` per second. The probe counts the nodes the SuperLink considers online
(``Driver.get_node_ids()``) every second, waits a settle period more, then runs one
FedAvg round (train + evaluate) over all of them.

**Holds** (per N and cadence): all N nodes are online (``get_node_ids()``) within
:data:`REGISTER_CAP` s of the first node starting; every sample of the settle period
(:data:`SETTLE` s, at least the nodes' ping interval + 10 s) still counts N; one round
over the N nodes returns N train and N evaluate results within :data:`ROUND_CAP` s per
phase; afterwards N are still online; and the swarm saw no failed node, no failed
instruction and no re-registration. A cadence's sweep stops at the first N that does not
hold.

Cadences (:data:`CADENCES`): ``flower`` (Flower's own: a 3-s poll, a 30-s ping),
``slow`` (a 30-s poll, ``SwarmConfig.poll_interval``; the same 30-s ping) and
``slow-ping`` (a 30-s poll and a 120-s ping, ``SwarmConfig.heartbeat_interval``).

Per run it records the CPU time (user + system, from ``/proc``) per phase of the
SuperLink, the probe ServerApp and the swarm, peak RSS, the Fleet calls per second the
SuperLink logged (1.12 logs each PullTaskIns / PushTaskRes / CreateNode at INFO; not
Ping), how late the swarm's event loop ran, the load average (this box's 2 cores are
shared), the swarm's retries and failures, and the commit the swarm ran from. Writes
``bench/superlink_limit.json`` (every run so far, rewritten after each) and prints a
Markdown table.

Options: ``--sizes 1000,2000,5000,10000,20000``, ``--cadences flower,slow,slow-ping``,
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
CADENCES: dict[str, tuple[float | None, float | None]] = {
    "flower": (None, None),
    "slow": (30.0, None),
    "slow-ping": (30.0, 120.0),
}
"""(poll, heartbeat) interval of the swarm per cadence (None: the line's, Flower's 3 s
poll and 30-s ping)."""
START_RATE = 500.0
REGISTER_CAP = 240.0
"""Seconds from the probe's start for all N nodes to be online."""
SETTLE = 40.0
"""Seconds the count must stay at N after registration (at least the ping interval + 10 s,
:func:`_settle`: a node whose pings no longer land drops out of the count within it)."""
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
        heartbeat_interval=args.heartbeat,
        idle_exit=None,
    )
    stop = Path(args.stop)
    out: dict[str, Any] = {"timeline": []}

    async def main() -> None:
        swarm = Swarm(config)
        out["started"] = time.time()
        task = asyncio.create_task(swarm.run())
        lags: list[float] = []
        while not stop.exists() and not task.done():
            tick = time.monotonic()
            snap = swarm.stats.snapshot()
            online = snap.states.get("registered", 0) + snap.states.get("working", 0)
            out["timeline"].append(
                [round(time.time() - out["started"], 2), online, snap.retries, snap.failed]
            )
            if online >= args.nodes and "all_registered" not in out:
                out["all_registered"] = time.time() - out["started"]
            await asyncio.sleep(SAMPLE)
            lags.append(time.monotonic() - tick - SAMPLE)
        # How late the swarm's event loop woke this sampler: seconds behind = the swarm
        # (or the box) could not keep up with its nodes.
        out["loop_lag"] = {"mean": sum(lags) / max(len(lags), 1), "max": max(lags, default=0.0)}
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


class LogCounter:
    """Counts the SuperLink's Fleet calls in its log (1.12 logs each at INFO) as it grows."""

    CALLS = ("[Fleet.PullTaskIns]", "[Fleet.PushTaskRes]", "[Fleet.CreateNode] Created")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.counts = dict.fromkeys(self.CALLS, 0)

    def update(self) -> list[int]:
        """Read what the log gained; the running counts, in :data:`CALLS` order."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = self.rest + handle.read()
        self.offset += len(data) - len(self.rest)
        complete, _, self.rest = data.rpartition(b"\n")
        for call in self.CALLS:
            self.counts[call] += complete.count(call.encode())
        return [self.counts[call] for call in self.CALLS]


def _git_state() -> dict[str, Any]:
    """The commit the swarm ran from, and whether flwr_sdk/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "flwr_sdk")),
    }


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


def _settle(heartbeat: float | None) -> float:
    """The settle period for nodes that ping every ``heartbeat`` s (None: 30 s)."""
    return max(SETTLE, (heartbeat or 30.0) + 10.0)


def _phases(marks: dict[str, float], start: float | None = None) -> dict[str, tuple[Any, Any]]:
    """Wall-clock (begin, end) of the probe's phases (None where it never got there)."""
    return {
        "register": (marks.get("start", start), marks.get("registered")),
        "settle": (marks.get("registered"), marks.get("settled")),
        "round": (marks.get("settled"), marks.get("round_done")),
    }


def _phase_cpu(
    series: list[list[float]], marks: dict[str, float], start: float | None = None
) -> dict[str, Any]:
    """Per phase: CPU seconds of the sampled process and the phase's wall seconds."""
    spent: dict[str, Any] = {}
    for name, (begin, end) in _phases(marks, start).items():
        if begin is None or end is None:
            continue
        cpu = _cpu_between(series, begin, end)
        spent[name] = None if cpu is None else {"cpu": cpu, "seconds": end - begin}
    return spent


def _phase_rates(series: list[list[float]], marks: dict[str, float]) -> dict[str, Any]:
    """Per phase: Fleet calls per second the SuperLink logged (pull, push, create)."""
    rates: dict[str, Any] = {}
    for name, (begin, end) in _phases(marks).items():
        inside = [
            row
            for row in series
            if begin is not None and end is not None and begin <= row[0] <= end
        ]
        if len(inside) < 2:
            continue
        seconds = inside[-1][0] - inside[0][0]
        rates[name] = {
            call: (inside[-1][i] - inside[0][i]) / seconds
            for i, call in enumerate(("pull", "push", "create"), start=1)
        }
    return rates


def measure(nodes: int, cadence: str, workdir: Path) -> dict[str, Any]:
    """One SuperLink, the probe and a swarm of ``nodes`` nodes at ``cadence``."""
    from support.federation import Process
    from support.superlink import start_superlink

    env = flower_env("1.12.0")
    poll, heartbeat = CADENCES[cadence]
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
            "PROBE_SETTLE": str(_settle(heartbeat)),
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
    args = [sys.executable, "-m", "bench.superlink_limit", "child", "--nodes", str(nodes)]
    args += ["--address", superlink.fleet_address, "--out", str(child_out), "--stop", str(stop)]
    if poll is not None:
        args += ["--poll", str(poll)]
    if heartbeat is not None:
        args += ["--heartbeat", str(heartbeat)]
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    swarm = Process(
        args, run_dir / "swarm.log", lambda a, **kw: subprocess.Popen(a, env=child_env, **kw)
    )
    link_series: list[list[float]] = []
    swarm_series: list[list[float]] = []
    probe_series: list[list[float]] = []
    calls = LogCounter(superlink.process.log)
    call_series: list[list[float]] = []
    deadline = time.monotonic() + REGISTER_CAP + _settle(heartbeat) + 2 * ROUND_CAP + 120
    try:
        while time.monotonic() < deadline:
            now = time.time()
            link_series.append([now, *_proc_cpu(superlink.process.proc.pid)])
            if swarm.proc.poll() is None:
                swarm_series.append([now, *_proc_cpu(swarm.proc.pid)])
            if probe.proc.poll() is None:
                probe_series.append([now, *_proc_cpu(probe.proc.pid)])
            call_series.append([now, *calls.update()])
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
    row = summarize(
        nodes,
        cadence,
        (poll, heartbeat),
        probe_data,
        child,
        link_series,
        swarm_series,
        link_peak,
        load,
        log,
    )
    marks = probe_data.get("marks", {})
    row["probe_cpu"] = _phase_cpu(probe_series, marks)
    row["fleet_calls_per_second"] = _phase_rates(call_series, marks)
    return row


def summarize(
    nodes: int,
    cadence: str,
    cadence_seconds: tuple[float | None, float | None],
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
    link_cpu = _phase_cpu(link_series, marks, start)
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
        "poll_seconds": cadence_seconds[0] or 3.0,
        "ping_seconds": cadence_seconds[1] or 30.0,
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
        "superlink_replies": superlink_log.count("[Fleet.PushTaskRes]"),
        "superlink_deleted": superlink_log.count("[Fleet.DeleteNode]"),
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
        "swarm_loop_lag": child.get("loop_lag"),
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
        "| polls/s served (settle; N / poll) | SuperLink peak RSS | swarm CPU / wall "
        "| retries | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rnd = row["round"]
        pulls = row.get("fleet_calls_per_second", {}).get("settle", {}).get("pull")
        share = [_share(row["superlink_cpu"].get(name)) for name in ("register", "settle", "round")]

        failed = [name for name, ok in row["checks"].items() if not ok]
        ping = row.get("ping_seconds", 30.0)
        lines.append(
            f"| {row['cadence']} ({row['poll_seconds']:.0f} s / {ping:.0f} s) "
            f"| {row['nodes']:,} "
            f"| {'yes' if row['holds'] else 'no: ' + ', '.join(failed)} "
            f"| {_fmt(row['register_seconds'], ' s')} "
            f"| {_fmt(row['settle_min'])} "
            f"| {_fmt(rnd.get('seconds'), ' s')} "
            f"| {_fmt(rnd.get('fit_results'))} / {_fmt(rnd.get('evaluate_results'))} "
            f"| {' / '.join(share)} "
            f"| {_fmt(pulls)} ({row['nodes'] / row['poll_seconds']:,.0f}) "
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
    child.add_argument("--heartbeat", type=float, default=None)
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
            row.update(_git_state())
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
