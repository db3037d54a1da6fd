"""The Fleet API's answers, shared by the gRPC and the REST front ends.

Requests and answers are the generated 1.12 messages; failures the SuperLink reports as
a server exception raise :class:`~flwr_sdk.server.fleet_state.FleetError` (gRPC
``UNKNOWN``, HTTP 500).
"""

from __future__ import annotations

import betterproto2
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.server.fleet_state import FleetError, FleetState

__all__ = ["FleetServicer", "PUSH_RECONNECT_SECONDS"]

PUSH_RECONNECT_SECONDS = 5
"""``PushTaskResResponse.reconnect`` as the 1.12 SuperLink sends it (clients ignore it)."""


class FleetServicer:
    """Answer Fleet requests from a :class:`FleetState`."""

    def __init__(self, state: FleetState) -> None:
        self.state = state

    def handle(
        self, rpc_name: str, request: betterproto2.Message, public_key: bytes | None = None
    ) -> betterproto2.Message:
        """Answer one request (``public_key``: the authenticated caller's key, if any)."""
        state = self.state
        if rpc_name == "CreateNode":
            assert isinstance(request, pb.CreateNodeRequest)
            node_id = state.create_node(request.ping_interval, public_key)
            return pb.CreateNodeResponse(node=pb.Node(node_id=node_id, anonymous=False))
        if rpc_name == "DeleteNode":
            assert isinstance(request, pb.DeleteNodeRequest)
            state.delete_node(request.node)
            return pb.DeleteNodeResponse()
        if rpc_name == "Ping":
            assert isinstance(request, pb.PingRequest)
            return pb.PingResponse(success=state.ping(request.node, request.ping_interval))
        if rpc_name == "PullTaskIns":
            assert isinstance(request, pb.PullTaskInsRequest)
            return pb.PullTaskInsResponse(task_ins_list=state.pull_task_ins(request.node))
        if rpc_name == "PushTaskRes":
            assert isinstance(request, pb.PushTaskResRequest)
            if not request.task_res_list:
                raise FleetError("list index out of range")
            task_id = state.push_task_res(request.task_res_list[0])
            return pb.PushTaskResResponse(
                reconnect=pb.Reconnect(reconnect=PUSH_RECONNECT_SECONDS),
                results={str(task_id): 0},
            )
        if rpc_name == "GetRun":
            assert isinstance(request, pb.GetRunRequest)
            return pb.GetRunResponse(run=state.get_run(request.run_id))
        if rpc_name == "GetFab":
            assert isinstance(request, pb.GetFabRequest)
            raise FleetError(f"Found no FAB with hash: {request.hash_str}")
        raise FleetError(f"unknown Fleet method {rpc_name}")
