"""The black-hole scenario of issue 16 ("done when" 1), run in the background.

The scenario (see tests/faults/test_chaos_black_hole.py) is mostly waiting: keepalive
PINGs and progress deadlines take tens of seconds to notice a black hole. So
tests/faults/conftest.py starts every selected transport's scenario in a thread
(:class:`BlackHoleRuns`) — in a serial run when the session's first fault test sets up,
under pytest-xdist when the worker that runs test_chaos_black_hole.py starts that file —
and the black-hole tests only read the figures; the wait overlaps other tests. Each
scenario kills its own processes (``processes()``), also when :meth:`BlackHoleRuns.join`
aborts it at the session's end.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.chaos_proxy import ChaosProxy
from support.chaos_run import first_after, pick, served_rounds, start_chaos_app, wait_until
from support.federation import free_port, processes, start_legacy_server, start_sdk_client
from support.flower_env import FlowerEnv
from support.superlink import start_superlink

HOLE = pick(8.0, 60.0)
"""Seconds the path stays black-holed."""
RECOVERY = 60.0
"""The issue's bound: serving rounds again within this many seconds of healing."""
ROUND_TIMEOUT = 5.0
"""The server's round timeout: a round sent into the black hole ends after it."""
MODULE = "test_chaos_black_hole.py"
TRANSPORTS = ("grpc-bidi", "grpc-rere", "rest")


def scenario(
    flwr_1_12: FlowerEnv, tmp_path: Path, transport: str, abort: threading.Event
) -> dict[str, Any]:
    """Run one transport's black hole; its figures (``recovery`` None: no round served)."""
    with processes() as procs:
        if transport == "grpc-bidi":
            address = f"127.0.0.1:{free_port()}"
            server, report = start_legacy_server(
                flwr_1_12,
                tmp_path,
                address,
                rounds=100_000,
                clients=1,
                extra=["--round-timeout", str(ROUND_TIMEOUT)],
            )
            procs.append(server)
            target_port = int(address.rsplit(":", 1)[1])
        else:
            superlink = start_superlink(flwr_1_12, tmp_path / "superlink", fleet_api_type=transport)
            procs.append(superlink.process)
            report = tmp_path / "rounds.json"
            server = start_chaos_app(superlink, report, round_timeout=ROUND_TIMEOUT)
            procs.append(server)
            target_port = superlink.fleet_port
        with ChaosProxy("127.0.0.1", target_port, seed=f"black-hole-{transport}") as proxy:
            address = proxy.address if transport != "rest" else f"http://{proxy.address}"
            # A short fit keeps the server from running rounds back to back (CPU).
            client = start_sdk_client(
                tmp_path, address, 0, "--transport", transport, "--fit-delay", "0.2"
            )
            procs.append(client)
            wait_until(
                lambda: served_rounds(report) >= 2,
                90,
                "2 rounds before the black hole",
                alive=(server, client),
                abort=abort,
            )
            before = served_rounds(report)
            hole_wall, hole_mono = time.time(), time.monotonic()
            proxy.black_hole()
            if abort.wait(HOLE):
                raise RuntimeError("aborted")
            alive_at_heal = client.proc.poll() is None
            at_heal = served_rounds(report)
            heal_mono = time.monotonic()
            proxy.heal()
            try:
                recovery: float | None = wait_until(
                    lambda: served_rounds(report) > at_heal,
                    RECOVERY,
                    f"round served within {RECOVERY:.0f} s of healing",
                    alive=(server, client),
                    abort=abort,
                )
            except AssertionError:
                recovery = None
            log = client.output(tail=None)
            detected_log = first_after(log, hole_wall)
            new_conns = proxy.opened_since(hole_mono)
            after = served_rounds(report)
            return {
                "transport": transport,
                "black hole s": HOLE,
                "first failure logged s": None
                if detected_log is None
                else round(detected_log - hole_wall, 2),
                "first new connection s": None
                if not new_conns
                else round(new_conns[0] - hole_mono, 2),
                "new connections during hole": sum(1 for t in new_conns if t < heal_mono),
                "new connections after heal": sum(1 for t in new_conns if t >= heal_mono),
                "recovery": None if recovery is None else round(recovery, 2),
                "rounds before": before,
                "rounds during": at_heal - before,
                "rounds after": after - at_heal,
                "alive at heal": alive_at_heal,
                "alive at end": client.proc.poll() is None,
                **proxy.figures(),
                "log": client.output(),
            }


class BlackHoleRuns:
    """The scenarios of ``transports``, started at once in threads."""

    def __init__(
        self, env: FlowerEnv, factory: pytest.TempPathFactory, transports: list[str]
    ) -> None:
        self.abort = threading.Event()
        self.results: dict[str, dict[str, Any]] = {}
        self.threads = [
            threading.Thread(
                target=self._run, args=(env, factory.mktemp(f"hole-{t}"), t), daemon=True
            )
            for t in transports
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, env: FlowerEnv, tmp: Path, transport: str) -> None:
        try:
            self.results[transport] = scenario(env, tmp, transport, self.abort)
        except BaseException as exc:  # reported by that transport's test
            self.results[transport] = {"error": exc}

    def wait(self) -> dict[str, dict[str, Any]]:
        """Every scenario's figures (blocks until all have ended)."""
        for thread in self.threads:
            thread.join()
        return self.results

    def join(self) -> None:
        """Abort what still runs (it kills its processes) and wait for it."""
        self.abort.set()
        for thread in self.threads:
            thread.join(timeout=120)
