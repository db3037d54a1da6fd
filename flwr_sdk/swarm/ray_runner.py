"""Spread a swarm over Ray actors: each actor runs a :class:`~flwr_sdk.swarm.Swarm` of K nodes.

Needs the ``swarm-ray`` extra (``pip install 'flwr-sdk[swarm-ray]'``). The caller's
:class:`~flwr_sdk.swarm.SwarmConfig` is cut into ``actors`` consecutive blocks of
partition ids (each block keeps the whole swarm's ``num-partitions``), one per actor;
actor ``k`` is an async Ray actor that runs its block on its own event loop, answers
progress polls while it runs (its :class:`~flwr_sdk.swarm.SwarmSnapshot`; the caller
sums them) and returns its :class:`~flwr_sdk.swarm.SwarmResult`; the caller merges the
results, ordered by partition id.

Ray is started here when it is not running yet: on ``address`` (an existing cluster,
``"auto"``, ``"ray://…"``) or, without one, as a local Ray, which is shut down again at
the end. A local Ray's workers get the caller's ``sys.path`` (``PYTHONPATH``), so the app
is importable there as it is here; on a cluster the app's module must be installed on
every machine (or shipped with Ray's ``runtime_env``, given as ``init_options``).

SIGINT and SIGTERM (in the main thread) only set a flag that the caller's wait loop
checks every ``progress_interval``: a KeyboardInterrupt raised inside one of Ray's own
calls did not always reach our handler, and the actors then never heard of the stop.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from flwr_sdk.swarm.runner import ProgressCallback, Swarm, SwarmConfig
from flwr_sdk.swarm.stats import SwarmResult, SwarmSnapshot

__all__ = ["RAY_EXTRA", "run_swarm_on_ray", "split"]

RAY_EXTRA = "swarm-ray"
"""The optional dependency group that installs Ray."""

STOP_GRACE = 30.0
"""Seconds the actors get to stop their nodes after the caller was interrupted."""


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"running a swarm on Ray needs Ray: pip install 'flwr-sdk[{RAY_EXTRA}]'",
            name=exc.name,
        ) from exc


def split(config: SwarmConfig, actors: int) -> list[SwarmConfig]:
    """``config`` cut into ``actors`` swarms of consecutive partition ids (sizes differ by ≤ 1).

    Raises:
        ValueError: ``actors`` is below 1 or above the number of nodes.

    """
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"actors must be an int >= 1, got {actors!r}")
    if actors > config.nodes:
        raise ValueError(f"{actors} actors for {config.nodes} nodes: give each actor a node")
    base, extra = divmod(config.nodes, actors)
    parts = []
    first = config.first_partition
    for index in range(actors):
        size = base + (1 if index < extra else 0)
        parts.append(
            dataclasses.replace(
                config,
                nodes=size,
                first_partition=first,
                num_partitions=config.partitions,
                start_rate=config.start_rate / actors,
                seed=config.seed + index,
            )
        )
        first += size
    return parts


class SwarmActor:
    """One Ray actor's swarm (async actor: progress polls are answered while it runs)."""

    def __init__(self, config: SwarmConfig) -> None:
        """An actor for ``config``'s nodes; they start with :meth:`run`."""
        self._config = config
        self._swarm: Swarm | None = None

    async def run(self) -> SwarmResult:
        """Run the swarm until it ends; return what its nodes did."""
        self._swarm = Swarm(self._config)
        return await self._swarm.run()

    async def snapshot(self) -> SwarmSnapshot:
        """The swarm's counters now."""
        if self._swarm is None:
            return SwarmSnapshot(nodes=self._config.nodes, states={"pending": self._config.nodes})
        return self._swarm.stats.snapshot()

    async def stop(self) -> None:
        """Stop every node of the swarm (they leave the server)."""
        if self._swarm is not None:
            self._swarm.stop()


def _local_init_options() -> dict[str, Any]:
    path = os.pathsep.join(entry for entry in sys.path if entry and os.path.isdir(entry))
    return {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
    }


def run_swarm_on_ray(
    config: SwarmConfig,
    *,
    actors: int,
    address: str | None = None,
    progress: ProgressCallback | None = None,
    progress_interval: float = 1.0,
    init_options: Mapping[str, Any] | None = None,
) -> SwarmResult:
    """Run ``config``'s nodes as ``actors`` Ray actors; block until all have ended.

    ``progress`` gets the summed counters of all actors every ``progress_interval``
    seconds and once at the end. Ctrl+C (KeyboardInterrupt) stops every actor's nodes
    (they leave the server) and returns what they did. ``init_options`` go to
    ``ray.init`` when Ray is started here.

    Raises:
        ModuleNotFoundError: Ray is not installed (the ``swarm-ray`` extra).
        ValueError: ``actors`` does not fit ``config.nodes``.

    """
    ray = _ray()
    parts = split(config, actors)
    # Invalid arguments fail here, before Ray starts.
    config.node_client_config(config.first_partition, None)
    started_here = not ray.is_initialized()
    if started_here:
        options = dict(_local_init_options() if address is None else {})
        options.update(init_options or {})
        ray.init(address=address, **options)
    handles: list[Any] = []
    stopping = threading.Event()
    restore = _catch_stop_signals(stopping)
    try:
        remote = ray.remote(SwarmActor)
        handles = [remote.remote(part) for part in parts]
        runs = [handle.run.remote() for handle in handles]
        try:
            _wait(ray, handles, runs, progress, progress_interval, stopping)
        except KeyboardInterrupt:
            stopping.set()
        if stopping.is_set():
            ray.get([handle.stop.remote() for handle in handles], timeout=STOP_GRACE)
        results: list[SwarmResult] = ray.get(runs, timeout=STOP_GRACE + 10)
        merged = SwarmResult.merge(results)
        if progress is not None:
            progress(merged.totals)
        return merged
    finally:
        restore()
        for handle in handles:
            ray.kill(handle)
        if started_here:
            ray.shutdown()


def _catch_stop_signals(stopping: threading.Event) -> Any:
    """SIGINT / SIGTERM set ``stopping`` (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in handled}

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    for sig in handled:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _wait(
    ray: Any,
    handles: list[Any],
    runs: list[Any],
    progress: ProgressCallback | None,
    interval: float,
    stopping: threading.Event,
) -> None:
    """Wait for every actor's run (or a stop signal), passing the summed snapshots on."""
    pending = list(runs)
    while pending and not stopping.is_set():
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=interval)
        if progress is not None and pending:
            snapshots = ray.get([handle.snapshot.remote() for handle in handles])
            progress(SwarmSnapshot.merge(snapshots))
