"""rest: a Fleet API over HTTP(S), with httpx.

The session flow lives in :mod:`flwr_sdk.transport.fleet_session` and every
line-specific rule (paths included: each RPC's ``rest_path``) in the line's adapter;
this module only makes calls:

* ``POST {base}<rpc.rest_path>``: ``/api/v0/fleet/<rpc>`` on 1.12 and 1.15,
  ``/v1/fleet/<rpc>`` on 1.42 (the generated RPC tables say which) — single-slash
  paths (Flower 1.12's client asks for
  ``//api/v0/fleet/get-run`` and ``…/get-fab``, gets 404 and silently runs without run
  config); body = the request encoded by the fast codec, streamed as ~1 MiB pieces
  (memoryviews of tensor data where possible) with an explicit ``Content-Length``
  (httpcore copies one large ``bytes`` body quadratically); headers
  ``Content-Type: application/protobuf`` and ``Accept: application/protobuf`` (the
  SuperLink answers 400 to anything else);
* every request has explicit timeouts (:func:`timeouts_for`; Flower sets none): connect
  :data:`CONNECT_TIMEOUT`, and read / write a progress deadline of
  :data:`PROGRESS_TIMEOUT` — no byte moved for that long while sending the request or
  waiting for / reading the answer means the server is unreachable (the meaning of the
  gRPC transports' progress deadline), which the retry table retries. The wait for the
  answer's first byte also gets 1 s per :data:`SERVER_RATE` bytes of request (a server
  parses and stores a large reply before it answers); a large model moving steadily
  is never cut off;
* ``https://`` uses TLS, verified against ``root_certificates`` (bytes or a path, both
  already loaded as PEM) or, without them, the system trust store; HTTP/1.1 only;
* responses: 200 with ``content-type: application/protobuf`` is success (an empty body
  is the all-default message); a body larger than ``grpc_max_message_length`` is
  refused before it is read; everything else is an error, never "nothing":

  - connection failures, timeouts, 502/503/504 →
    :class:`~flwr_sdk.errors.ServerUnavailableError` (retried by the policy);
  - 500 → :class:`~flwr_sdk.errors.TransientServerError` (retried a bounded number of
    times: :data:`~flwr_sdk.transport.retry.TRANSIENT_RETRIES`);
  - 401/403 → :class:`~flwr_sdk.errors.AuthenticationError`;
  - other statuses, a wrong content type or an unparsable body →
    :class:`~flwr_sdk.errors.ProtocolError` / :class:`~flwr_sdk.errors.TransportError`
    with the status and the start of the body. (The 1.12 SuperLink answers 500 to every
    get-fab; the session treats a failing GetFab as "no FAB".)

Node authentication: the headers the session's :class:`~flwr_sdk.wire.base.NodeAuth`
gives for a call (:meth:`~flwr_sdk.wire.base.NodeAuth.http_headers`: by default its
text-valued metadata; 1.42 signs every call and sends the key and signature base64). The
1.12 and 1.15 REST Fleet APIs have no node authentication: ``authentication_keys`` on
those lines is refused when the session opens. Refusals with a code (1.42: JSON
``{"code", "detail"}`` with 400, 403 or 412) keep the body's start in the error's message,
where the line reads the code.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import betterproto2
import httpx

from flwr_sdk.errors import (
    AuthenticationError,
    FlwrSdkError,
    MessageTooLargeError,
    ProtocolError,
    ServerUnavailableError,
    TransientServerError,
    TransportError,
)
from flwr_sdk.net.chunks import ChunkCursor, EncodedChunks
from flwr_sdk.net.fast_codec import (
    DEFAULT_CHUNK_SIZE,
    decode_message,
    encode_message_chunks,
)
from flwr_sdk.net.framing import read_declared, transfer_meter
from flwr_sdk.net.limits import PREALLOCATED_BODY_MIN
from flwr_sdk.net.tls import classify_tls_error, client_ssl_context
from flwr_sdk.transport.address import RestTarget, parse_rest_address
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import PROBE_TIMEOUT, FleetCaller, FleetConnector
from flwr_sdk.wire.base import FleetLine, NodeAuth, ProbeCall, Rpc
from flwr_sdk.wire.detect import Probe, ProbeOutcome

__all__ = [
    "PROTOBUF",
    "RestCaller",
    "connector",
    "http_client",
    "progress_deadline",
    "timeouts_for",
]

log = logging.getLogger("flwr_sdk")

PROTOBUF = "application/protobuf"
"""The only content type the Fleet REST API speaks, both ways."""

CONNECT_TIMEOUT = 10.0
"""Seconds to establish a TCP (and TLS) connection."""

PROGRESS_TIMEOUT = 20.0
"""Seconds without a byte moved, either way, after which a call counts as unreachable.

Shorter than gRPC's (which has keepalive PINGs to notice a black hole earlier): a pull
sent into a black hole fails after 20 s, so a node is back serving well within 60 s of
the network returning.
"""

SERVER_RATE = 10 * 2**20
"""Bytes of request per extra second the wait for the answer gets (server processing)."""

UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
TRANSIENT_STATUSES = frozenset({500})
AUTH_STATUSES = frozenset({401, 403})
_PROBE_OUTCOMES = {
    200: ProbeOutcome.ANSWERED,
    401: ProbeOutcome.UNAUTHENTICATED,
    403: ProbeOutcome.UNAUTHENTICATED,
    412: ProbeOutcome.REFUSED,
    404: ProbeOutcome.ABSENT,
    405: ProbeOutcome.ABSENT,
}
_BODY_EXCERPT = 200


def progress_deadline(call_timeout: float, request_size: int = 0) -> float:
    """Seconds a call may go without a byte moved (its progress deadline).

    :data:`PROGRESS_TIMEOUT`, plus 1 s per :data:`SERVER_RATE` bytes of request (the
    server parses and stores a large request before it answers), never above
    ``call_timeout``.
    """
    return min(call_timeout, PROGRESS_TIMEOUT + request_size / SERVER_RATE)


def timeouts_for(call_timeout: float, request_size: int = 0) -> httpx.Timeout:
    """Timeouts for a call: connect, read, write and pool, none above ``call_timeout``.

    Connect :data:`CONNECT_TIMEOUT`; read and write :func:`progress_deadline`. httpx's
    read / write timeouts bound each network operation (inactivity), not the whole
    transfer, so a large model moving steadily is never cut off, while a peer that
    stops answering (a black hole) is noticed within the progress deadline.
    """
    progress = progress_deadline(call_timeout, request_size)
    return httpx.Timeout(
        call_timeout,
        connect=min(CONNECT_TIMEOUT, call_timeout),
        read=progress,
        write=progress,
    )


def http_client(
    target: RestTarget, settings: TransportSettings, *, limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    """The HTTP client of REST sessions to ``target`` (TLS, headers, default timeouts).

    ``limits``: the connection pool's size (httpx's default when None); a client shared
    by many sessions needs a larger pool.
    """
    verify: Any = (
        client_ssl_context(settings.root_certificates, alpn=["http/1.1"])
        if target.uses_tls
        else False
    )
    return httpx.AsyncClient(
        base_url=target.base_url,
        verify=verify,
        http1=True,
        http2=False,
        trust_env=False,
        follow_redirects=False,
        headers={"Content-Type": PROTOBUF, "Accept": PROTOBUF},
        timeout=timeouts_for(30.0),
        limits=limits if limits is not None else httpx.Limits(),
    )


class RestCaller(FleetCaller):
    """Fleet calls as HTTP POSTs over one ``httpx.AsyncClient``, for one session."""

    def __init__(
        self,
        target: RestTarget,
        settings: TransportSettings,
        auth: NodeAuth,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """One session's caller; its own HTTP client unless ``client`` is given.

        ``client``: an HTTP client from :func:`http_client` that many sessions share
        (``flwr_sdk.swarm``); closing it is then left to its owner.
        """
        self._target = target
        self._auth = auth
        self._max_body = settings.max_message_length
        self._owns_client = client is None
        self._client = client if client is not None else http_client(target, settings)
        self._answered = False

    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """``POST`` one request; return the parsed response or raise (see module docs)."""
        path = rpc.rest_path
        assert path is not None and path.startswith("/") and not path.startswith("//")
        # Every error names the call once: "<rpc> failed: … POST <path> …".
        what = f"{rpc.name} failed"
        body = encode_message_chunks(request)
        if len(body) > self._max_body:
            raise MessageTooLargeError(
                f"{what}: request of {len(body)} bytes exceeds "
                f"grpc_max_message_length={self._max_body}",
                size=len(body),
                limit=self._max_body,
            )
        try:
            async with self._client.stream(
                "POST",
                path,
                content=_body_stream(body),
                headers=self._headers(rpc, request, len(body)),
                timeout=timeouts_for(timeout, len(body)),
            ) as response:
                data = await self._read_body(response, what, path)
        except FlwrSdkError:
            raise
        except httpx.TransportError as exc:
            raise self._failure(exc, what, path, timeout, len(body)) from exc
        self._answered = True
        try:
            return decode_message(rpc.response_type, data)
        except Exception as exc:
            raise ProtocolError(
                f"{what}: cannot parse the response body of POST {path}: {exc}"
            ) from exc

    async def probe(self, rpc: Rpc, call: ProbeCall | None = None) -> Probe:
        """``POST`` ``call``'s request (default: an empty body) to ``rpc``'s path.

        The request carries ``call.auth``'s headers when it has one. Only the HTTP
        status is used: the response body is never read, so a server cannot make the
        probe allocate what ``grpc_max_message_length`` would refuse.
        """
        what = f"{rpc.name} failed"
        path = rpc.rest_path or "/"
        body = b""
        headers: dict[str, str] = {}
        if call is not None and call.request is not None:
            body = bytes(call.request)
        if call is not None and call.auth is not None:
            headers = call.auth.http_headers(rpc, call.request or rpc.request_type())
        try:
            async with self._client.stream(
                "POST", path, content=body, headers=headers, timeout=timeouts_for(PROBE_TIMEOUT)
            ) as response:
                status = response.status_code
        except httpx.TransportError as exc:
            raise self._failure(exc, what, path, PROBE_TIMEOUT) from exc
        if status in UNAVAILABLE_STATUSES:
            raise ServerUnavailableError(f"{what}: HTTP {status} from POST {path}")
        self._answered = True
        return Probe(_PROBE_OUTCOMES.get(status, ProbeOutcome.OTHER), f"HTTP {status}")

    def _failure(
        self,
        exc: httpx.TransportError,
        what: str,
        path: str,
        timeout: float,
        request_size: int = 0,
    ) -> Exception:
        """A failed HTTP exchange as a TLS error or "unavailable" (retryable)."""
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
            progress = progress_deadline(timeout, request_size)
            return ServerUnavailableError(
                f"{what}: no byte moved for {progress:g} s (POST {path}, {type(exc).__name__})"
            )
        if isinstance(exc, httpx.TimeoutException):
            limit = (
                min(CONNECT_TIMEOUT, timeout) if isinstance(exc, httpx.ConnectTimeout) else timeout
            )
            return ServerUnavailableError(
                f"{what}: no answer within {limit:g} s (POST {path}, {type(exc).__name__})"
            )
        tls = classify_tls_error(
            exc,
            host=self._target.host,
            during_handshake=self._target.uses_tls and not self._answered,
        )
        if tls is not None:
            return tls
        return ServerUnavailableError(f"{what}: POST {path}: {type(exc).__name__}: {exc}")

    def _headers(self, rpc: Rpc, request: betterproto2.Message, length: int) -> dict[str, str]:
        headers = self._auth.http_headers(rpc, request)
        headers["Content-Length"] = str(length)
        return headers

    async def _read_body(
        self, response: httpx.Response, what: str, path: str
    ) -> bytes | memoryview:
        status = response.status_code
        if status != 200:
            excerpt = await _read_excerpt(response)
            detail = f"{what}: HTTP {status} from POST {path}: {excerpt!r}"
            if status in UNAVAILABLE_STATUSES:
                raise ServerUnavailableError(detail)
            if status in TRANSIENT_STATUSES:
                raise TransientServerError(detail)
            if status in AUTH_STATUSES:
                raise AuthenticationError(detail)
            raise TransportError(detail)
        content_type = response.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != PROTOBUF:
            raise ProtocolError(
                f"{what}: POST {path} answered content-type {content_type!r}, not {PROTOBUF}"
            )
        return await _read_at_most(response, self._max_body, what)

    async def close(self) -> None:
        """Close the HTTP client (unless it is a shared one, given to the constructor)."""
        if not self._owns_client:
            return
        try:
            await self._client.aclose()
        except Exception as exc:  # closing must never fail the caller
            log.debug("Closing the HTTP client failed: %s", exc)


async def _read_excerpt(response: httpx.Response) -> str:
    """The start of an error response's body, as text (the rest is not read)."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= _BODY_EXCERPT:
            break
    return data[:_BODY_EXCERPT].decode("utf-8", "replace").strip()


async def _body_stream(body: EncodedChunks) -> AsyncIterator[bytes]:
    """The request body as ~1 MiB pieces (views where possible) for httpx to stream.

    httpcore copies a single large ``bytes`` body quadratically; ~1 MiB pieces with an
    explicit ``Content-Length`` stream at socket speed. Progress (when the node asks for
    it) counts a piece as sent when httpx asks for the next one.
    """
    cursor = ChunkCursor(body.pieces)
    total = len(body)
    meter = transfer_meter("send", total)
    left = total
    while left > 0:
        piece = cursor.take(min(DEFAULT_CHUNK_SIZE, left))
        left -= len(piece)
        # httpx/h11 take any bytes-like chunk; the annotation says bytes.
        yield cast(bytes, piece)
        if meter is not None:
            meter(total - left)


async def _read_at_most(response: httpx.Response, limit: int, what: str) -> bytes | memoryview:
    """The whole body; MessageTooLargeError as soon as it is known to exceed ``limit``.

    With a ``Content-Length`` header the body is read into one buffer of that size
    (allocated after the limit check) and returned as a writable memoryview of it; otherwise
    the chunks are joined.
    """
    header = response.headers.get("content-length")
    declared = int(header) if header is not None and header.isdigit() else None
    if declared is not None and declared > limit:
        raise MessageTooLargeError(
            f"{what}: response of {declared} bytes exceeds grpc_max_message_length={limit}",
            size=declared,
            limit=limit,
        )
    if declared is not None and declared >= PREALLOCATED_BODY_MIN:
        try:
            return await read_declared(response.aiter_raw(), declared)
        except ValueError as exc:
            raise ProtocolError(f"{what}: response {exc}") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise MessageTooLargeError(
                f"{what}: response exceeds grpc_max_message_length={limit}",
                size=size,
                limit=limit,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def connector(settings: TransportSettings, line: FleetLine | None) -> FleetConnector:
    """Registers nodes on one SuperLink's REST Fleet API (``line``: None to detect)."""
    target = parse_rest_address(settings.server_address)
    return FleetConnector("rest", settings, lambda auth: RestCaller(target, settings, auth), line)
