"""Many client nodes of one app in one process, or spread over Ray actors.

See ``docs/swarm.md``. :class:`SwarmConfig` says what to run; :func:`run_swarm` (or
:class:`Swarm` inside a running event loop) runs it on one event loop;
:func:`flwr_sdk.swarm.ray_runner.run_swarm_on_ray` spreads it over Ray actors (extra
``swarm-ray``). The command line is ``flwr-sdk swarm``.
"""

from flwr_sdk.swarm.runner import NODE, NodeLogFilter, Swarm, SwarmConfig, run_swarm
from flwr_sdk.swarm.stats import NodeResult, NodeState, SwarmResult, SwarmSnapshot, SwarmStats

__all__ = [
    "NODE",
    "NodeLogFilter",
    "NodeResult",
    "NodeState",
    "Swarm",
    "SwarmConfig",
    "SwarmResult",
    "SwarmSnapshot",
    "SwarmStats",
    "run_swarm",
]
