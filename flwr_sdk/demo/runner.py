"""Run the demo federation: reference server in-process, clients as subprocesses.

Each client process is ``python -m flwr_sdk.cli client --app
flwr_sdk.demo.client:client_fn …`` (the SDK's own ``start_client``), told its data share
through the environment; the clients are not told the server's wire line
(``DemoOptions.wire``, 1.12, 1.15 or 1.42): they detect it. The server runs its default app,
FedAvg (:class:`~flwr_sdk.server.fedavg_app.FedAvgApp` on the typed app API), with
server-side evaluation on a held-out test set and federated evaluation on the clients'
local test rows; a rich live view shows each round, a table sums the run up, ``plot``
writes the curves as a PNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flwr_sdk.common.legacy_types import Metrics, Scalar
from flwr_sdk.common.ndarrays import NDArrays, ndarrays_to_parameters
from flwr_sdk.demo.model import NUM_CLASSES, LogisticRegression, make_dataset
from flwr_sdk.server.app import TRANSPORTS, WIRES, ReferenceServer, ServerConfig, ServerTLS
from flwr_sdk.server.driver import DriverListener, History, RoundResult
from flwr_sdk.server.node_auth import NodeAuthenticator
from flwr_sdk.server.node_auth_v1_15 import SignedTimestampAuthenticator
from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator
from flwr_sdk.server.strategy import FedAvg

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

log = logging.getLogger("flwr_sdk")

CLIENT_APP = "flwr_sdk.demo.client:client_fn"
STOP_TIMEOUT = 30.0


_AUTH_TRANSPORTS: dict[str, tuple[str, ...]] = {
    "1.12": ("grpc-rere",),
    "1.15": ("grpc-rere",),
    "1.42": ("grpc-rere", "rest"),  # every 1.42 Fleet call is signed, HTTP included
}
"""The transports on which each wire line authenticates nodes."""


@dataclass
class DemoOptions:
    """What ``flwr-sdk demo`` was asked for."""

    clients: int = 3
    rounds: int = 5
    transport: str = "grpc-bidi"
    wire: str = "1.12"
    tls: bool = False
    auth: bool = False
    plot: Path | None = None
    seed: int = 0
    local_epochs: int = 2
    lr: float = 0.1
    round_timeout: float = 60.0
    live: bool = True

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        if self.wire not in WIRES:
            raise ValueError(f"wire must be one of {', '.join(WIRES)}")
        if self.clients < 1:
            raise ValueError("clients must be >= 1")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if self.auth and self.transport not in _AUTH_TRANSPORTS[self.wire]:
            raise ValueError(
                f"--auth on wire {self.wire} needs --transport "
                f"{' or '.join(_AUTH_TRANSPORTS[self.wire])} (where that line has node auth)"
            )


@dataclass
class DemoResult:
    """The run's history and the clients' exit codes."""

    history: History
    client_exit_codes: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        """Server-side accuracy of the final model on the held-out test set."""
        return float(self.history.rounds[-1].central_metrics["accuracy"])


def _fit_config(options: DemoOptions) -> dict[int, dict[str, Scalar]]:
    """Per-round fit config: the learning rate decays by 10% per round."""
    return {
        rnd: {
            "round": rnd,
            "lr": options.lr * 0.9 ** (rnd - 1),
            "local_epochs": options.local_epochs,
        }
        for rnd in range(1, options.rounds + 1)
    }


def _strategy(options: DemoOptions) -> FedAvg:
    _, test = make_dataset(options.seed)
    model = LogisticRegression()
    configs = _fit_config(options)

    def central(server_round: int, weights: NDArrays) -> tuple[float, Metrics]:
        model.set_weights(weights)
        loss, accuracy = model.loss_and_accuracy(test)
        return loss, {"accuracy": accuracy}

    return FedAvg(
        min_fit_clients=options.clients,
        min_evaluate_clients=options.clients,
        min_available_clients=options.clients,
        initial_parameters=ndarrays_to_parameters(LogisticRegression().get_weights()),
        on_fit_config=lambda rnd: configs[rnd],
        on_evaluate_config=lambda rnd: {"round": rnd},
        evaluate_fn=central,
        seed=options.seed,
    )


class _Live(DriverListener):
    """Progress bars for the round loop."""

    def __init__(self, progress: Progress, console: Console, rounds: int) -> None:
        self.progress = progress
        self.console = console
        self.overall: TaskID = progress.add_task("rounds", total=rounds)
        self.phase: TaskID | None = None

    def on_waiting(self, connected: int, needed: int) -> None:
        self.progress.update(
            self.overall, description=f"waiting for clients ({connected}/{needed})"
        )

    def on_phase(self, server_round: int, phase: str, nodes: int) -> None:
        if self.phase is not None:
            self.progress.remove_task(self.phase)
        self.progress.update(self.overall, description=f"round {server_round}")
        self.phase = self.progress.add_task(f"  {phase}", total=nodes)

    def on_reply(self, server_round: int, phase: str, ok: bool) -> None:
        if self.phase is not None:
            self.progress.advance(self.phase)

    def on_round(self, result: RoundResult) -> None:
        self.progress.advance(self.overall)
        accuracy = result.central_metrics.get("accuracy", float("nan"))
        self.console.log(
            f"round {result.server_round}: loss {result.evaluate_loss or 0.0:.4f}, "
            f"accuracy {100 * float(accuracy):.1f}% "
            f"({result.fit_results} fit / {result.evaluate_results} evaluate replies, "
            f"{result.fit_failures + result.evaluate_failures} failures)"
        )


def results_table(history: History) -> Table:
    """One row per round: losses and accuracies."""
    table = Table(title="FedAvg, multinomial logistic regression (synthetic non-IID data)")
    table.add_column("round", justify="right")
    table.add_column("train loss", justify="right")
    table.add_column("eval loss (fed.)", justify="right")
    table.add_column("accuracy (fed.)", justify="right")
    table.add_column("test loss (server)", justify="right")
    table.add_column("test accuracy (server)", justify="right")
    table.add_column("replies", justify="right")
    if history.central_initial is not None:
        loss, metrics = history.central_initial
        table.add_row(
            "0", "-", "-", "-", f"{loss:.4f}", f"{100 * float(metrics['accuracy']):.1f}%", "-"
        )
    for r in history.rounds:
        table.add_row(
            str(r.server_round),
            _fmt(r.fit_metrics.get("train_loss")),
            _fmt(r.evaluate_loss),
            _pct(r.evaluate_metrics.get("accuracy")),
            _fmt(r.central_loss),
            _pct(r.central_metrics.get("accuracy")),
            f"{r.fit_results + r.evaluate_results}/"
            f"{r.fit_results + r.fit_failures + r.evaluate_results + r.evaluate_failures}",
        )
    return table


def _fmt(value: object) -> str:
    return "-" if value is None else f"{float(value):.4f}"  # type: ignore[arg-type]


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]


def plot_history(history: History, path: Path) -> None:
    """Write loss and accuracy curves as a PNG (needs matplotlib: ``flwr-sdk[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: pip install 'flwr-sdk[plot]'") from exc
    rounds = [0] + [r.server_round for r in history.rounds]
    initial_loss, initial_metrics = history.central_initial or (float("nan"), {"accuracy": np.nan})
    central_loss = [initial_loss] + [r.central_loss or np.nan for r in history.rounds]
    central_acc = [float(initial_metrics["accuracy"])] + [
        float(r.central_metrics.get("accuracy", np.nan)) for r in history.rounds
    ]
    fed_loss = [np.nan] + [r.evaluate_loss or np.nan for r in history.rounds]
    fed_acc = [np.nan] + [float(r.evaluate_metrics.get("accuracy", np.nan)) for r in history.rounds]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(rounds, central_loss, marker="o", label="server test set")
    ax_loss.plot(rounds, fed_loss, marker="s", label="federated (clients)")
    ax_loss.set_xlabel("round")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_acc.plot(rounds, central_acc, marker="o", label="server test set")
    ax_acc.plot(rounds, fed_acc, marker="s", label="federated (clients)")
    ax_acc.axhline(1 / NUM_CLASSES, color="grey", linestyle="--", label="chance")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    fig.suptitle("flwr-sdk demo: FedAvg")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


_ServerAuth = NodeAuthenticator | SignedTimestampAuthenticator | SignedCallAuthenticator
"""The reference server's node authentication, one kind per wire line."""


def _write_keys(
    directory: Path, count: int, wire: str
) -> tuple[_ServerAuth, list[tuple[Path, Path]]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pairs: list[tuple[Path, Path]] = []
    public_keys = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP384R1())
        private, public = directory / f"client{i}.key", directory / f"client{i}.key.pub"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        private.chmod(0o600)
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
        )
        pairs.append((private, public))
        public_keys.append(key.public_key())
    if wire == "1.15":
        return SignedTimestampAuthenticator.create(public_keys), pairs
    if wire == "1.42":  # the nodes' keys are operator-registered: they only activate
        return SignedCallAuthenticator.create(public_keys), pairs
    server_key = ec.generate_private_key(ec.SECP384R1())
    return NodeAuthenticator.create(server_key, public_keys), pairs


class _Clients:
    """The client processes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, options: DemoOptions, address: str, extra: list[list[str]]) -> None:
        for i in range(options.clients):
            env = dict(os.environ)
            env.update(
                FLWR_SDK_DEMO_PARTITION_ID=str(i),
                FLWR_SDK_DEMO_NUM_PARTITIONS=str(options.clients),
                FLWR_SDK_DEMO_SEED=str(options.seed),
                PYTHONUNBUFFERED="1",
            )
            args = [
                sys.executable,
                "-m",
                "flwr_sdk.cli",
                "client",
                "--app",
                CLIENT_APP,
                "--server-address",
                address,
                "--transport",
                options.transport,
                "--max-retries",
                "10",
                "--max-wait-time",
                "60",
                *extra[i],
            ]
            log_path = self.workdir / f"client{i}.log"
            with log_path.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        args,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                )
            self.logs.append(log_path)

    def crashed(self) -> int | None:
        """Index of a client that exited with an error, if any."""
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is not None and code != 0:
                return i
        return None

    def tail(self, index: int, lines: int = 20) -> str:
        text = self.logs[index].read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    async def stop(self, fleet: bool) -> list[int]:
        """Wait for the clients to exit (Fleet clients get SIGTERM: they never stop)."""
        if fleet:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            await asyncio.sleep(0.1)
        codes = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                codes.append(-9)
            else:
                codes.append(int(proc.returncode))
        return codes


async def _watch(clients: _Clients, run: asyncio.Task[History]) -> None:
    while not run.done():
        crashed = clients.crashed()
        if crashed is not None:
            run.cancel(f"client {crashed} exited")
            return
        await asyncio.sleep(0.2)


async def _run(options: DemoOptions, console: Console, workdir: Path) -> DemoResult:
    started = time.monotonic()
    tls: ServerTLS | None = None
    extra: list[list[str]] = [[] for _ in range(options.clients)]
    auth: _ServerAuth | None = None
    if options.tls or options.auth:
        from flwr_sdk.server.tls_material import make_tls_material

        material = make_tls_material()
        paths = material.write(workdir / "tls")
        tls = ServerTLS(material.server_cert_pem, material.server_key_pem)
        for args in extra:
            args += ["--root-certificates", str(paths.ca_cert)]
    if options.auth:
        auth, pairs = _write_keys(workdir, options.clients, options.wire)
        for args, (private, public) in zip(extra, pairs, strict=True):
            args += ["--auth-key-private", str(private), "--auth-key-public", str(public)]
    config = ServerConfig(
        transport=options.transport,
        host="127.0.0.1",
        port=0,
        num_rounds=options.rounds,
        strategy=_strategy(options),
        round_timeout=options.round_timeout,
        wait_timeout=60.0,
        tls=tls,
        auth=auth,
        wire=options.wire,
    )
    clients = _Clients(workdir)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=not options.live,
    )
    listener = _Live(progress, console, options.rounds)
    server = ReferenceServer(config, listener)
    await server.start()
    try:
        console.print(
            f"[bold]flwr-sdk demo[/]: reference server on {server.address} "
            f"({options.transport}{', TLS' if tls else ''}{', node auth' if auth else ''}), "
            f"{'' if options.transport == 'grpc-bidi' else WIRES[options.wire].title + ', '}"
            f"{options.clients} clients, {options.rounds} rounds"
        )
        clients.start(options, server.address, extra)
        with progress:
            run = asyncio.ensure_future(server.run())
            watcher = asyncio.ensure_future(_watch(clients, run))
            try:
                history = await run
            except asyncio.CancelledError:
                crashed = clients.crashed()
                if crashed is None:
                    raise
                raise RuntimeError(
                    f"client {crashed} exited with code {clients.procs[crashed].returncode}:\n"
                    f"{clients.tail(crashed)}"
                ) from None
            finally:
                watcher.cancel()
        codes = await clients.stop(fleet=options.transport != "grpc-bidi")
    finally:
        for proc in clients.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        await server.stop()
    return DemoResult(history, codes, time.monotonic() - started)


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the whole demo; print the progress and the results; return the exit code."""
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="flwr-sdk-demo-") as tmp:
        try:
            result = asyncio.run(_run(options, console, Path(tmp)))
        except Exception as exc:
            console.print(f"[bold red]demo failed:[/] {exc}")
            return 1
    console.print(results_table(result.history))
    accuracy = result.final_accuracy
    console.print(
        f"Final accuracy: [bold]{100 * accuracy:.1f}%[/] on the held-out test set "
        f"(chance: {100 / NUM_CLASSES:.1f}%), {options.rounds} rounds, "
        f"{options.clients} clients, {result.seconds:.1f} s"
    )
    if options.plot is not None:
        try:
            plot_history(result.history, options.plot)
        except RuntimeError as exc:
            console.print(f"[bold red]{exc}[/]")
            return 1
        console.print(f"Plot written to {options.plot}")
    bad = [code for code in result.client_exit_codes if code != 0]
    if bad:
        console.print(f"[bold red]clients exited with codes {result.client_exit_codes}[/]")
        return 1
    failures = sum(r.fit_failures + r.evaluate_failures for r in result.history.rounds)
    if failures:
        console.print(f"[bold red]{failures} failed replies[/]")
        return 1
    with contextlib.suppress(Exception):
        console.file.flush()
    return 0
