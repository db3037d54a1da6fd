"""Throwaway TLS material: a private certificate authority and server certificates.

Used by tests and by the demo's ``--tls`` flag to run a local server over TLS without any
external tooling. Keys are ECDSA P-256 (fast to generate). Nothing here is meant for
production certificates.

Example::

    material = make_tls_material(["localhost", "127.0.0.1", "::1"])
    paths = material.write(directory)          # ca.pem, server.pem, server.key
    client_root_certificates = material.ca_cert_pem
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flwr_sdk.net.tls import server_ssl_context

__all__ = [
    "DEFAULT_HOSTS",
    "CertificateAuthority",
    "TLSMaterial",
    "TLSPaths",
    "make_ca",
    "make_server_certificate",
    "make_tls_material",
]

#: Names a local test server is reachable under.
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA certificate and its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM-encoded (what clients pass as ``root_certificates``)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


class TLSPaths(NamedTuple):
    """Files written by :meth:`TLSMaterial.write`."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes for a CA certificate, a server certificate issued by it and the server key."""

    ca_cert_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes

    def write(self, directory: str | os.PathLike[str]) -> TLSPaths:
        """Write ``ca.pem``, ``server.pem`` and ``server.key`` (mode 0600) into ``directory``.

        The directory is created if needed. Returns the three paths.
        """
        base = Path(directory)
        base.mkdir(parents=True, exist_ok=True)
        paths = TLSPaths(base / "ca.pem", base / "server.pem", base / "server.key")
        paths.ca_cert.write_bytes(self.ca_cert_pem)
        paths.server_cert.write_bytes(self.server_cert_pem)
        fd = os.open(paths.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(self.server_key_pem)
        return paths

    def server_ssl_context(self, *, alpn: Sequence[str] = ("h2",)) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for a server presenting this certificate (no client auth).

        ``alpn`` lists the protocols offered via ALPN (``("h2",)`` for gRPC; pass
        ``("http/1.1",)`` for an HTTP/1.1 server or ``()`` for none).
        """
        return server_ssl_context(self.server_cert_pem, self.server_key_pem, alpn=alpn)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(
    common_name: str = "flwr-sdk throwaway CA",
    *,
    valid_for: datetime.timedelta = datetime.timedelta(days=30),
) -> CertificateAuthority:
    """Create a self-signed certificate authority valid from one day ago for ``valid_for``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate=certificate, private_key=key)


def _subject_alternative_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not isinstance(host, str) or not host:
            raise ValueError(f"hosts must be non-empty strings, got {host!r}")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    if not names:
        raise ValueError("hosts must name at least one DNS name or IP address")
    return names


def make_server_certificate(
    ca: CertificateAuthority,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """Issue a server certificate from ``ca`` for ``hosts``; return ``(cert_pem, key_pem)``.

    Each host becomes a subjectAltName entry: IP addresses (``127.0.0.1``, ``::1``) as IP
    entries, everything else as DNS names. The validity defaults to [now - 1 day,
    now + 30 days]; pass ``not_before``/``not_after`` (timezone-aware) to make e.g. an
    expired certificate. The key is returned unencrypted in PKCS#8 PEM.
    """
    san = _subject_alternative_names(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    start = not_before if not_before is not None else now - _ONE_DAY
    end = not_after if not_after is not None else now + datetime.timedelta(days=30)
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    first = san[0].value
    common_name = str(first)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def make_tls_material(hosts: Iterable[str] = DEFAULT_HOSTS) -> TLSMaterial:
    """Create a fresh CA and a server certificate for ``hosts`` issued by it."""
    ca = make_ca()
    cert_pem, key_pem = make_server_certificate(ca, hosts)
    return TLSMaterial(ca_cert_pem=ca.cert_pem, server_cert_pem=cert_pem, server_key_pem=key_pem)
