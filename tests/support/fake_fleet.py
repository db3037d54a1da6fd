"""An in-memory Flower 1.12 Fleet and a FleetCaller that serves it, for session tests.

:class:`Fleet` keeps a node table, queued TaskIns, runs and FABs, and can inject
failures per RPC; :class:`FakeCaller` is a :class:`~flwr_sdk.transport.fleet_session.
FleetCaller` that answers from it, so the shared session flow runs without a server
(the real SuperLinks are exercised by tests/interop/).
"""

from __future__ import annotations

import asyncio
from typing import Any

import betterproto2
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.errors import TransportError
from flwr_sdk.transport.fleet_session import FleetCaller
from flwr_sdk.wire.base import NodeAuth, NoNodeAuth, Rpc
from flwr_sdk.wire.detect import Probe, ProbeOutcome

FLEET_1_12_METHODS = frozenset(
    {"CreateNode", "DeleteNode", "Ping", "PullTaskIns", "PushTaskRes", "GetRun", "GetFab"}
)
NODE = 2**63 + 99
RUN = 2**63 + 5


class Fleet:
    """An in-memory Flower 1.12 Fleet: what the session's calls see."""

    def __init__(self) -> None:
        self.nodes: set[int] = set()
        self.next_node = NODE
        self.calls: list[str] = []
        self.task_ins: list[pb.TaskIns] = []
        self.pushed: list[pb.TaskRes] = []
        self.runs: dict[int, pb.Run] = {}
        self.fabs: dict[str, bytes] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.fab_error: Exception | None = None

    def fail(self, rpc: str, *errors: Exception) -> None:
        self.failures.setdefault(rpc, []).extend(errors)

    def handle(self, rpc: str, request: Any) -> Any:
        self.calls.append(rpc)
        pending = self.failures.get(rpc)
        if pending:
            raise pending.pop(0)
        if rpc == "CreateNode":
            node_id = self.next_node
            self.nodes.add(node_id)
            return pb.CreateNodeResponse(node=pb.Node(node_id=node_id))
        if rpc == "DeleteNode":
            if request.node.node_id not in self.nodes:
                raise TransportError(f"Node {request.node.node_id} not found")
            self.nodes.discard(request.node.node_id)
            return pb.DeleteNodeResponse()
        if rpc == "Ping":
            return pb.PingResponse(success=request.node.node_id in self.nodes)
        if rpc == "PullTaskIns":
            batch, self.task_ins = self.task_ins[:1], self.task_ins[1:]
            return pb.PullTaskInsResponse(task_ins_list=batch)
        if rpc == "PushTaskRes":
            self.pushed.extend(request.task_res_list)
            return pb.PushTaskResResponse()
        if rpc == "GetRun":
            run = self.runs.get(request.run_id)
            return pb.GetRunResponse(run=run)
        if rpc == "GetFab":
            if self.fab_error is not None:
                raise self.fab_error
            content = self.fabs[request.hash_str]
            return pb.GetFabResponse(fab=pb.Fab(hash_str=request.hash_str, content=content))
        raise AssertionError(rpc)


class FakeCaller(FleetCaller):
    """Answers every call from a :class:`Fleet`, recording deadlines and metadata."""

    def __init__(self, fleet: Fleet, auth: NodeAuth | None = None) -> None:
        self.fleet = fleet
        self.auth = auth if auth is not None else NoNodeAuth()
        self.closed = False
        self.timeouts: dict[str, float] = {}
        self.metadata: list[tuple[str, dict[str, str | bytes]]] = []

    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        await asyncio.sleep(0)
        self.timeouts[rpc.name] = timeout
        self.metadata.append((rpc.name, self.auth.call_metadata(rpc, request)))
        return self.fleet.handle(rpc.name, request)

    async def probe(self, rpc: Rpc, call: Any = None) -> Probe:
        """The in-memory Fleet speaks 1.12: its methods answer, others are absent."""
        self.fleet.calls.append(f"probe {rpc.name}")
        if rpc.name in FLEET_1_12_METHODS:
            return Probe(ProbeOutcome.ANSWERED, "OK")
        return Probe(ProbeOutcome.ABSENT, "UNIMPLEMENTED 'Method not found!'")

    async def close(self) -> None:
        self.closed = True
