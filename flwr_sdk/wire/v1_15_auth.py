"""Node authentication of the Flower 1.15 Fleet API (grpc-rere): signed timestamps.

Every Fleet call, CreateNode included, carries three metadata entries:

* ``flwr-public-key-bin``: the node's EC public key as PEM SubjectPublicKeyInfo bytes
  (gRPC base64-encodes ``-bin`` values on the wire);
* ``flwr-timestamp``: the current time, ISO 8601 in UTC (``…+00:00``);
* ``flwr-signature-bin``: ECDSA-SHA256 over the ASCII timestamp, DER-encoded.

No request body is covered and no server key is involved. The SuperLink's check is
always on: it refuses a call without the three entries, a signature that does not
verify, a timestamp outside ``(-5 s, +15 s)`` of its clock, a key it does not list
(when it has an allow-list), and — on every call but CreateNode — a node id other than
the one the key registered. Without ``authentication_keys`` the client makes a fresh
SECP384R1 key pair per session.

:class:`SignedTimestampAuth` is the client side; :func:`verify_call` is the check,
which the reference server uses.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping

import betterproto2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.wire.base import Metadata, NodeAuth, NodeKeys, Rpc

__all__ = [
    "MAX_CLOCK_AHEAD",
    "MAX_CLOCK_BEHIND",
    "PUBLIC_KEY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AuthRefusedError",
    "SignedTimestampAuth",
    "public_key_pem",
    "sign_timestamp",
    "verify_call",
]

PUBLIC_KEY_HEADER = "flwr-public-key-bin"
TIMESTAMP_HEADER = "flwr-timestamp"
SIGNATURE_HEADER = "flwr-signature-bin"

MAX_CLOCK_BEHIND = 15.0
"""Seconds a timestamp may lag the verifier's clock."""
MAX_CLOCK_AHEAD = 5.0
"""Seconds a timestamp may run ahead of the verifier's clock."""

Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The key as PEM SubjectPublicKeyInfo bytes (what ``flwr-public-key-bin`` holds)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_timestamp(private_key: ec.EllipticCurvePrivateKey, timestamp: str) -> bytes:
    """DER ECDSA-SHA256 signature over the ASCII timestamp."""
    return private_key.sign(timestamp.encode("ascii"), ec.ECDSA(hashes.SHA256()))


class AuthRefusedError(ValueError):
    """A call's authentication metadata is refused; ``reason`` is the SuperLink's text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _single(metadata: Mapping[str, object], key: str) -> object:
    value = metadata.get(key)
    if value is None:
        raise AuthRefusedError("Missing authentication metadata")
    return value


KEY_CACHE_SIZE = 1 << 14
"""Verifying keys kept loaded (least recently used dropped): a 10,000-node swarm fits."""

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _verifying_key(pem: bytes) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """The EC key a ``flwr-public-key-bin`` value holds, and its canonical PEM.

    Each node signs every call with the same key: loading the PEM and re-encoding it
    once saves ~45 us of the ~430 us a P-384 check takes. Raises ``ValueError`` /
    ``TypeError`` for a value that is no EC public key (not cached: garbage is parsed
    again, and cannot push real keys out).
    """
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("not an EC key")
    return key, public_key_pem(key)


def verify_call(
    metadata: Mapping[str, object],
    now: datetime.datetime | None = None,
    *,
    max_behind: float = MAX_CLOCK_BEHIND,
    max_ahead: float = MAX_CLOCK_AHEAD,
) -> bytes:
    """Check a call's signed timestamp; return the caller's public key as PEM bytes.

    In order: the three entries present, the signature, a timezone-aware ISO 8601
    timestamp, and ``-max_ahead < now - timestamp < max_behind`` (defaults: 1.15's
    window; 1.42 passes its own).

    Raises:
        AuthRefusedError: with the SuperLink's reason ("Missing authentication
            metadata", "Invalid signature", "Invalid timestamp").

    """
    pem, stamp, signature = (
        _single(metadata, key) for key in (PUBLIC_KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    )
    if not isinstance(pem, bytes) or not isinstance(signature, bytes):
        raise AuthRefusedError("Missing authentication metadata")
    text = stamp.decode("ascii", "replace") if isinstance(stamp, bytes) else str(stamp)
    try:
        key, canonical = _verifying_key(pem)
        key.verify(signature, text.encode("ascii"), _ECDSA_SHA256)
    except (ValueError, TypeError, InvalidSignature, UnicodeEncodeError):
        raise AuthRefusedError("Invalid signature") from None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AuthRefusedError("Invalid timestamp") from None
    if moment.tzinfo is None:
        raise AuthRefusedError("Invalid timestamp")
    lag = ((now or _utc_now()) - moment).total_seconds()
    if not -max_ahead < lag < max_behind:
        raise AuthRefusedError("Invalid timestamp")
    return canonical


class SignedTimestampAuth(NodeAuth):
    """The client side of the 1.15 scheme, for one session."""

    def __init__(self, keys: NodeKeys | None, clock: Clock = _utc_now) -> None:
        if keys is None:
            private = ec.generate_private_key(ec.SECP384R1())
            keys = (private, private.public_key())
        self._private_key = keys[0]
        self._public_pem = public_key_pem(keys[1])
        self._clock = clock

    @property
    def public_key_pem(self) -> bytes:
        """The key every call presents (PEM SubjectPublicKeyInfo)."""
        return self._public_pem

    def call_metadata(self, rpc: Rpc, request: betterproto2.Message) -> Metadata:
        """The three entries, with a fresh timestamp and signature."""
        timestamp = self._clock().isoformat()
        return {
            PUBLIC_KEY_HEADER: self._public_pem,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_timestamp(self._private_key, timestamp),
        }
