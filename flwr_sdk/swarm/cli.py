"""``flwr-sdk swarm``: run many client nodes of one app in this process (or on Ray).

Registered by :mod:`flwr_sdk.cli` (:func:`add_parser`, :func:`swarm_command`; the
swarm's modules are imported only when the command runs). Shows one
live view of the whole swarm (:class:`~flwr_sdk.swarm.display.SwarmDisplay`), writes a
JSON summary with ``--summary FILE`` and, with ``--node-logs FILE``, every node's log
lines tagged with its partition id (the console only shows errors). Exits 1 when a node
ended with an error or an instruction failed.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr_sdk.cli_inputs import add_connection_options

if TYPE_CHECKING:
    from flwr_sdk.swarm.display import SwarmDisplay
    from flwr_sdk.swarm.runner import KeyPair, SwarmConfig
    from flwr_sdk.swarm.stats import SwarmResult

__all__ = ["add_parser", "swarm_command"]

NODE_LOG_FORMAT = "%(asctime)s node %(swarm_node)s %(levelname)s %(name)s: %(message)s"
"""Format of the lines ``--node-logs`` writes."""


def add_parser(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the ``swarm`` subcommand (``command`` makes a subparser, as ``flwr_sdk.cli`` does)."""
    swarm = command(
        "swarm",
        help="run many client nodes of one app in this process (or on Ray)",
        description="Run --nodes nodes of one app (--app module:attr: a ClientApp or a "
        "client_fn) on one event loop; node i gets node_config partition-id=i and "
        "num-partitions=N. The nodes share one connection where the transport allows "
        "(grpc-rere, rest) and start at --start-rate per second. The swarm ends when the "
        "server has sent no instruction for --idle-exit seconds after the first one, or on "
        "Ctrl+C (every node leaves the server). --ray / --ray-address spread the nodes "
        "over Ray actors (extra: swarm-ray). Exits 1 when a node or an instruction failed.",
    )
    add = swarm.add_argument
    add("--nodes", type=int, required=True, help="how many nodes")
    add("--app", required=True, metavar="MODULE:ATTR", help="ClientApp or client_fn to run")
    add_connection_options(
        swarm,
        helps={
            "--max-retries": "each node's retries (default: no limit)",
            "--max-wait-time": "each node's total time to keep retrying (default: no limit)",
            "--fail-fast": "a node stops at its first failed instruction",
        },
        transport_default="grpc-rere",
        server_alias=True,
    )
    add(
        "--auth-key-dir",
        default=None,
        metavar="DIR",
        help="node authentication (grpc-rere): node i's keys are DIR/node-i and DIR/node-i.pub "
        "(OpenSSH or PEM)",
    )
    add(
        "--node-config",
        default=None,
        metavar="'KEY=VALUE ...'",
        help="more Context.node_config entries for every node (as flower-supernode takes them)",
    )
    add("--first-partition", type=int, default=0, help="partition id of the first node")
    add(
        "--num-partitions",
        type=int,
        default=None,
        help="num-partitions every node gets (default: --nodes)",
    )
    add("--start-rate", type=float, default=250.0, help="nodes started per second")
    add(
        "--poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between two polls of an idle node, +-10%% jitter (default: the line's, 3 s)",
    )
    add(
        "--heartbeat-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between two heartbeats of a node (default: the line's, 30 s; "
        "Flower 1.42 takes 10 to 1800): longer costs fewer calls, and the server notices "
        "a vanished node later",
    )
    add(
        "--idle-exit",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="end once no instruction came for this long after the first one (while calls "
        "queue at the shared connection: and every polling node has since found no work; "
        "0: never); make it outlast the server's longest pause between two phases",
    )
    add(
        "--no-wake",
        action="store_true",
        help="no wake-up: an idle node notices work only at its own next poll (by default, "
        "one node's instruction makes the idle others poll within a second)",
    )
    add(
        "--no-share",
        action="store_true",
        help="one connection per node instead of one shared connection",
    )
    add("--summary", default=None, metavar="FILE", help="write the swarm's result as JSON")
    add(
        "--node-logs",
        default=None,
        metavar="FILE",
        help="write every node's log lines (INFO) to FILE, tagged with its partition id",
    )
    add("--no-live", action="store_true", help="no live view (plain lines at most)")
    ray = swarm.add_argument_group("Ray (extra: swarm-ray)")
    ray.add_argument("--ray", action="store_true", help="spread the nodes over local Ray actors")
    ray.add_argument(
        "--ray-address",
        default=None,
        help="an existing Ray cluster to use (implies --ray), e.g. auto or ray://host:10001",
    )
    ray.add_argument("--ray-actors", type=int, default=2, help="Ray actors (each a swarm)")
    ray.add_argument(
        "--ray-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)"
    )


def _keys_from(directory: str | None) -> Callable[[int], KeyPair] | None:
    from flwr_sdk.cli_inputs import load_private_key, load_public_key

    if directory is None:
        return None
    base = Path(directory)
    if not base.is_dir():
        raise ValueError(f"--auth-key-dir {directory}: not a directory")

    def keys(partition_id: int) -> KeyPair:
        private = base / f"node-{partition_id}"
        public = base / f"node-{partition_id}.pub"
        pair: KeyPair = (
            load_private_key(str(private), "--auth-key-dir"),
            load_public_key(str(public), "--auth-key-dir"),
        )
        return pair

    return keys


def _node_logs(path: str | None, verbose: int) -> None:
    """Console: errors only (unless -v); ``path``: every node's INFO lines, tagged."""
    from flwr_sdk.swarm.runner import NodeLogFilter

    package = logging.getLogger("flwr_sdk")
    if path is None:
        if not verbose:
            package.setLevel(logging.ERROR)
            logging.getLogger("flwr_sdk.swarm").setLevel(logging.INFO)
        return
    for handler in logging.getLogger().handlers:
        if handler.level < logging.ERROR and not verbose:
            handler.setLevel(logging.ERROR)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.addFilter(NodeLogFilter())
    handler.setFormatter(logging.Formatter(NODE_LOG_FORMAT))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


def _config(args: argparse.Namespace) -> SwarmConfig:
    from flwr_sdk.cli_inputs import load_app, parse_node_config
    from flwr_sdk.swarm.runner import SwarmConfig

    kind, app = load_app(args.app)
    if kind == "client":
        raise ValueError(
            f"--app {args.app} is one Client instance; a swarm needs a ClientApp or a "
            "client_fn (each node gets its own client from its Context)"
        )
    return SwarmConfig(
        server_address=args.server_address,
        nodes=args.nodes,
        app=app,
        transport=args.transport,
        first_partition=args.first_partition,
        num_partitions=args.num_partitions,
        node_config=parse_node_config(args.node_config),
        start_rate=args.start_rate,
        poll_interval=args.poll_interval,
        heartbeat_interval=args.heartbeat_interval,
        wake=not args.no_wake,
        share_connections=not args.no_share,
        idle_exit=args.idle_exit or None,
        authentication_keys=_keys_from(args.auth_key_dir),
        root_certificates=args.root_certificates,
        insecure=args.insecure,
        max_retries=args.max_retries,
        max_wait_time=args.max_wait_time,
        wire=args.wire,
        fail_fast=args.fail_fast,
        grpc_max_message_length=args.grpc_max_message_length,
    )


def _run(
    args: argparse.Namespace, config: SwarmConfig, display: SwarmDisplay | None
) -> SwarmResult:
    if args.ray or args.ray_address is not None:
        from flwr_sdk.swarm.ray_runner import run_swarm_on_ray

        options: dict[str, Any] = {}
        if args.ray_cpus is not None:
            options["num_cpus"] = args.ray_cpus
        return run_swarm_on_ray(
            config,
            actors=args.ray_actors,
            address=args.ray_address,
            progress=display,
            init_options=options,
        )
    from flwr_sdk.swarm.runner import run_swarm

    return run_swarm(config, progress=display)


def swarm_command(args: argparse.Namespace) -> int:
    """Run the swarm the arguments describe; exit 1 when a node or an instruction failed."""
    from flwr_sdk.swarm.display import SwarmDisplay

    config = _config(args)
    _node_logs(args.node_logs, args.verbose)
    display = None if args.quiet or args.no_live else SwarmDisplay()
    try:
        result = _run(args, config, display)
    finally:
        if display is not None:
            display.close()
    summary = result.to_dict()
    summary.update(
        transport=config.transport,
        server_address=config.server_address,
        ray_actors=args.ray_actors if args.ray or args.ray_address else 0,
    )
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1))
    handled = ", ".join(f"{count} {kind}" for kind, count in sorted(summary["handled"].items()))
    print(
        f"flwr-sdk swarm: {len(result.nodes)} nodes, {len(result.failed_nodes)} failed, "
        f"{handled or 'no instructions'} in {result.seconds:.1f} s"
    )
    for node in result.failed_nodes[:5]:
        print(f"  node {node.partition_id}: {node.error}")
    return 1 if result.failed_nodes or result.totals.failed_instructions else 0
