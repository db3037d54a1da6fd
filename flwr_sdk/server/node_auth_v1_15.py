"""Server side of Flower 1.15 node authentication (grpc-rere): signed timestamps.

Always on for the grpc-rere Fleet API, as on the 1.15 SuperLink ("auto-auth": any key
is accepted and bound to the node it registers; with an allow-list only listed keys).
Every ``/flwr.proto.Fleet/*`` call is judged from its metadata before its method is
looked up (:mod:`flwr_sdk.wire.v1_15_auth` has the scheme), in the SuperLink's order,
each failure ``UNAUTHENTICATED`` with the SuperLink's text:

1. one of ``flwr-public-key-bin`` / ``flwr-timestamp`` / ``flwr-signature-bin`` missing
   → ``"Missing authentication metadata"``;
2. with an allow-list, a key not on it (compared as PEM bytes) → ``"Public key not
   recognized"``;
3. a signature that does not verify → ``"Invalid signature"``; a timestamp outside
   ``(-5 s, +15 s)`` of the server's clock → ``"Invalid timestamp"``;
4. any call but CreateNode from a key bound to no node → ``"Invalid node ID"``; once the
   request is read, one that names another node than the key's → ``"Invalid node ID"``;
5. CreateNode with a key already bound to a node → ``"Public key already in use"``.

CreateNode binds the key to the new node; DeleteNode releases it
(:class:`~flwr_sdk.server.fleet_v1_15.FleetServicerV1_15`). A call of a Fleet method
this line lacks (e.g. 1.12's ``PullTaskIns``) is judged the same way first
(:attr:`SignedTimestampAuthenticator.answers_every_fleet_method`). REST has no node
authentication.

The check is :func:`flwr_sdk.wire.v1_15_auth.verify_call` (each node's key loaded once),
which the 1.42 line calls with its own window.
"""

from __future__ import annotations

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

__all__ = [
    "INVALID_NODE_ID",
    "KEY_IN_USE",
    "MISSING_METADATA",
    "NOT_RECOGNIZED",
    "SignedTimestampAuthenticator",
]

MISSING_METADATA = "Missing authentication metadata"
NOT_RECOGNIZED = "Public key not recognized"
INVALID_NODE_ID = "Invalid node ID"
KEY_IN_USE = "Public key already in use"

_HEADERS = (PUBLIC_KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def _denied(reason: str, why: str | None = None) -> AccessDeniedError:
    return AccessDeniedError(why or reason, reason)


@dataclass
class SignedTimestampAuthenticator:
    """The 1.15 check; ``allowed``: the allow-list as PEM bytes (None: any key)."""

    allowed: set[bytes] | None = None

    answers_every_fleet_method = True
    """The 1.15 interceptor judges every Fleet call before the method is looked up."""

    @classmethod
    def create(
        cls, allowed_public_keys: Iterable[ec.EllipticCurvePublicKey] | None = None
    ) -> SignedTimestampAuthenticator:
        """Any key (no list), or only the listed nodes' public keys."""
        if allowed_public_keys is None:
            return cls()
        return cls({public_key_pem(key) for key in allowed_public_keys})

    def _verified_key(self, metadata: Mapping[str, str | bytes]) -> bytes:
        if any(metadata.get(header) is None for header in _HEADERS):
            # What a client's line-detection probe gets: expected, not worth a warning.
            raise AccessDeniedError(MISSING_METADATA, MISSING_METADATA, expected=True)
        if self.allowed is not None and metadata.get(PUBLIC_KEY_HEADER) not in self.allowed:
            raise _denied(NOT_RECOGNIZED)
        try:
            return verify_call(metadata)
        except AuthRefusedError as exc:
            raise _denied(exc.reason) from None

    def admit(
        self, method: str, metadata: Mapping[str, str | bytes], state: FleetState
    ) -> RequestCheck:
        """Judge a call from its metadata; return the check of its request."""
        key = self._verified_key(metadata)
        if method == "CreateNode":
            return functools.partial(_check_new_node, key, state)
        bound = state.key_to_node.get(key)
        if bound is None:
            raise _denied(INVALID_NODE_ID, "no node registered for this key")
        return functools.partial(_check_own_node, key, bound)

    def initial_metadata(self, request: Any) -> Mapping[str, str] | None:
        """Nothing: 1.15 involves no server key."""
        return None


def _check_new_node(key: bytes, state: FleetState, request: Any) -> bytes:
    bound = state.key_to_node.get(key)
    if bound is not None:
        raise _denied(KEY_IN_USE, f"the key is bound to node {bound}")
    return key


def _check_own_node(key: bytes, bound: int, request: Any) -> bytes:
    node = getattr(request, "node", None)
    node_id = 0 if node is None else node.node_id
    if node_id != bound:
        raise _denied(INVALID_NODE_ID, f"request names node {node_id}, the key node {bound}")
    return key
