"""Node authentication of the Flower 1.42 Fleet API: signed timestamps on every call.

The scheme is 1.15's (:mod:`flwr_sdk.wire.v1_15_auth`, whose signing this module
reuses): the node's EC public key as PEM SubjectPublicKeyInfo, an ISO 8601 UTC
timestamp, and an ECDSA-SHA256 DER signature over the ASCII timestamp. What changed:

* it covers both Fleet transports and cannot be switched off: every call, RegisterNode
  and ActivateNode included, is signed; a node without ``authentication_keys`` makes a
  fresh SECP384R1 key pair per session (Flower's SuperNode does the same);
* gRPC metadata keeps 1.15's names (``flwr-public-key-bin`` and ``flwr-signature-bin``
  carry raw bytes, gRPC base64-encodes ``-bin`` values itself); over HTTP the headers
  are ``flwr-public-key`` and ``flwr-signature`` with standard base64 (with padding) of
  the same bytes, and ``flwr-timestamp`` is text on both;
* the SuperLink accepts a timestamp when ``-5 s < its clock - timestamp < 305 s``
  (1.15: 15 s), and binds the key to the node it registered or activated.

:class:`SignedCallAuth` is the client side.
"""

from __future__ import annotations

import base64
import hashlib

import betterproto2

from flwr_sdk.wire.base import NodeKeys, Rpc
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Clock,
    SignedTimestampAuth,
    _utc_now,
)

__all__ = [
    "HTTP_PUBLIC_KEY_HEADER",
    "HTTP_SIGNATURE_HEADER",
    "MAX_CLOCK_AHEAD",
    "MAX_CLOCK_BEHIND",
    "SignedCallAuth",
]

HTTP_PUBLIC_KEY_HEADER = "flwr-public-key"
HTTP_SIGNATURE_HEADER = "flwr-signature"

MAX_CLOCK_BEHIND = 305.0
"""Seconds a timestamp may lag the SuperLink's clock (1.15: 15)."""
MAX_CLOCK_AHEAD = 5.0
"""Seconds a timestamp may run ahead of the SuperLink's clock."""

_HTTP_NAMES = {
    PUBLIC_KEY_HEADER: HTTP_PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER: HTTP_SIGNATURE_HEADER,
    TIMESTAMP_HEADER: TIMESTAMP_HEADER,
}


class SignedCallAuth(SignedTimestampAuth):
    """The client side of the 1.42 scheme, for one session (both transports)."""

    def __init__(self, keys: NodeKeys | None, clock: Clock = _utc_now) -> None:
        super().__init__(keys, clock)
        self._user_keys = keys is not None

    @property
    def user_keys(self) -> bool:
        """Whether the keys are the user's (an operator-registered node)."""
        return self._user_keys

    @property
    def key_id(self) -> str | None:
        """Hex SHA-256 of the user's public key (PEM), or None for a session's own key."""
        return hashlib.sha256(self.public_key_pem).hexdigest() if self._user_keys else None

    def http_headers(self, rpc: Rpc, request: betterproto2.Message) -> dict[str, str]:
        """The three entries as HTTP headers: binary values base64, ``-bin`` dropped."""
        headers: dict[str, str] = {}
        for key, value in self.call_metadata(rpc, request).items():
            name = _HTTP_NAMES.get(key, key)
            headers[name] = (
                base64.standard_b64encode(value).decode("ascii")
                if isinstance(value, bytes)
                else value
            )
        return headers
