"""Server side of Flower 1.12 node authentication (grpc-rere Fleet API).

What the SuperLink checks, and so do we (every failure is ``UNAUTHENTICATED "Access
denied"``):

* ``public-key`` present on every call and on the allow-list (compared as PEM
  SubjectPublicKeyInfo bytes);
* every call but ``CreateNode`` carries ``auth-token`` = HMAC-SHA256 over the
  deterministic serialization of the parsed request, keyed with the ECDH/HKDF key shared
  between that public key and the server key (see :mod:`flwr_sdk.wire.v1_12_auth`);
* the node bound to the key must be the node the request is about: ``node.node_id`` for
  DeleteNode / Ping / PullTaskIns / GetFab, the producer of the first TaskRes for
  PushTaskRes (an empty list is refused), and for GetRun the node must be online.

``CreateNode`` answers with the server's ``public-key`` in its initial metadata.
Differences from the 1.12 SuperLink: a ``public-key`` or ``auth-token`` that is not valid
base64url is refused with ``UNAUTHENTICATED`` too (the SuperLink fails with ``UNKNOWN``).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.server.fleet_grpc import ACCESS_DENIED, AccessDeniedError, RequestCheck
from flwr_sdk.server.fleet_state import FleetState
from flwr_sdk.wire.v1_12_auth import (
    AUTH_TOKEN_HEADER,
    PUBLIC_KEY_HEADER,
    public_key_to_header,
    shared_hmac_key,
    verify_token,
)

__all__ = [
    "ACCESS_DENIED",
    "AccessDeniedError",
    "NodeAuthenticator",
    "load_public_keys",
    "pem_public_bytes",
]


def pem_public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """A public key as PEM SubjectPublicKeyInfo bytes (how keys are compared)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_keys(source: str | Path | Iterable[str]) -> list[ec.EllipticCurvePublicKey]:
    """Load EC public keys: a CSV file or an iterable of OpenSSH / PEM key texts.

    In the CSV file every cell is one OpenSSH key line (as the SuperLink reads
    ``--auth-list-public-keys``).
    """
    if isinstance(source, (str, Path)) and Path(source).is_file():
        cells = [
            cell.strip()
            for line in Path(source).read_text().splitlines()
            for cell in line.split(",")
            if cell.strip()
        ]
    elif isinstance(source, (str, Path)):
        raise FileNotFoundError(f"no such public-key list: {source}")
    else:
        cells = [text.strip() for text in source if text.strip()]
    keys: list[ec.EllipticCurvePublicKey] = []
    for cell in cells:
        data = cell.encode()
        key = (
            serialization.load_pem_public_key(data)
            if data.startswith(b"-----BEGIN")
            else serialization.load_ssh_public_key(data)
        )
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("node public keys must be EC keys")
        keys.append(key)
    return keys


def _header(metadata: Mapping[str, str | bytes], name: str) -> str | None:
    value = metadata.get(name)
    if value is None:
        return None
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


@dataclass
class NodeAuthenticator:
    """The allow-list, the server key pair and the per-key HMAC keys."""

    private_key: ec.EllipticCurvePrivateKey
    allowed: set[bytes]
    _hmac_keys: dict[bytes, bytes] = field(default_factory=dict)

    answers_every_fleet_method = False
    """1.12's interceptor leaves unknown methods to gRPC (``UNIMPLEMENTED`` here)."""

    @classmethod
    def create(
        cls,
        private_key: ec.EllipticCurvePrivateKey,
        allowed_public_keys: Iterable[ec.EllipticCurvePublicKey],
    ) -> NodeAuthenticator:
        """Build from the server's private key and the nodes' public keys."""
        return cls(private_key, {pem_public_bytes(k) for k in allowed_public_keys})

    @property
    def public_key_header(self) -> str:
        """The server's ``public-key`` value (sent with CreateNode's initial metadata)."""
        return public_key_to_header(self.private_key.public_key())

    def _client_key(self, metadata: Mapping[str, str | bytes]) -> bytes:
        value = _header(metadata, PUBLIC_KEY_HEADER)
        if value is None:
            raise AccessDeniedError("no public-key header")
        try:
            pem = base64.urlsafe_b64decode(value.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise AccessDeniedError("public-key is not base64url") from None
        if pem not in self.allowed:
            raise AccessDeniedError("public key not on the allow-list")
        return pem

    def _hmac_key(self, pem: bytes) -> bytes:
        key = self._hmac_keys.get(pem)
        if key is None:
            public = serialization.load_pem_public_key(pem)
            assert isinstance(public, ec.EllipticCurvePublicKey)
            key = shared_hmac_key(self.private_key, public)
            self._hmac_keys[pem] = key
        return key

    def admit(
        self, method: str, metadata: Mapping[str, str | bytes], state: FleetState
    ) -> RequestCheck:
        """Everything 1.12 checks needs the request (the HMAC covers it): see :meth:`check`."""
        return functools.partial(self.check, metadata=metadata, state=state)

    def check(self, request: Any, metadata: Mapping[str, str | bytes], state: FleetState) -> bytes:
        """Authenticate one call; return the caller's public key (PEM) or raise."""
        pem = self._client_key(metadata)
        if isinstance(request, pb.CreateNodeRequest):
            return pem
        token = _header(metadata, AUTH_TOKEN_HEADER)
        if token is None:
            raise AccessDeniedError("no auth-token header")
        if not verify_token(self._hmac_key(pem), request, token):
            raise AccessDeniedError("auth-token does not verify")
        bound = state.key_to_node.get(pem)
        if bound is None:
            raise AccessDeniedError("no node registered for this key")
        subject = _SUBJECTS.get(type(request))
        if subject is not None:
            allowed, why = subject
            if not allowed(request, bound, state):
                raise AccessDeniedError(why)
        return pem

    def initial_metadata(self, request: Any) -> Mapping[str, str] | None:
        """CreateNode answers with the server's ``public-key``."""
        if isinstance(request, pb.CreateNodeRequest):
            return {PUBLIC_KEY_HEADER: self.public_key_header}
        return None


def _about_own_node(request: Any, bound: int, state: FleetState) -> bool:
    node: pb.Node | None = request.node
    return node is not None and node.node_id == bound


def _produced_by_own_node(request: pb.PushTaskResRequest, bound: int, state: FleetState) -> bool:
    first = request.task_res_list[0] if request.task_res_list else None
    producer = first.task.producer if first and first.task else None
    return producer is not None and producer.node_id == bound


def _run_member(request: pb.GetRunRequest, bound: int, state: FleetState) -> bool:
    return request.run_id in state.runs and state.is_online(bound)


_SUBJECTS: dict[type[Any], tuple[Callable[[Any, int, FleetState], bool], str]] = {
    pb.DeleteNodeRequest: (_about_own_node, "request is about another node"),
    pb.PingRequest: (_about_own_node, "request is about another node"),
    pb.PullTaskInsRequest: (_about_own_node, "request is about another node"),
    pb.GetFabRequest: (_about_own_node, "request is about another node"),
    pb.PushTaskResRequest: (_produced_by_own_node, "TaskRes produced by another node"),
    pb.GetRunRequest: (_run_member, "node is not part of the run"),
}
"""Which node a request must be about, per request type (CreateNode has none)."""
