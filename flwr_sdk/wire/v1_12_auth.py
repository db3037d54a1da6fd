"""Node authentication of the Flower 1.12 Fleet API (grpc-rere), both sides.

:class:`HmacNodeAuth` is the client side as a :class:`~flwr_sdk.wire.base.NodeAuth`;
the functions below are the scheme itself, which the reference server uses too.

The scheme, in short:

* every Fleet call carries ``public-key`` = base64url of the node's PEM
  SubjectPublicKeyInfo (with ``=`` padding);
* ``CreateNode``'s response carries the SuperLink's ``public-key`` in its initial
  metadata; both sides derive a shared key: ECDH (node private key, peer public key) →
  HKDF-SHA256 (32 bytes, no salt, no info) → base64url text, whose ASCII bytes are the
  HMAC key;
* every call but ``CreateNode`` also carries ``auth-token`` = base64url of
  HMAC-SHA256(key, deterministic serialization of the request), where deterministic means
  map entries in the order protobuf's upb runtime gives them in deterministic mode, at
  every level (see ``_map_key_order``). Nothing else (method, time) is covered.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from typing import Any, TypeVar

import betterproto2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flwr_sdk.errors import AuthenticationError
from flwr_sdk.net.fast_codec import encode_message_chunks, fast_codec_for
from flwr_sdk.wire.base import Metadata, NodeAuth, NodeKeys, Rpc

PUBLIC_KEY_HEADER = "public-key"
AUTH_TOKEN_HEADER = "auth-token"

M = TypeVar("M", bound=betterproto2.Message)


def public_key_to_header(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``public-key`` header value for a key."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(pem).decode("ascii")


def public_key_from_header(value: str | bytes) -> ec.EllipticCurvePublicKey:
    """Load the EC public key a ``public-key`` header carries; ValueError if invalid."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    try:
        pem = base64.urlsafe_b64decode(raw)
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid public-key header: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the public-key header does not hold an EC public key")
    return key


def shared_hmac_key(
    private_key: ec.EllipticCurvePrivateKey, peer_public_key: ec.EllipticCurvePublicKey
) -> bytes:
    """The HMAC key both sides derive: base64url(HKDF-SHA256(ECDH secret)) as ASCII."""
    secret = private_key.exchange(ec.ECDH(), peer_public_key)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=None).derive(secret)
    return base64.urlsafe_b64encode(derived)


def _map_key_order(key: Any) -> Any:
    """Sort key of upb's deterministic map order (what Flower's protobuf uses).

    String keys compare byte-wise as UTF-8, but a key sorts *after* every longer key it is
    a prefix of (``["aa", "abc", "ab", "a", "b", ""]``); 0xFF never occurs in UTF-8, so
    appending it gives exactly that order. Other keys sort naturally.
    """
    if isinstance(key, str):
        return key.encode("utf-8") + b"\xff"
    return key


def _sorted_maps(value: Any) -> Any:
    if isinstance(value, betterproto2.Message):
        return _with_sorted_maps(value)
    if isinstance(value, dict):
        return {k: _sorted_maps(value[k]) for k in sorted(value, key=_map_key_order)}
    if isinstance(value, list):
        return [_sorted_maps(v) for v in value]
    return value


def _with_sorted_maps(message: M) -> M:
    # betterproto2 messages are dataclasses.
    instance: Any = message
    changes = {f.name: _sorted_maps(getattr(message, f.name)) for f in dataclasses.fields(instance)}
    copy: M = dataclasses.replace(instance, **changes)
    return copy


def deterministic_bytes(message: betterproto2.Message) -> bytes:
    """Serialize with map entries sorted by key (protobuf's deterministic mode)."""
    return bytes(_with_sorted_maps(message))


def auth_token(hmac_key: bytes, request: betterproto2.Message | bytes) -> str:
    """The ``auth-token`` header value for a request (or its deterministic bytes).

    Messages the generated fast codec covers (e.g. ``PushTaskResRequest`` with large
    tensors) are hashed piece by piece from its deterministic chunked encoding, which
    equals :func:`deterministic_bytes`, without materialising the message.
    """
    mac = hmac.new(hmac_key, digestmod=hashlib.sha256)
    if isinstance(request, bytes):
        mac.update(request)
    elif fast_codec_for(type(request)) is not None:
        for piece in encode_message_chunks(request, deterministic=True).pieces:
            mac.update(piece)
    else:
        mac.update(deterministic_bytes(request))
    digest = mac.digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def verify_token(hmac_key: bytes, request: betterproto2.Message | bytes, token: str) -> bool:
    """Whether ``token`` is the right ``auth-token`` for ``request`` (constant time)."""
    return hmac.compare_digest(auth_token(hmac_key, request), token)


class HmacNodeAuth(NodeAuth):
    """The client side of the 1.12 scheme, for one session.

    Every call carries ``public-key``; CreateNode's response metadata brings the
    SuperLink's key, from which the HMAC key is derived; every later call carries
    ``auth-token``. A SuperLink that sends no key has no node authentication: the
    session is refused with :class:`~flwr_sdk.errors.AuthenticationError` (Flower 1.12
    leaves a half-registered node and fails later).
    """

    response_metadata_key = PUBLIC_KEY_HEADER

    def __init__(self, keys: NodeKeys) -> None:
        self._private_key = keys[0]
        self._public_key_header = public_key_to_header(keys[1])
        self._hmac_key: bytes | None = None

    def call_metadata(self, rpc: Rpc, request: betterproto2.Message) -> Metadata:
        """``public-key``, and ``auth-token`` once the HMAC key is known."""
        metadata: Metadata = {PUBLIC_KEY_HEADER: self._public_key_header}
        if self._hmac_key is not None:
            metadata[AUTH_TOKEN_HEADER] = auth_token(self._hmac_key, request)
        return metadata

    def take_response_metadata(self, values: list[str]) -> None:
        """Derive the HMAC key from the ``public-key`` CreateNode's response carries.

        Only the first key counts (the SuperLink sends it with CreateNode only).
        """
        if not values or self._hmac_key is not None:
            return
        try:
            server_key = public_key_from_header(values[-1])
            self._hmac_key = shared_hmac_key(self._private_key, server_key)
        except ValueError as exc:
            raise AuthenticationError(f"the SuperLink sent an unusable public key: {exc}") from exc

    def check_registered(self) -> None:
        """Refuse a SuperLink that did not send its key (it has no node auth)."""
        if self._hmac_key is None:
            raise AuthenticationError(
                "authentication_keys were given, but the SuperLink sent no public key in "
                "its CreateNode response: it does not have node authentication enabled "
                "(start it with --auth-list-public-keys, --auth-superlink-private-key and "
                "--auth-superlink-public-key, or connect without authentication_keys)"
            )
