"""Round benchmark on Flower 1.42: flwr-sdk's node vs Flower's own ``flower-supernode``.

Both nodes join the same real flwr 1.42.0 SuperLink (``flower-superlink --insecure``,
in-memory state, Fleet over protobuf-over-HTTP on its one port) and serve the same run,
started the way 1.42 starts runs: ``flwr run bench/scripts/app_142`` builds the FAB, the
SuperLink's SuperExec starts its ServerApp (``bench142/server_app.py``, Grid API). For
each measurement the ServerApp pushes one legacy ``FitIns`` (``--arrays`` float32 arrays)
to a freshly started node and polls for its reply; the node decodes it to numpy, runs a
no-op ``NumPyClient.fit`` (returns its input), encodes and sends the FitRes.

* flwr-sdk: ``bench/scripts/sdk_client.py http://HOST:PORT rest`` (``start_client``; it
  detects the 1.42 line itself, before its first instruction).
* Flower: ``flower-supernode --insecure`` of flwr 1.42.0, which runs the FAB's ClientApp
  (``bench142/client_app.py``, the same no-op NumPyClient) in an ``flwr-clientapp``
  process started through its own ``flower-superexec``; that is how 1.42 runs a client.

``seconds``, the round without the node's polling delay: from the SuperLink answering the
node's first ``PullObject`` of the instruction (its uvicorn access log, millisecond
stamps, written with ``FLWR_LOG_LEVEL=DEBUG``) to the ServerApp having received the
reply with all its objects (``time.time``). ``server_seconds``, *push + round*, is timed by
the ServerApp alone (``time.perf_counter``) from before its push of the instruction to
the reply received; it adds the push and the node's polling delay (flwr-sdk's node polls
every 3 s when idle). Both include the ServerApp's download of the reply, the same for
both nodes, and not the node's start or registration (the instruction is pushed once the
node is online).

Peak RSS: the sum over the node's process tree (the node and every descendant: for
Flower, SuperNode + SuperExec + ClientApp) of each process's ``VmHWM``, sampled every
20 ms during the round and once after it; flwr-sdk's node is one process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.rounds import (
    SCRIPTS,
    Measurement,
    Plan,
    _kill,
    _process,
    _wait_file,
    _write_atomic,
    flower_env,
    free_ports,
    payload_bytes,
    wait_for_port,
)

#: The benchmark's key for this row, its label and Flower release.
KEY = "http-1.42"
LABEL = "Fleet HTTP 1.42 (flwr-sdk node vs flower-supernode)"
RELEASE = "1.42.0"
CLIENTS = ("flwr-sdk", f"flwr-{RELEASE}")
APP = SCRIPTS / "app_142"
QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}
SAMPLE_S = 0.02
#: A Fleet PullObject in the SuperLink's access log (logged with FLWR_LOG_LEVEL=DEBUG).
PULL_OBJECT = re.compile(
    r'^(\S+Z) (?:INFO|DEBUG) \[uvicorn\.access\] .*"POST /v1/fleet/pull-object ', re.M
)


def first_pull_object(log: Path, after: float) -> float:
    """Wall-clock time of the first Fleet PullObject the SuperLink answered after ``after``."""
    for match in PULL_OBJECT.finditer(log.read_text(errors="replace")):
        stamp = datetime.fromisoformat(match.group(1)).timestamp()
        if stamp >= after:
            return stamp
    raise RuntimeError(f"no /v1/fleet/pull-object in {log} after {after}")


def _children() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _hwm(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class TreePeak:
    """Samples the ``VmHWM`` of every process in a tree; :meth:`total` sums the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for pid in _tree(self.pid):
            value = _hwm(pid)
            if value is not None:
                self.peaks[pid] = max(value, self.peaks.get(pid, 0))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def total(self) -> int:
        self._stop.set()
        self._thread.join()
        self.sample()
        return sum(self.peaks.values())


class Runner142:
    """Starts a fresh node of either kind against the SuperLink at ``host:port``."""

    def __init__(self, env: Any, workdir: Path, host: str, port: int) -> None:
        self.env = env
        self.workdir = workdir
        self.host = host
        self.port = port
        self._count = 0

    def start(self, client: str) -> subprocess.Popen[bytes]:
        self._count += 1
        name = f"{KEY}-client-{self._count}-{client}"
        log = (self.workdir / f"{name}.log").open("wb")
        if client == "flwr-sdk":
            script = os.environ.get("BENCH_SDK_CLIENT", str(SCRIPTS / "sdk_client.py"))
            args = [sys.executable, script, f"http://{self.host}:{self.port}", "rest"]
            environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        else:
            (runtime_port,) = free_ports(1)
            args = [str(self.env.bin_dir / "flower-supernode"), "--insecure"]
            args += ["--superlink", f"{self.host}:{self.port}", "--port", str(runtime_port)]
            environ = self.env.environ({**QUIET, "FLWR_HOME": str(self.workdir / name)})
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True
        )


def _flwr(env: Any, home: Path, *args: str) -> str:
    done = subprocess.run(
        [str(env.bin_dir / "flwr"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env.environ({**QUIET, "FLWR_HOME": str(home)}),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flwr {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return str(done.stdout)


@contextlib.contextmanager
def _superlink(env: Any, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A flwr 1.42 SuperLink on a free port; its process, port and the CLI's FLWR_HOME."""
    (port,) = free_ports(1)
    home = workdir / f"{KEY}-flwr_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    args = [str(env.bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--database", ":flwr-in-memory:"]
    args.append("--disable-runtime-dependency-installation")
    environ = env.environ({**QUIET, "FLWR_HOME": str(home), "FLWR_LOG_LEVEL": "DEBUG"})
    with _process(args, workdir / f"{KEY}-superlink.log", environ) as proc:
        wait_for_port("127.0.0.1", port)
        yield proc, port, home


def log(m: Measurement) -> None:
    """Print one measurement as it finishes (as :func:`bench.rounds.run` does)."""
    print(
        f"  {m.transport:14} {m.client:12} {m.mib:4d} MiB rep {m.rep}: "
        f"{m.seconds:7.3f} s (push + round {m.server_seconds:7.3f} s)  "
        f"peak RSS {m.peak_rss / 2**20:7.1f} MiB" + ("" if m.ok else "  (REPLY CHECK FAILED)"),
        flush=True,
    )


def run(
    sizes: Sequence[int], reps: dict[int, int], arrays: int, workdir: Path, log: Any
) -> list[Measurement]:
    """The 1.42 measurements (warm-up rounds at 1 MiB are logged, not returned)."""
    env = flower_env(RELEASE)
    plan = Plan(sizes, reps, CLIENTS)
    control = workdir / f"{KEY}-control"
    control.mkdir(parents=True)
    app = workdir / "bench142-app"  # flwr run wants letters, digits, "-"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    results: list[Measurement] = []
    superlink_log = workdir / f"{KEY}-superlink.log"
    with _superlink(env, workdir) as (superlink, port, home):
        config = f'control="{control}" rounds={len(plan)}'
        _flwr(env, home, "run", str(app), "bench", "--run-config", config, "--format", "json")
        runner = Runner142(env, workdir, "127.0.0.1", port)
        for index, (mib, rep, client) in enumerate(plan.items, start=1):
            nbytes = payload_bytes(mib)
            proc = runner.start(client)
            try:
                peak = TreePeak(proc.pid)
                _write_atomic(control / f"go-{index}.json", {"nbytes": nbytes, "arrays": arrays})
                done = _wait_file(control / f"done-{index}.json", [superlink, proc], 900)
                rss = peak.total()
            finally:
                _kill(proc)
            # The access log has millisecond stamps; the push returned before any pull.
            fetching = first_pull_object(superlink_log, done["pushed_at"] - 0.001)
            m = Measurement(
                KEY,
                client,
                mib,
                nbytes,
                rep,
                done["received_at"] - fetching,
                done["server_seconds"],
                rss,
                bool(done["ok"]),
            )
            log(m)
            if rep >= 0:
                results.append(m)
    return results


def table(results: list[Measurement], sizes: Sequence[int]) -> list[str]:
    """Markdown table of this row: medians per size, ratios, peak RSS / payload."""
    import statistics

    lines = [
        f"### {LABEL}",
        "",
        f"| payload | reps | flwr-sdk round | flower-supernode {RELEASE} round | ratio ours / flwr "
        "| flwr-sdk push + round | flower-supernode push + round "
        "| flwr-sdk peak RSS | RSS / payload | flower-supernode peak RSS (process tree) "
        "| RSS / payload |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mib in sizes:
        picked = {c: [m for m in results if m.mib == mib and m.client == c] for c in CLIENTS}
        if not all(picked.values()):
            continue
        ours, theirs = (picked[c] for c in CLIENTS)

        def med(rows: list[Measurement], field: str) -> float:
            return float(statistics.median(getattr(m, field) for m in rows))

        nbytes = ours[0].nbytes
        failed = sum(not m.ok for m in ours + theirs)
        lines.append(
            f"| {mib} MiB ({nbytes:,} B) | {len(ours)}+{len(theirs)} "
            f"| {med(ours, 'seconds'):.3f} s | {med(theirs, 'seconds'):.3f} s "
            f"| **{med(ours, 'seconds') / med(theirs, 'seconds'):.2f}** "
            f"| {med(ours, 'server_seconds'):.3f} s | {med(theirs, 'server_seconds'):.3f} s "
            f"| {med(ours, 'peak_rss') / 2**20:.0f} MiB "
            f"| **{med(ours, 'peak_rss') / nbytes:.2f}x** "
            f"| {med(theirs, 'peak_rss') / 2**20:.0f} MiB "
            f"| {med(theirs, 'peak_rss') / nbytes:.2f}x |"
            + (f" {failed} failed checks" if failed else "")
        )
    lines.append("")
    return lines


METHOD = (
    "- **Fleet HTTP 1.42**: flwr-sdk's node vs Flower's own `flower-supernode` (flwr 1.42.0, "
    "the only way Flower 1.42 runs a client on a SuperLink) on the same real flwr 1.42.0 "
    "SuperLink (`--insecure`, in-memory state, Fleet protobuf-over-HTTP on its one port). "
    "The run is started with `flwr run bench/scripts/app_142`; its ServerApp (Grid API) pushes "
    "one legacy FitIns per round to a freshly started node once it is online and polls for "
    "the reply every 10 ms. flwr-sdk's node is `bench/scripts/sdk_client.py` with an "
    "`http://` address and `transport=\"rest\"`; Flower's runs the FAB's ClientApp (the same "
    "no-op NumPyClient) in an `flwr-clientapp` process it starts through its SuperExec. "
    "*Round* runs from the SuperLink answering the node's first PullObject of the "
    "instruction (its access log, millisecond stamps, `FLWR_LOG_LEVEL=DEBUG`) to the "
    "ServerApp having received the reply with all its objects, so it leaves out the "
    "node's polling delay; *push + round* is timed by the ServerApp alone from before its "
    "push to the reply received, and adds the push and the polling delay (flwr-sdk's node "
    "polls every 3 s when idle). Both include the ServerApp's download of the reply (the "
    "same for both nodes), not the node's start or registration. Peak RSS is the sum of "
    "`VmHWM` over the node's process tree (flwr-sdk: "
    "one process; Flower: SuperNode + SuperExec + ClientApp), sampled every 20 ms during "
    "the round. `bench/rounds_142.py`."
)
