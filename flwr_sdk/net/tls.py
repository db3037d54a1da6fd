"""TLS helpers shared by the transports.

* :func:`load_root_certificates` turns the user's ``root_certificates`` argument (PEM bytes
  or a path) into validated PEM bytes.
* :func:`resolve_insecure` applies Flower's rule for ``insecure=None``.
* :func:`client_ssl_context` builds the client-side ``ssl.SSLContext`` (gRPC: ALPN ``h2``).
* :func:`classify_tls_error` turns a failed handshake into a :class:`~flwr_sdk.errors.TLSError`
  that says which check failed and for which host.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from flwr_sdk.errors import TLSError

__all__ = [
    "REASON_EXPIRED",
    "REASON_HANDSHAKE_FAILED",
    "REASON_HOSTNAME_MISMATCH",
    "REASON_NOT_TLS",
    "REASON_NOT_YET_VALID",
    "REASON_UNKNOWN_CA",
    "REASON_VERIFICATION_FAILED",
    "classify_tls_error",
    "client_ssl_context",
    "load_root_certificates",
    "resolve_insecure",
    "server_ssl_context",
]

#: ``TLSError.reason`` values produced by :func:`classify_tls_error`.
REASON_UNKNOWN_CA = "unknown certificate authority"
REASON_HOSTNAME_MISMATCH = "hostname mismatch"
REASON_EXPIRED = "certificate expired"
REASON_NOT_YET_VALID = "certificate not yet valid"
REASON_VERIFICATION_FAILED = "certificate verification failed"
REASON_NOT_TLS = "server does not speak TLS"
REASON_HANDSHAKE_FAILED = "TLS handshake failed"

_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"

_UNKNOWN_CA_TEXT = (
    "TLS certificate of {host} is not trusted: it was not issued by a certificate authority in "
    "root_certificates (or the system trust store), or it is self-signed ({detail}). Pass the "
    "server's CA certificate as root_certificates."
)
_HOSTNAME_MISMATCH_TEXT = (
    "TLS certificate does not match the host {host!r} ({detail}). Connect using a name or IP "
    "address listed in the certificate's subjectAltName."
)
# OpenSSL X509_V_ERR_* code (stable across OpenSSL 1.1 and 3.x) -> (reason, message).
_VERIFY_FAILURES: dict[int, tuple[str, str]] = {
    2: (REASON_UNKNOWN_CA, _UNKNOWN_CA_TEXT),  # UNABLE_TO_GET_ISSUER_CERT
    18: (REASON_UNKNOWN_CA, _UNKNOWN_CA_TEXT),  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: (REASON_UNKNOWN_CA, _UNKNOWN_CA_TEXT),  # SELF_SIGNED_CERT_IN_CHAIN
    20: (REASON_UNKNOWN_CA, _UNKNOWN_CA_TEXT),  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: (REASON_UNKNOWN_CA, _UNKNOWN_CA_TEXT),  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: (REASON_HOSTNAME_MISMATCH, _HOSTNAME_MISMATCH_TEXT),  # HOSTNAME_MISMATCH
    63: (REASON_HOSTNAME_MISMATCH, _HOSTNAME_MISMATCH_TEXT),  # EMAIL_MISMATCH
    64: (REASON_HOSTNAME_MISMATCH, _HOSTNAME_MISMATCH_TEXT),  # IP_ADDRESS_MISMATCH
    10: (REASON_EXPIRED, "TLS certificate of {host} has expired ({detail})."),  # CERT_HAS_EXPIRED
    9: (
        REASON_NOT_YET_VALID,
        "TLS certificate of {host} is not valid yet ({detail}); check the clocks.",
    ),
}
_OTHER_VERIFY_FAILURE = (
    REASON_VERIFICATION_FAILED,
    "TLS certificate of {host} failed verification ({detail}).",
)

# ssl.SSLError.reason values meaning "the bytes we got back are not TLS records".
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "UNEXPECTED_EOF_WHILE_READING",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "UNKNOWN_PROTOCOL",
    }
)


def load_root_certificates(
    root_certificates: bytes | str | os.PathLike[str] | None,
) -> bytes | None:
    """Return validated PEM bytes for ``root_certificates``, or ``None``.

    ``bytes`` are taken as PEM content; a ``str`` or ``os.PathLike`` is a path to a PEM
    file (as in Flower). The content must contain at least one PEM certificate that
    ``cryptography`` can parse.

    Raises:
        TypeError: ``root_certificates`` has another type.
        ValueError: the file does not exist or cannot be read, or the content holds no
            parseable PEM certificate.

    """
    if root_certificates is None:
        return None
    if isinstance(root_certificates, bytes | bytearray | memoryview):
        data = bytes(root_certificates)
        source = "the given bytes"
    elif isinstance(root_certificates, str | os.PathLike):
        data, source = _read_certificate_file(root_certificates)
    else:
        raise TypeError(
            "root_certificates must be PEM bytes, a file path (str or os.PathLike) or None, "
            f"got {type(root_certificates).__name__}"
        )
    _validate_pem_certificates(data, source)
    return data


def _read_certificate_file(path_like: str | os.PathLike[str]) -> tuple[bytes, str]:
    text = os.fspath(path_like)
    if not isinstance(text, str):  # a PathLike returning bytes
        raise TypeError("root_certificates path must be a str path, not bytes")
    if text == "":
        raise ValueError("root_certificates is an empty path")
    if text.lstrip().startswith("-----BEGIN"):
        raise ValueError(
            "root_certificates is a str, which is read as a file path, but it looks like PEM "
            "content; pass PEM content as bytes (e.g. pem_text.encode())"
        )
    path = Path(text)
    if not path.exists():
        raise ValueError(f"root_certificates file {text!r} does not exist")
    if not path.is_file():
        raise ValueError(f"root_certificates path {text!r} is not a regular file")
    try:
        return path.read_bytes(), f"file {text!r}"
    except OSError as exc:
        raise ValueError(f"root_certificates file {text!r} cannot be read: {exc}") from exc


def _validate_pem_certificates(data: bytes, source: str) -> None:
    if _PEM_CERT_MARKER not in data:
        raise ValueError(
            f"root_certificates: no PEM certificate in {source} (expected a "
            "'-----BEGIN CERTIFICATE-----' block; convert DER files with "
            "'openssl x509 -inform der -in cert.der -out cert.pem')"
        )
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(
            f"root_certificates: {source} contains a PEM certificate block that cannot be "
            f"parsed: {exc}"
        ) from exc


def resolve_insecure(
    insecure: bool | None,
    root_certificates: bytes | str | os.PathLike[str] | None,
) -> bool:
    """Decide whether a gRPC connection is plaintext (``True``) or TLS (``False``).

    ``insecure=None`` means "insecure unless ``root_certificates`` is given" (Flower's
    rule). ``insecure=False`` without root certificates uses TLS with the system trust
    store.

    Raises:
        TypeError: ``insecure`` is not a bool or None.
        ValueError: ``insecure=True`` together with ``root_certificates``.

    """
    if insecure is not None and not isinstance(insecure, bool):
        raise TypeError(f"insecure must be True, False or None, got {type(insecure).__name__}")
    if insecure is None:
        return root_certificates is None
    if insecure and root_certificates is not None:
        raise ValueError(
            "insecure=True conflicts with root_certificates: a plaintext connection does not "
            "use certificates; drop root_certificates, or set insecure=False (or None) for TLS"
        )
    return insecure


def client_ssl_context(root_pem: bytes | None, *, alpn: Sequence[str]) -> ssl.SSLContext:
    """Build a client ``ssl.SSLContext`` that verifies the server.

    Args:
        root_pem: PEM CA certificates to trust (from :func:`load_root_certificates`); with
            ``None`` the system trust store is used.
        alpn: protocols to offer via ALPN: ``["h2"]`` for gRPC, ``["http/1.1"]`` or ``[]``
            for httpx.

    Certificate and hostname verification are on; the minimum version is TLS 1.2.

    """
    if isinstance(alpn, str) or not all(isinstance(p, str) and p for p in alpn):
        raise TypeError("alpn must be a sequence of non-empty protocol names, e.g. ['h2']")
    try:  # with cadata=None: the system trust store
        cadata = None if root_pem is None else root_pem.decode("ascii")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=cadata)
    except (UnicodeDecodeError, ssl.SSLError) as exc:
        raise ValueError(f"root_certificates: cannot load the PEM certificates: {exc}") from exc
    # Purpose.SERVER_AUTH already sets check_hostname=True and verify_mode=CERT_REQUIRED.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from / while handling, breadth first."""
    seen: list[BaseException] = []
    queue: list[BaseException] = [exc]
    while queue and len(seen) < 16:
        current = queue.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        queue.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def classify_tls_error(
    exc: BaseException, *, host: str, during_handshake: bool = False
) -> TLSError | None:
    """Translate a TLS failure into a :class:`~flwr_sdk.errors.TLSError`, else ``None``.

    ``exc`` may be the ssl error itself or an exception raised from it (e.g.
    ``httpx.ConnectError``); its ``__cause__``/``__context__`` chain is searched.

    Reasons: ``"unknown certificate authority"`` (self-signed or untrusted issuer),
    ``"hostname mismatch"``, ``"certificate expired"``, ``"certificate not yet valid"``,
    ``"certificate verification failed"`` (other verification errors),
    ``"server does not speak TLS"`` (the reply was not a TLS record) and
    ``"TLS handshake failed"`` (any other ``ssl.SSLError``).

    With ``during_handshake=True`` the caller asserts that ``exc`` was raised while opening
    a TLS connection; then a connection reset or EOF (asyncio reports a peer that closes
    during the handshake as ``ConnectionResetError``) also counts as "server does not
    speak TLS", since a TLS server would answer with an alert instead.
    """
    chain = _causes(exc)
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            return _classify_verification(err, host)
    for err in chain:
        if isinstance(err, ssl.SSLError):
            reason = getattr(err, "reason", None)
            if reason in _NOT_TLS_REASONS:
                return _not_tls(host, f"{err}")
            return TLSError(
                f"TLS handshake with {host} failed: {err}", reason=REASON_HANDSHAKE_FAILED
            )
    if during_handshake:
        for err in chain:
            if isinstance(err, ConnectionResetError | EOFError | ConnectionAbortedError):
                return _not_tls(host, f"the server closed the connection ({err!r})")
    return None


def _not_tls(host: str, detail: str) -> TLSError:
    return TLSError(
        f"TLS handshake with {host} failed: the server does not speak TLS ({detail}). Is it "
        "running without TLS? Then connect with insecure=True (or an http:// address for REST).",
        reason=REASON_NOT_TLS,
    )


def _classify_verification(err: ssl.SSLCertVerificationError, host: str) -> TLSError:
    code = getattr(err, "verify_code", 0)  # 0: X509_V_OK, i.e. no code
    detail = getattr(err, "verify_message", None) or str(err)
    reason, text = _VERIFY_FAILURES.get(code, _OTHER_VERIFY_FAILURE)
    return TLSError(text.format(host=host, detail=detail), reason=reason)


def server_ssl_context(
    certificate_chain: bytes, private_key: bytes, *, alpn: Sequence[str]
) -> ssl.SSLContext:
    """A server ``SSLContext`` (TLS 1.2+, no client certificates) for a PEM chain and key.

    ``alpn`` lists the protocols offered via ALPN (``("h2",)`` for gRPC,
    ``("http/1.1",)`` for REST, ``()`` for none). ``ssl`` loads certificates only from
    files, so both are written to a private temporary folder (key mode 0600) and removed.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="flwr-sdk-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(certificate_chain)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(private_key)
        context.load_cert_chain(cert, key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
