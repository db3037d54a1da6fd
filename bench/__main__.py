"""``python -m bench``: round times and peak memory vs Flower 1.12.0 / 1.15.2 / 1.42.0, codecs.

One run (about 20 minutes on a 2-core box):

1. round benchmark (:mod:`bench.rounds`): a real Flower server per transport key, in the
   cached isolated venvs of the interop tests: ``grpc-bidi`` (flwr 1.12.0 legacy
   ``start_server``), ``grpc-rere`` (flwr 1.12.0 SuperLink + Driver-API ServerApp),
   ``grpc-rere-1.15`` (flwr 1.15.2 SuperLink + a ServerAppIo driver); per payload size, our
   client and that release's ``flwr.client.start_client`` alternate, one fresh process
   per round; ``http-1.42`` (:mod:`bench.rounds_142`): our node and Flower's own
   ``flower-supernode`` alternate on one flwr 1.42.0 SuperLink (Fleet over HTTP), the run
   started with ``flwr run``;
2. codec benchmark (:mod:`bench.codec`): serialize / parse MB/s of the generated fast
   codec and google protobuf;
3. writes ``bench/RESULTS.md`` (machine, method, targets, tables) and ``bench/round_time.png``.

Options: ``--sizes 1,64,512``, ``--reps 1=7,64=5,512=3``, ``--reps-1.15 1=3,64=3,512=2``
(the grpc-rere-1.15 and http-1.42 rows run the smaller of both per size, to keep the run
near 20 minutes), ``--arrays 10``, ``--transports grpc-bidi,grpc-rere,grpc-rere-1.15,http-1.42``,
``--out DIR`` (default ``bench/``), ``--workdir DIR`` (logs, control files, server stamps;
default a new temp dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench import codec, rounds, rounds_142, swarm  # noqa: E402
from bench.rounds import Measurement, MiB  # noqa: E402


def machine(transports: Sequence[str] = rounds.TRANSPORTS) -> list[str]:
    """Lines describing this machine and the software versions."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    import grpclib
    import h2
    import httpx
    import numpy

    def flower_side(release: str) -> str:
        env = rounds.flower_env(release)
        flwr, grpcio, protobuf, np = subprocess.run(
            [
                str(env.python),
                "-c",
                "import flwr, grpc, google.protobuf as p, numpy; "
                "print(flwr.__version__, grpc.__version__, p.__version__, numpy.__version__)",
            ],
            capture_output=True,
            text=True,
            env=env.environ(),
            check=True,
        ).stdout.split()
        return f"flwr {flwr}, grpcio {grpcio}, protobuf {protobuf}, numpy {np}"

    from importlib.metadata import version

    releases = sorted({rounds.FLOWER.get(t, rounds_142.RELEASE) for t in transports})
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`nproc`); RAM {mem_kib / 2**20:.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} (both clients and servers)",
        f"- flwr-sdk {version('flwr-sdk')}: grpclib {grpclib.__version__}, h2 {h2.__version__}, "
        f"httpx {httpx.__version__}, numpy {numpy.__version__}",
        *(f"- Flower side (isolated venv): {flower_side(release)}" for release in releases),
        f"- run finished {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _medians(rows: list[Measurement], mib: int, client: str) -> dict[str, float] | None:
    picked = [m for m in rows if m.mib == mib and m.client == client]
    if not picked:
        return None
    return {
        "n": len(picked),
        "nbytes": picked[0].nbytes,
        "seconds": _median([m.seconds for m in picked]),
        "server_seconds": _median([m.server_seconds for m in picked]),
        "rss": _median([m.peak_rss for m in picked]),
        "failed": sum(not m.ok for m in picked),
    }


def round_tables(results: list[Measurement], sizes: Sequence[int]) -> list[str]:
    """Markdown tables: medians per transport and size, ratios, RSS / payload."""
    lines: list[str] = []
    for transport in rounds.TRANSPORTS:
        rows = [m for m in results if m.transport == transport]
        if not rows:
            continue
        release = rounds.FLOWER[transport]
        lines += [
            f"### {rounds.LABELS[transport]}",
            "",
            f"| payload | reps | flwr-sdk round | flwr {release} round | ratio ours / flwr "
            f"| server sees: flwr-sdk | server sees: flwr {release} | ratio "
            f"| flwr-sdk peak RSS | RSS / payload | flwr {release} peak RSS | RSS / payload |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for mib in sizes:
            ours = _medians(rows, mib, "flwr-sdk")
            theirs = _medians(rows, mib, rounds.clients(transport)[1])
            if ours is None or theirs is None:
                continue
            nbytes = ours["nbytes"]
            failed = ours["failed"] + theirs["failed"]
            lines.append(
                f"| {mib} MiB ({nbytes:,} B) | {ours['n']:.0f}+{theirs['n']:.0f} "
                f"| {ours['seconds']:.3f} s | {theirs['seconds']:.3f} s "
                f"| **{ours['seconds'] / theirs['seconds']:.2f}** "
                f"| {ours['server_seconds']:.3f} s | {theirs['server_seconds']:.3f} s "
                f"| {ours['server_seconds'] / theirs['server_seconds']:.2f} "
                f"| {ours['rss'] / MiB:.0f} MiB | **{ours['rss'] / nbytes:.2f}x** "
                f"| {theirs['rss'] / MiB:.0f} MiB | {theirs['rss'] / nbytes:.2f}x |"
                + (f" {failed:.0f} failed checks" if failed else "")
            )
        lines.append("")
    return lines


def verdict(results: list[Measurement], codec_raw: list[dict[str, Any]]) -> list[str]:
    """The issue's targets at the largest payload, each checked against this run."""
    lines = ["| target | this run | met |", "|---|---|---|"]

    def row(target: str, figure: str, met: bool) -> None:
        lines.append(f"| {target} | {figure} | {'yes' if met else '**no**'} |")

    largest = max((m.mib for m in results), default=0)
    for transport in rounds.TRANSPORTS:
        rows = [m for m in results if m.transport == transport]
        release = rounds.FLOWER[transport]
        label = rounds.LABELS[transport]
        ours = _medians(rows, largest, "flwr-sdk")
        theirs = _medians(rows, largest, rounds.clients(transport)[1])
        if ours is None or theirs is None:
            continue
        ratio = ours["seconds"] / theirs["seconds"]
        row(
            f"{label}, {largest} MiB: round time ≤ 0.5x flwr {release}",
            f"{ours['seconds']:.2f} s / {theirs['seconds']:.2f} s = {ratio:.2f} "
            f"(as the server sees it: {ours['server_seconds']:.2f} s / "
            f"{theirs['server_seconds']:.2f} s = "
            f"{ours['server_seconds'] / theirs['server_seconds']:.2f})",
            ratio <= 0.5,
        )
        rss = ours["rss"] / ours["nbytes"]
        row(
            f"{label}, {largest} MiB: flwr-sdk peak RSS ≤ 2.0x payload",
            f"{rss:.2f}x (flwr {release}: {theirs['rss'] / theirs['nbytes']:.2f}x)",
            rss <= 2.0,
        )
    fast = {r["mib"]: r for r in codec_raw if r["codec"] == "fast"}
    if fast:
        big, small = max(fast), min(fast)
        gbps = big * MiB / fast[big]["ser"] / 1e9
        row(f"codec serialize ≥ 1 GB/s ({big} MiB)", f"{gbps:.1f} GB/s", gbps >= 1.0)
        growth = fast[big]["parse"] / fast[small]["parse"]
        row(
            "codec parse independent of payload size",
            f"{fast[small]['parse'] * 1e3:.2f} ms at {small} MiB, "
            f"{fast[big]['parse'] * 1e3:.2f} ms at {big} MiB ({growth:.1f}x for "
            f"{big // small}x the bytes)",
            growth < 3.0,
        )
    return lines


def codec_tables(sizes: Sequence[int], arrays: int, repeat: int) -> tuple[list[str], Any]:
    """Run the codec benchmark; markdown table and raw rows."""
    args = Namespace(arrays=arrays, repeat=repeat, codecs=["fast", "protobuf"])
    pb_cls = codec.protobuf_message_class()
    lines = [
        "| payload | codec | serialize | serialize MB/s | parse | parse MB/s "
        "| parse + numpy views |",
        "|---|---|---|---|---|---|---|",
    ]
    raw = []
    for mib in sizes:
        megabytes = mib * MiB / 1e6
        for name, ser, parse, parse_np in codec.run(mib, args, pb_cls):
            label = "flwr-sdk fast codec" if name == "fast" else "google protobuf (upb)"
            lines.append(
                f"| {mib} MiB | {label} | {ser * 1e3:.1f} ms | {megabytes / ser:,.0f} "
                f"| {parse * 1e3:.2f} ms | {megabytes / parse:,.0f} | {parse_np * 1e3:.2f} ms |"
            )
            raw.append({"mib": mib, "codec": name, "ser": ser, "parse": parse, "np": parse_np})
            print(
                f"  codec {name:9} {mib:4d} MiB: ser {ser:.4f} s, parse {parse:.5f} s", flush=True
            )
    return lines, raw


def plot(results: list[Measurement], sizes: Sequence[int], path: Path) -> None:
    """Log-log plot of median round time vs payload, both clients, every transport."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    colors = {"grpc-bidi": "tab:blue", "grpc-rere": "tab:green", "grpc-rere-1.15": "tab:red"}
    panels = (
        ("seconds", "client side of the round (server's gRPC boundary)"),
        ("server_seconds", "round as the server's application sees it"),
    )
    for ax, (field, title) in zip(axes, panels, strict=True):
        for transport in rounds.TRANSPORTS:
            for client in rounds.clients(transport):
                xs, ys = [], []
                for mib in sizes:
                    times = [
                        getattr(m, field)
                        for m in results
                        if m.transport == transport and m.client == client and m.mib == mib
                    ]
                    if times:
                        xs.append(mib)
                        ys.append(_median(times))
                if xs:
                    ax.plot(
                        xs,
                        ys,
                        "-o" if client == "flwr-sdk" else "--s",
                        color=colors[transport],
                        label=f"{client}, {rounds.LABELS[transport]}",
                    )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("payload (MiB of float32 tensors)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("round time, median (s)")
    axes[0].legend()
    releases = sorted({rounds.FLOWER[m.transport] for m in results})
    servers = "server" if len(releases) == 1 else "servers"
    fig.suptitle(f"One round vs real Flower {' / '.join(releases)} {servers} (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Default cap on the reps of the grpc-rere-1.15 row (``--reps-1.15``).
REPS_1_15 = "1=3,64=3,512=2"


def _reps(spec: str, sizes: Sequence[int]) -> dict[int, int]:
    """``1=7,64=5`` → {1: 7, 64: 5}; sizes not named get 3."""
    reps = {int(k): int(v) for k, v in (item.split("=") for item in spec.split(",") if item)}
    for mib in sizes:
        reps.setdefault(mib, 3)
    return reps


def _reps_text(reps: dict[str, dict[int, int]], sizes: Sequence[int]) -> str:
    """``grpc-bidi, grpc-rere: 1 MiB: 7, ...; grpc-rere 1.15: 1 MiB: 4, ...``."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for transport, per_size in reps.items():
        groups.setdefault(tuple(per_size[mib] for mib in sizes), []).append(transport)
    parts = []
    for counts, transports in groups.items():
        text = ", ".join(f"{mib} MiB: {n}" for mib, n in zip(sizes, counts, strict=True))
        if len(groups) > 1:
            labels = (rounds.LABELS.get(t, rounds_142.LABEL) for t in transports)
            text = ", ".join(labels) + ": " + text
        parts.append(text)
    text = "; ".join(parts)
    if len(groups) > 1 and "grpc-rere-1.15" in reps:
        text += (
            " (fewer on grpc-rere 1.15, `--reps-1.15`, so that the whole run stays near "
            "15 minutes on 2 cores)"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,64,512")
    parser.add_argument("--reps", default="1=7,64=5,512=3")
    parser.add_argument(
        "--reps-1.15",
        dest="reps_1_15",
        default=REPS_1_15,
        help="at most this many reps per size on grpc-rere-1.15 and http-1.42 (keeps the run "
        "near 15 min)",
    )
    parser.add_argument("--arrays", type=int, default=10)
    known = (*rounds.TRANSPORTS, rounds_142.KEY)
    parser.add_argument("--transports", default=",".join(known))
    parser.add_argument("--codec-repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--swarm-sizes",
        default=",".join(str(n) for n in swarm.SIZES),
        help="the nodes-per-process table (bench.swarm) for these N; empty: skip it",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    reps = _reps(args.reps, sizes)
    cap = _reps(args.reps_1_15, sizes)
    reps_1_15 = {mib: min(reps[mib], cap[mib]) for mib in sizes}
    transports = [t for t in args.transports.split(",") if t]
    unknown = [t for t in transports if t not in known]
    if unknown:
        parser.error(f"unknown transports {unknown}; known: {', '.join(known)}")
    capped = ("grpc-rere-1.15", rounds_142.KEY)
    per_transport = {t: reps_1_15 if t in capped else reps for t in transports}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flwr-sdk-bench-"))

    started = time.monotonic()
    print("round benchmark", flush=True)
    older = [t for t in transports if t in rounds.FLOWER]
    results = rounds.run(sizes, per_transport, args.arrays, older, workdir)
    if rounds_142.KEY in transports:
        reps_142 = per_transport[rounds_142.KEY]
        results += rounds_142.run(sizes, reps_142, args.arrays, workdir, rounds_142.log)
    print("codec benchmark", flush=True)
    codec_lines, codec_raw = codec_tables(sizes, args.arrays, args.codec_repeat)
    swarm_lines: list[str] = []
    if args.swarm_sizes:
        print("nodes per process", flush=True)
        swarm_sizes = tuple(int(n) for n in args.swarm_sizes.split(","))
        swarm_rows, flower_rss = swarm.run(workdir / "swarm", swarm_sizes)
        swarm_lines = ["", "## Nodes per process", "", swarm.__doc__ or "", ""]
        swarm_lines += swarm.table(swarm_rows, flower_rss)
    elapsed = time.monotonic() - started

    args.out.mkdir(parents=True, exist_ok=True)
    plot([m for m in results if m.transport in rounds.FLOWER], sizes, args.out / "round_time.png")
    (args.out / "results.json").write_text(
        json.dumps({"rounds": [m.__dict__ for m in results], "codec": codec_raw}, indent=1)
    )
    text = render(results, sizes, per_transport, args.arrays, codec_lines, codec_raw, elapsed)
    text += "\n".join(swarm_lines)
    (args.out / "RESULTS.md").write_text(text)
    print(text)


def render(
    results: list[Measurement],
    sizes: Sequence[int],
    reps: dict[str, dict[int, int]],
    arrays: int,
    codec_lines: list[str],
    codec_raw: list[dict[str, Any]],
    elapsed: float,
) -> str:
    """The RESULTS.md text (the verdict section is appended by hand-free rules below).

    ``reps[transport][mib]``: the measured rounds per client of each transport run.
    """
    lines = [
        "# Benchmark results",
        "",
        "Produced by one run of `python -m bench` "
        f"({elapsed / 60:.1f} min); raw numbers in `results.json`, plot in `round_time.png`.",
        "",
        "## Machine",
        "",
        *machine(list(reps)),
        "",
        "## Method",
        "",
        f"- Payload: {arrays} float32 arrays (`.npy` tensors, `tensor_type=numpy.ndarray`) "
        "of equal size; nominal 1, 64 and 512 MiB. Flower 1.12 and 1.15 refuse gRPC messages "
        "over 512 MiB (SuperLink, legacy server and client), so the 512 MiB case carries "
        f"{rounds.payload_bytes(512):,} bytes of tensors (512 MiB - 64 KiB).",
        "- One round: the server sends a FitIns with the payload; the client decodes it "
        "to numpy, runs a no-op `NumPyClient.fit` (returns its input), encodes and sends the "
        "FitRes. flwr-sdk's client is `flwr_sdk.start_client` (`bench/scripts/sdk_client.py`); "
        "Flower's is `flwr.client.start_client` (`bench/scripts/flwr_client.py`) from the "
        "release the server runs (flwr 1.12.0, or flwr 1.15.2 for grpc-rere 1.15), same "
        "NumPyClient logic, default settings. flwr-sdk detects the server's Flower line "
        "itself (before its first instruction, outside the round time).",
        "- Every round runs in a fresh client process; the two clients alternate "
        "(ours, flwr's, flwr's, ours, ...) against the same server process. Repetitions "
        "per size (each client): " + _reps_text(reps, sizes) + ". Tables show medians.",
        "- **Round time** is stamped inside the real Flower server process "
        "(`time.perf_counter`, `bench/scripts/grpc_stamps.py` wraps the request parser and "
        "response serializer of every gRPC method the server registers). The table's main "
        "figure is the client side of the round: from the instruction's serialized bytes "
        "being handed to gRPC for sending, to the reply's bytes completely received (before "
        "parsing). It covers both transfers and everything the client does: receive, "
        "decode to numpy, `fit`, encode, send. *Server sees* is the round as the server's "
        "application sees it; it adds the server's own work before serializing and after "
        "receiving, which is the same for both clients (on the legacy server about 8 s at "
        "512 MiB: Flower copies the FitIns payload between protobuf messages several "
        "times and serializes it, then parses and converts the FitRes).",
        "- **grpc-bidi**: a real `flwr.server.start_server` (flwr 1.12.0, grpcio) with a "
        "custom strategy (`bench/scripts/flwr_legacy_server.py`); *server sees* runs from "
        "`configure_fit` handing over the FitIns to `aggregate_fit` receiving the FitRes.",
        "- **grpc-rere**: a real SuperLink (flwr 1.12.0 `run_superlink`, Flower's default "
        "in-memory state; `bench/scripts/flwr_superlink.py` adds the stamps) and a Driver-API "
        "ServerApp (`bench/scripts/rere_app`) pushing one message per round to the newly "
        "registered node. The instruction is the PullTaskIns response carrying the task, "
        "the reply the PushTaskRes request carrying its ancestry; *server sees* runs from "
        "that PullTaskIns request received to the PushTaskRes request parsed. Client polling "
        "(3 s for Flower's client when idle) and driver polling are outside both figures.",
        "- **grpc-rere 1.15**: the same measurement against a real flwr 1.15.2 SuperLink "
        "(`run_superlink`, in-memory state, `--isolation process`, node auth on as always in "
        "1.15: both clients sign every call) and Flower 1.15.2's own client. Instead of a "
        "FAB started with `flwr run`, `bench/scripts/rere_driver_1_15.py` connects Flower's "
        "`GrpcDriver` to the ServerAppIo API, creates a run (`CreateRun`, then "
        "`UpdateRunStatus` to running) and pushes one message per round to the newly "
        "registered node. The instruction is the PullMessages response carrying the "
        "message, the reply the PushMessages request whose `reply_to_message` names it; "
        "*server sees* runs from that PullMessages request received to the PushMessages "
        "request parsed.",
        *([rounds_142.METHOD] if any(m.transport == rounds_142.KEY for m in results) else []),
        "- Peak RSS: `VmHWM` from `/proc/<pid>/status` of the client process, read once its "
        "round is complete (then the process is killed). It includes the interpreter, "
        "numpy, grpc/grpclib and everything imported: about 60 MiB for flwr-sdk, 85 MiB "
        "for flwr at 1 MiB payload. `RSS / payload` divides by the tensor bytes.",
        "- Codec: `bench/codec.py` (Message → RecordSet → ParametersRecord → Array, same "
        f"{arrays} arrays, best of 3): the generated fast codec vs google protobuf (upb) "
        "on the same `.proto` files; `parse + numpy views` adds one `numpy.frombuffer` per "
        "array (protobuf copies the bytes on access, the fast codec hands out memoryviews).",
        "",
        "## Targets (issue 7, at the largest payload)",
        "",
        *verdict(results, codec_raw),
        "",
        "## Round time and peak memory",
        "",
        *round_tables(results, sizes),
        *rounds_142.table([m for m in results if m.transport == rounds_142.KEY], sizes),
        "![round time vs payload](round_time.png)",
        "",
        "## Codec only",
        "",
        *codec_lines,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
