"""Full-round benchmark: flwr-sdk's client vs Flower's own client, same real server.

One round = the server sends a FitIns with ``--arrays`` float32 arrays, the client decodes
them to numpy, runs a no-op ``fit`` (returns its input), encodes and sends the FitRes.
Every measurement uses a fresh client process; clients alternate (ours, flwr's, ours, ...).

Two round times per measurement, both stamped inside the real server process
(``time.perf_counter``, see ``scripts/grpc_stamps.py``):

* ``seconds``, the client side of the round: from the instruction's serialized bytes being
  handed to gRPC for sending to the reply's bytes completely received (before parsing).
  It covers both transfers and everything the client does, and nothing the server's
  application does.
* ``server_seconds``, the round as the server's application sees it: it adds the server's
  own work around the client's (for the legacy server, Flower's protobuf copies and
  serialization of the FitIns and parsing of the FitRes: about 10 s at 512 MiB).

* **grpc-bidi**: a real ``flwr.server.start_server`` (``scripts/flwr_legacy_server.py``);
  ``server_seconds`` runs from ``configure_fit`` handing over the FitIns to ``aggregate_fit``
  receiving the FitRes.
* **grpc-rere**: a real SuperLink with Flower's default in-memory state
  (``scripts/flwr_superlink.py``) and a Driver-API ServerApp (``scripts/rere_app``) that
  pushes one message per measurement; ``server_seconds`` runs from the PullTaskIns request
  that receives the task to the PushTaskRes request parsed. Client and driver polling
  intervals are outside both times.
* **grpc-rere-1.15**: the same against a real flwr 1.15.2 SuperLink (in-memory state,
  ``--isolation process``) fed by ``scripts/rere_driver_1_15.py``, which creates a run on
  the ServerAppIo API and pushes one message per measurement; flwr's client is
  ``flwr.client.start_client`` of flwr 1.15.2. The instruction is the PullMessages
  response carrying the message, the reply the PushMessages request answering it.

Peak RSS: ``VmHWM`` from ``/proc/<pid>/status`` of the client process, read after its round
is complete; the process is then killed (Flower's grpc-rere client does not exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SCRIPTS = BENCH / "scripts"
MiB = 1 << 20
#: Flower's SuperLinks (1.12, 1.15) and legacy server refuse gRPC messages over 512 MiB; the
#: largest payload leaves 64 KiB of room for the message around the tensors.
GRPC_LIMIT = 512 * MiB
HEADROOM = 64 * 1024
#: Transport keys of ``--transports``, in run order, and the Flower release each runs against.
FLOWER = {"grpc-bidi": "1.12.0", "grpc-rere": "1.12.0", "grpc-rere-1.15": "1.15.2"}
TRANSPORTS = tuple(FLOWER)
#: How the report names each transport key.
LABELS = {"grpc-bidi": "grpc-bidi", "grpc-rere": "grpc-rere", "grpc-rere-1.15": "grpc-rere 1.15"}
#: The transport the clients are started with (the key minus the Flower line).
WIRE_TRANSPORT = {"grpc-bidi": "grpc-bidi", "grpc-rere": "grpc-rere", "grpc-rere-1.15": "grpc-rere"}
#: The clients on the Flower 1.12.0 transports (``clients`` gives any transport's pair).
CLIENTS = ("flwr-sdk", "flwr-1.12.0")


def clients(transport: str) -> tuple[str, str]:
    """The two clients measured on ``transport``: flwr-sdk and ``flwr-<release>``."""
    return ("flwr-sdk", f"flwr-{FLOWER[transport]}")


@dataclass
class Measurement:
    """One round of one client."""

    transport: str
    client: str
    mib: int
    nbytes: int
    rep: int
    #: Client side of the round, at the server's gRPC boundary (see scripts/grpc_stamps.py).
    seconds: float
    #: The round as the server's application sees it (adds the server's own work).
    server_seconds: float
    peak_rss: int
    ok: bool


def payload_bytes(mib: int) -> int:
    """Tensor bytes of a nominal ``mib`` MiB payload (below Flower's 512 MiB limit)."""
    return min(mib * MiB, GRPC_LIMIT - HEADROOM)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now.

    All are bound at once before any is released, so the kernel cannot hand out the same
    port twice (two separate bind-to-0 calls can return the same port).
    """
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def wait_for_port(host: str, port: int, timeout: float = 60.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def vm_hwm(pid: int) -> int:
    """Peak resident set size (``VmHWM``) of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def flower_env(version: str = "1.12.0") -> Any:
    """The cached flwr ``version`` virtualenv of the interop tests (built on first use)."""
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))
    from support.flower_env import FlowerEnv

    return FlowerEnv.get(version)


class Plan:
    """The measurement order: per size, ``reps`` rounds of each client, alternating."""

    def __init__(
        self, sizes: Sequence[int], reps: dict[int, int], pair: Sequence[str] = CLIENTS
    ) -> None:
        # A warm-up round per client (rep -1, not reported) before the measurements.
        self.items: list[tuple[int, int, str]] = [(1, -1, client) for client in pair]
        for mib in sizes:
            for rep in range(reps[mib]):
                order = tuple(pair) if rep % 2 == 0 else tuple(pair)[::-1]
                self.items.extend((mib, rep, client) for client in order)

    def __len__(self) -> int:
        return len(self.items)


@contextlib.contextmanager
def _process(
    args: Sequence[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            yield proc
        finally:
            _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


class Runner:
    """Starts the client processes of both kinds against one server address.

    ``transport`` is the benchmark's transport key (``grpc-rere-1.15``), which names the
    measurements and logs; both clients are started with its wire transport (``grpc-rere``).
    Our client detects the Flower line itself.
    """

    def __init__(self, env: Any, workdir: Path, address: str, transport: str) -> None:
        self.env = env
        self.workdir = workdir
        self.address = address
        self.transport = transport
        self._count = 0

    def start(self, client: str) -> subprocess.Popen[bytes]:
        self._count += 1
        log = (self.workdir / f"{self.transport}-client-{self._count}-{client}.log").open("wb")
        if client == "flwr-sdk":
            args = [
                sys.executable,
                os.environ.get("BENCH_SDK_CLIENT", str(SCRIPTS / "sdk_client.py")),
                self.address,
                WIRE_TRANSPORT[self.transport],
            ]
            environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        else:
            args = [str(self.env.python), str(SCRIPTS / "flwr_client.py"), self.address]
            args.append(WIRE_TRANSPORT[self.transport])
            environ = self.env.environ({"FLWR_TELEMETRY_ENABLED": "0"})
        environ["FLWR_HOME"] = str(self.workdir / "flwr_home")
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True
        )


def _write_atomic(path: Path, content: Any) -> None:
    """Write JSON so that a reader polling for ``path`` never sees it half written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content))
    partial.rename(path)


def _wait_file(path: Path, procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text:
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(text)
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while waiting")
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear within {timeout:.0f}s")


def _measure(
    plan: Plan,
    runner: Runner,
    control: Path,
    arrays: int,
    servers: Sequence[subprocess.Popen[bytes]],
    timing: Callable[[dict[str, Any], int], tuple[float, float, bool]],
    log: Any,
) -> list[Measurement]:
    """Run ``plan`` round by round: start the client, say go, wait for done, read its RSS.

    ``timing`` turns a round's ``done-<r>.json`` and payload bytes into (seconds,
    server_seconds, ok).
    Warm-up rounds (rep -1) are logged but not returned.
    """
    results: list[Measurement] = []
    for index, (mib, rep, client) in enumerate(plan.items, start=1):
        nbytes = payload_bytes(mib)
        proc = runner.start(client)
        try:
            _write_atomic(control / f"go-{index}.json", {"nbytes": nbytes, "arrays": arrays})
            done = _wait_file(control / f"done-{index}.json", [*servers, proc], 900)
            seconds, server_seconds, ok = timing(done, nbytes)
            peak = vm_hwm(proc.pid)
        finally:
            _kill(proc)
        m = Measurement(
            runner.transport, client, mib, nbytes, rep, seconds, server_seconds, peak, ok
        )
        log(m)
        if rep >= 0:
            results.append(m)
    return results


def run_bidi(env: Any, workdir: Path, plan: Plan, arrays: int, log: Any) -> list[Measurement]:
    """The grpc-bidi measurements against a real ``flwr.server.start_server``."""
    control = workdir / "bidi-control"
    control.mkdir()
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    server_env = env.environ({"FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
    args = [str(env.python), str(SCRIPTS / "flwr_legacy_server.py"), "--address", address]
    args += ["--rounds", str(len(plan)), "--control", str(control)]
    runner = Runner(env, workdir, address, "grpc-bidi")
    with _process(args, workdir / "bidi-server.log", server_env) as server:
        wait_for_port("127.0.0.1", port)
        return _measure(
            plan,
            runner,
            control,
            arrays,
            [server],
            lambda done, nbytes: (done["seconds"], done["server_seconds"], done["ok"]),
            log,
        )


def _rere_times(
    stamps: Path, task_ins_id: str, nbytes: int, timeout: float = 900
) -> tuple[float, float, bool]:
    """Client-side and server-observed round time of one task, from the SuperLink's stamps.

    Client side: the PullTaskIns response carrying the task ready to send → the PushTaskRes
    request carrying the reply completely received. Server observed: that PullTaskIns
    request received → the PushTaskRes request parsed. On Flower 1.15 the same with
    PullMessages / PushMessages and the message id (see ``scripts/grpc_stamps.py``).
    ``ok``: the instruction and the reply both carried at least the payload's ``nbytes``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pull = push = None
        if stamps.exists():
            for line in stamps.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    event = json.loads(line)
                    if event["dir"] == "send" and task_ins_id in event.get("task_ids", ()):
                        pull = event
                    if event["dir"] == "recv" and task_ins_id in event.get("ancestry", ()):
                        push = event
        if pull is not None and push is not None:
            ok = pull["bytes"] >= nbytes and push["bytes"] >= nbytes
            return push["t0"] - pull["t1"], push["t1"] - pull["request_t0"], ok
        time.sleep(0.05)
    raise TimeoutError(f"no PushTaskRes for {task_ins_id} within {timeout:.0f}s")


@dataclass(frozen=True)
class SuperLinkSetup:
    """How one release's SuperLink and the app that pushes the rounds are started."""

    transport: str
    fleet_port: int
    superlink_flags: Sequence[str]
    app_args: Sequence[str]
    wait_ports: Sequence[int]


def _run_superlink(
    env: Any, workdir: Path, plan: Plan, arrays: int, log: Any, setup: SuperLinkSetup
) -> list[Measurement]:
    """Measure against a real SuperLink (with stamps) and the app that pushes the rounds."""
    transport, fleet_port = setup.transport, setup.fleet_port
    tag = transport.removeprefix("grpc-rere")
    control = workdir / f"rere{tag}-control"
    control.mkdir()
    stamps = workdir / f"superlink{tag}-stamps.jsonl"
    environ = env.environ(
        {
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "FLWR_HOME": str(workdir / f"flwr_home{tag}"),
            "BENCH_CONTROL": str(control),
            "BENCH_ROUNDS": str(len(plan)),
            "BENCH_STAMPS": str(stamps),
        }
    )
    superlink_args = [
        str(env.python),
        str(SCRIPTS / "flwr_superlink.py"),
        "--insecure",
        "--fleet-api-type",
        "grpc-rere",
        "--fleet-api-address",
        f"127.0.0.1:{fleet_port}",
        "--storage-dir",
        str(workdir / f"ffs{tag}"),
        *setup.superlink_flags,
    ]
    runner = Runner(env, workdir, f"127.0.0.1:{fleet_port}", transport)
    with _process(superlink_args, workdir / f"superlink{tag}.log", environ) as superlink:
        for port in (*setup.wait_ports, fleet_port):
            wait_for_port("127.0.0.1", port)
        with _process(list(setup.app_args), workdir / f"serverapp{tag}.log", environ) as app:
            return _measure(
                plan,
                runner,
                control,
                arrays,
                [superlink, app],
                lambda done, nbytes: _rere_times(stamps, done["message_id"], nbytes),
                log,
            )


def run_rere(env: Any, workdir: Path, plan: Plan, arrays: int, log: Any) -> list[Measurement]:
    """The grpc-rere measurements against a real SuperLink and Driver-API ServerApp."""
    driver_port, fleet_port = free_ports(2)
    driver = f"127.0.0.1:{driver_port}"
    setup = SuperLinkSetup(
        transport="grpc-rere",
        fleet_port=fleet_port,
        superlink_flags=["--driver-api-address", driver],
        app_args=[
            str(env.bin_dir / "flower-server-app"),
            str(SCRIPTS / "rere_app"),
            "--superlink",
            driver,
            "--insecure",
        ],
        wait_ports=[driver_port],
    )
    return _run_superlink(env, workdir, plan, arrays, log, setup)


def run_rere_1_15(env: Any, workdir: Path, plan: Plan, arrays: int, log: Any) -> list[Measurement]:
    """The grpc-rere measurements against a real flwr 1.15.2 SuperLink (ServerAppIo driver)."""
    serverappio, fleet, exec_api, simulationio = free_ports(4)
    setup = SuperLinkSetup(
        transport="grpc-rere-1.15",
        fleet_port=fleet,
        superlink_flags=[
            "--isolation",
            "process",
            "--serverappio-api-address",
            f"127.0.0.1:{serverappio}",
            "--exec-api-address",
            f"127.0.0.1:{exec_api}",
            "--simulationio-api-address",
            f"127.0.0.1:{simulationio}",
        ],
        app_args=[
            str(env.python),
            str(SCRIPTS / "rere_driver_1_15.py"),
            "--serverappio",
            f"127.0.0.1:{serverappio}",
        ],
        wait_ports=[serverappio],
    )
    return _run_superlink(env, workdir, plan, arrays, log, setup)


def run(
    sizes: Sequence[int],
    reps: dict[str, dict[int, int]],
    arrays: int,
    transports: Sequence[str],
    workdir: Path | None = None,
) -> list[Measurement]:
    """Run every measurement; returns them in order (printed as they finish).

    ``reps[transport][mib]``: measured rounds per client.
    """
    unknown = [t for t in transports if t not in FLOWER]
    if unknown:
        raise ValueError(f"unknown transports {unknown}; known: {', '.join(TRANSPORTS)}")
    base = Path(tempfile.mkdtemp(prefix="flwr-sdk-bench-")) if workdir is None else workdir
    base.mkdir(parents=True, exist_ok=True)

    def log(m: Measurement) -> None:
        print(
            f"  {m.transport:14} {m.client:12} {m.mib:4d} MiB rep {m.rep}: "
            f"{m.seconds:7.3f} s (server sees {m.server_seconds:7.3f} s)  "
            f"peak RSS {m.peak_rss / MiB:7.1f} MiB" + ("" if m.ok else "  (REPLY CHECK FAILED)"),
            flush=True,
        )

    runs = {"grpc-bidi": run_bidi, "grpc-rere": run_rere, "grpc-rere-1.15": run_rere_1_15}
    results: list[Measurement] = []
    for transport in TRANSPORTS:
        if transport in transports:
            plan = Plan(sizes, reps[transport], clients(transport))
            env = flower_env(FLOWER[transport])
            results += runs[transport](env, base, plan, arrays, log)
    (base / "rounds.json").write_text(json.dumps([asdict(m) for m in results], indent=1))
    return results
