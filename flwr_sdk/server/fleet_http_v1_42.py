"""The Flower 1.42 Fleet API over HTTP: ``POST /v1/fleet/<rpc>``, protobuf bodies.

What the 1.42 SuperLink's one HTTP port answers for the Fleet routes of a line's
servicer (:meth:`~flwr_sdk.server.fleet_line.FleetLineServicer.rest_routes`;
``/v1/fleet/register-node``, ``…/pull-messages``, ``…/push-object``, …):

* ``POST`` with ``Content-Type: application/protobuf`` (parameters after ``;``
  ignored; ``Accept`` is not looked at) and the three signed-timestamp headers → 200,
  ``content-type: application/protobuf``, the serialized answer;
* any other path (also the 1.15 ``/api/v0/fleet/…`` and ``/v1/fleet/create-node``) →
  404 ``{"detail": "Not Found"}``; another method on a Fleet path → 405
  ``{"detail": "Method Not Allowed"}``;
* another content type → 415 ``{"code": 1002, "detail": "Unsupported Content-Type."}``;
  a body that is not the request message → 400 ``{"code": 1003, "detail": "Invalid
  protobuf payload."}``;
* failed node authentication (:mod:`~flwr_sdk.server.node_auth_v1_42`) → 401
  ``{"detail": "Invalid SuperNode authentication"}``;
* a coded refusal (:class:`~flwr_sdk.server.fleet_state.FleetRefusedError`) → its HTTP
  status and ``{"code": …, "detail": …}``; any other failure of the request
  (:class:`~flwr_sdk.server.fleet_state.FleetError`) → 500 ``{"detail": "Internal
  server error."}``.

Body size limits, reading and streaming are those of the REST front end
(:class:`~flwr_sdk.server.fleet_rest.RestFleetServer`, 413 beyond the limit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from flwr_sdk.net.fast_codec import encode_message_chunks
from flwr_sdk.server.fleet_grpc import AccessDeniedError, RequestGuard, calling_as
from flwr_sdk.server.fleet_line import FleetRoute
from flwr_sdk.server.fleet_rest import PROTOBUF, RestFleetServer, stream_protobuf
from flwr_sdk.server.fleet_state import FleetError, FleetRefusedError, FleetState
from flwr_sdk.server.node_auth_v1_42 import metadata_from_http
from flwr_sdk.server.wire_check import strict_decode

__all__ = ["AUTH_FAILED", "HttpFleetServer"]

log = logging.getLogger("flwr_sdk.server")

AUTH_FAILED = "Invalid SuperNode authentication"


def _json(status: int, detail: str, code: int | None = None) -> web.Response:
    body: dict[str, Any] = {} if code is None else {"code": code}
    body["detail"] = detail
    return web.json_response(body, status=status)


class HttpFleetServer(RestFleetServer):
    """An aiohttp server for the 1.42 Fleet routes of one line, node auth on every call."""

    def __init__(
        self,
        routes: Mapping[str, FleetRoute],
        *,
        max_body_size: int,
        guard: RequestGuard,
        state: FleetState,
    ) -> None:
        super().__init__(routes, max_body_size=max_body_size)
        self.guard = guard
        self.state = state

    def _unavailable(self) -> web.Response:
        """The answer to a request the stopping server will not handle."""
        return _json(503, "Service Unavailable")

    def _refused(self, name: str, exc: AccessDeniedError) -> web.Response:
        log.log(logging.DEBUG if exc.expected else logging.WARNING, "%s refused: %s", name, exc.why)
        return _json(401, AUTH_FAILED)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        rpc = self.routes.get(request.raw_path.split("?", 1)[0])
        if rpc is None:
            return _json(404, "Not Found")
        if request.method != "POST":
            return _json(405, "Method Not Allowed")
        content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if content_type.lower() != PROTOBUF:
            return _json(415, "Unsupported Content-Type.", 1002)
        metadata = metadata_from_http(request.headers)
        try:
            check = self.guard.admit(rpc.name, metadata, self.state)
        except AccessDeniedError as exc:
            return self._refused(rpc.name, exc)
        try:
            body = await self._read_body(request)
        except ValueError as exc:  # body length differs from its Content-Length
            log.warning("%s: unreadable body: %s", rpc.name, exc)
            return _json(400, "Invalid protobuf payload.", 1003)
        if body is None:
            log.warning("%s: body over the %d-byte limit refused", rpc.name, self.max_body_size)
            return _json(413, f"Payload Too Large (limit {self.max_body_size} bytes)")
        try:
            message = strict_decode(rpc.request_type, body)
        except Exception as exc:
            log.warning("%s: undecodable body: %s", rpc.name, exc)
            return _json(400, "Invalid protobuf payload.", 1003)
        try:
            key = check(message)
        except AccessDeniedError as exc:
            return self._refused(rpc.name, exc)
        try:
            with calling_as(key):
                response = await rpc.call(message)
        except FleetRefusedError as exc:
            log.info("%s refused: %s", rpc.name, exc)
            return _json(exc.status, exc.detail, exc.code)
        except FleetError as exc:
            log.warning("%s failed: %s", rpc.name, exc)
            return _json(500, "Internal server error.")
        return await stream_protobuf(request, encode_message_chunks(response))
