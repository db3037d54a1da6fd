"""Server side of Flower 1.42 node authentication: signed timestamps on every call.

Always on, on both Fleet front ends (HTTP and gRPC), as on the 1.42 SuperLink. A call
carries the node's public key (PEM SubjectPublicKeyInfo), an ISO-8601 UTC timestamp and
an ECDSA-SHA256 DER signature over the timestamp: gRPC metadata ``flwr-public-key-bin``
/ ``flwr-timestamp`` / ``flwr-signature-bin`` (raw bytes), HTTP headers
``flwr-public-key`` / ``flwr-timestamp`` / ``flwr-signature`` (standard base64;
:func:`metadata_from_http` turns them into the gRPC form). The checks, in order:

1. all three present → else ``"Missing authentication metadata"``;
2. the signature verifies for the key → else ``"Invalid signature"``;
3. ``-5 s < server_now - timestamp < 305 s`` → else ``"Invalid timestamp"``;
4. RegisterNode / ActivateNode: the key in the body equals the signing key (the
   SuperLink checks this over HTTP only; we check it on both front ends); every other
   call: the key is bound to a registered (not unregistered) node and the node the
   request names (``node.node_id``, or ``node_id`` of DeactivateNode / UnregisterNode)
   is that node → else ``"Invalid node ID"``.

Over gRPC each failure is ``UNAUTHENTICATED`` with that text; over HTTP it is ``401
{"detail": "Invalid SuperNode authentication"}``. Nothing of the body is signed.
Whether a node may register itself (auto mode) or only activate a key the operator
registered (``--enable-supernode-auth``) is the servicer's rule
(:class:`~flwr_sdk.server.fleet_v1_42.FleetServicerV1_42`), not this module's.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.server.fleet_grpc import AccessDeniedError, RequestCheck
from flwr_sdk.server.fleet_state import FleetState
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthRefusedError,
    public_key_pem,
    verify_call,
)
from flwr_sdk.wire.v1_42_auth import (
    HTTP_PUBLIC_KEY_HEADER,
    HTTP_SIGNATURE_HEADER,
    MAX_CLOCK_AHEAD,
    MAX_CLOCK_BEHIND,
)

__all__ = [
    "HTTP_HEADERS",
    "INVALID_NODE_ID",
    "MAX_CLOCK_BEHIND",
    "MISSING_METADATA",
    "SignedCallAuthenticator",
    "metadata_from_http",
    "verify_signed_call",
]

MISSING_METADATA = "Missing authentication metadata"
INVALID_NODE_ID = "Invalid node ID"

HTTP_HEADERS: Mapping[str, str] = {
    HTTP_PUBLIC_KEY_HEADER: PUBLIC_KEY_HEADER,
    TIMESTAMP_HEADER: TIMESTAMP_HEADER,
    HTTP_SIGNATURE_HEADER: SIGNATURE_HEADER,
}
"""HTTP header → the gRPC metadata key carrying the same value."""

_BASE64_HEADERS = frozenset({HTTP_PUBLIC_KEY_HEADER, HTTP_SIGNATURE_HEADER})
_REGISTERING = frozenset({"RegisterNode", "ActivateNode"})


def metadata_from_http(headers: Mapping[str, str]) -> dict[str, str | bytes]:
    """The auth headers of an HTTP call in the gRPC metadata form (base64 decoded).

    A header that is not valid base64 is left out (the call then lacks it).
    """
    metadata: dict[str, str | bytes] = {}
    for header, key in HTTP_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        if header in _BASE64_HEADERS:
            try:
                metadata[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
        else:
            metadata[key] = value
    return metadata


def verify_signed_call(
    metadata: Mapping[str, str | bytes], now: datetime.datetime | None = None
) -> bytes:
    """Check a call's signed timestamp with the 1.42 window; return the key (PEM).

    The checks and their order are 1.15's (:func:`~flwr_sdk.wire.v1_15_auth.verify_call`:
    entries present, signature, a timestamp with an offset); only the window differs.

    Raises:
        AuthRefusedError: with the SuperLink's reason.

    """
    return verify_call(metadata, now, max_behind=MAX_CLOCK_BEHIND, max_ahead=MAX_CLOCK_AHEAD)


@dataclass(frozen=True)
class SignedCallAuthenticator:
    """The 1.42 check of every Fleet call (a :class:`~flwr_sdk.server.fleet_grpc.RequestGuard`).

    ``registered_keys``: the node keys (PEM) the operator registered beforehand, as
    ``flwr supernode register`` does with ``--enable-supernode-auth``; nodes then may
    only activate them (no self-registration). None (the default): any node registers
    its own key.
    """

    registered_keys: tuple[bytes, ...] | None = None

    answers_every_fleet_method = True
    """The 1.42 interceptor judges every Fleet call before its method is looked up."""

    @classmethod
    def create(
        cls, registered_public_keys: Iterable[ec.EllipticCurvePublicKey] | None = None
    ) -> SignedCallAuthenticator:
        """Auto mode (no keys), or only the operator-registered nodes' public keys."""
        if registered_public_keys is None:
            return cls()
        return cls(tuple(public_key_pem(key) for key in registered_public_keys))

    def admit(
        self, method: str, metadata: Mapping[str, str | bytes], state: FleetState
    ) -> RequestCheck:
        """Judge the call's signed timestamp; return the check of its request."""
        try:
            key = verify_signed_call(metadata)
        except AuthRefusedError as exc:
            expected = exc.reason == MISSING_METADATA  # a line-detection probe
            raise AccessDeniedError(exc.reason, exc.reason, expected=expected) from None
        if method in _REGISTERING:
            return functools.partial(_check_body_key, key)
        bound = state.node_of_key(key)
        if bound is None:
            raise AccessDeniedError("no registered node for this key", INVALID_NODE_ID)
        return functools.partial(_check_own_node, key, bound)

    def initial_metadata(self, request: Any) -> Mapping[str, str] | None:
        """Nothing: no server key is involved."""
        return None


def _check_body_key(key: bytes, request: Any) -> bytes:
    if request.public_key != key:
        raise AccessDeniedError("the body's key is not the signing key", INVALID_NODE_ID)
    return key


def _named_node(request: Any) -> int:
    node = getattr(request, "node", None)
    if node is not None:
        node_id: int = node.node_id
        return node_id
    return int(getattr(request, "node_id", 0))


def _check_own_node(key: bytes, bound: int, request: Any) -> bytes:
    named = _named_node(request)
    if named != bound:
        raise AccessDeniedError(
            f"request names node {named}, the key node {bound}", INVALID_NODE_ID
        )
    return key
