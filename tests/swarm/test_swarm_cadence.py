"""How often a swarm talks to the server: one line probe for all nodes, heartbeat cadence.

Each test runs a small swarm and the reference server on one event loop (in this
process): small enough to stay a few seconds, real calls over loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from flwr_sdk.events import NodeEvent, Registered
from flwr_sdk.server import ReferenceServer, ServerConfig
from flwr_sdk.swarm import Swarm, SwarmConfig
from swarm.swarm_app import client_fn

NODES = 12


async def registered_swarm(
    server: ReferenceServer, transport: str, nodes: int = NODES, **options: Any
) -> tuple[Swarm, dict[int, int]]:
    """Run a swarm until every node registered, then stop it; the node id of each."""
    registered: dict[int, int] = {}
    swarm: Swarm | None = None

    def on_event(partition_id: int, event: NodeEvent) -> None:
        if isinstance(event, Registered):
            registered[partition_id] = event.node_id
            if len(registered) == nodes and swarm is not None:
                swarm.stop()

    config = SwarmConfig(
        server_address=server.address,
        nodes=nodes,
        app=client_fn,
        transport=transport,
        start_rate=1000.0,
        max_retries=2,
        **options,
    )
    swarm = Swarm(config, on_event)
    result = await asyncio.wait_for(swarm.run(), timeout=60)
    assert not result.failed_nodes, [node.error for node in result.failed_nodes]
    return swarm, registered


def run_with_server(transport: str, wire: str, scenario: Callable[[ReferenceServer], Any]) -> Any:
    """``scenario(server)`` on one loop with the reference server on ``wire``."""

    async def main() -> Any:
        server = ReferenceServer(ServerConfig(transport=transport, wire=wire, port=0))
        await server.start()
        try:
            return await scenario(server)
        finally:
            await server.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("transport", ["rest", "grpc-rere"])
def test_a_swarm_probes_the_line_once_for_all_its_nodes(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 1.42's probe is an ActivateNode of a throwaway key: the server refuses each one
    # and logs it (a real SuperLink at ERROR), so its log counts the probes.
    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        _, registered = run_with_server(
            transport,
            "1.42",
            lambda server: registered_swarm(server, transport, heartbeat_interval=60.0),
        )
    assert len(set(registered.values())) == NODES
    refused = [r for r in caplog.records if r.getMessage().startswith("ActivateNode refused")]
    assert len(refused) == 1, [r.getMessage() for r in refused]


def test_a_heartbeat_interval_the_line_refuses_stops_the_swarm_before_any_node() -> None:
    registered: list[NodeEvent] = []

    async def scenario(server: ReferenceServer) -> Swarm:
        config = SwarmConfig(
            server_address=server.address,
            nodes=3,
            app=client_fn,
            transport="grpc-rere",
            heartbeat_interval=5.0,
        )
        swarm = Swarm(config, lambda _, event: registered.append(event))
        with pytest.raises(ValueError, match=r"within \[10, 1800\] seconds on the Flower 1\.42"):
            await asyncio.wait_for(swarm.run(), timeout=30)
        return swarm

    swarm = run_with_server("grpc-rere", "1.42", scenario)
    assert registered == []
    assert swarm.stats.snapshot().states["pending"] == 3
