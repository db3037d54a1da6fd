"""Tests for flwr_sdk.net.tls and flwr_sdk.server.tls_material, against real local servers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from flwr_sdk.errors import TLSError
from flwr_sdk.net.tls import (
    REASON_EXPIRED,
    REASON_HOSTNAME_MISMATCH,
    REASON_NOT_TLS,
    REASON_UNKNOWN_CA,
    classify_tls_error,
    client_ssl_context,
    load_root_certificates,
    resolve_insecure,
)
from flwr_sdk.server.tls_material import (
    TLSMaterial,
    make_ca,
    make_server_certificate,
    make_tls_material,
)

_Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def material() -> TLSMaterial:
    return make_tls_material()


@pytest.fixture(scope="module")
def other_material() -> TLSMaterial:
    return make_tls_material()


# --- tls_material ----------------------------------------------------------------------------


def test_material_certificates(material: TLSMaterial) -> None:
    ca = x509.load_pem_x509_certificate(material.ca_cert_pem)
    server = x509.load_pem_x509_certificate(material.server_cert_pem)
    assert server.issuer == ca.subject
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert material.server_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_material_write(material: TLSMaterial, tmp_path: Path) -> None:
    paths = material.write(tmp_path / "tls")
    assert paths.ca_cert.read_bytes() == material.ca_cert_pem
    assert paths.server_cert.read_bytes() == material.server_cert_pem
    assert paths.server_key.read_bytes() == material.server_key_pem
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600


def test_make_server_certificate_validation() -> None:
    ca = make_ca()
    with pytest.raises(ValueError, match="hosts"):
        make_server_certificate(ca, [])
    with pytest.raises(ValueError, match="not_after"):
        now = datetime.datetime.now(datetime.timezone.utc)
        make_server_certificate(ca, ["localhost"], not_before=now, not_after=now)


# --- load_root_certificates ------------------------------------------------------------------


def test_load_root_certificates_none() -> None:
    assert load_root_certificates(None) is None


def test_load_root_certificates_bytes_and_paths(material: TLSMaterial, tmp_path: Path) -> None:
    assert load_root_certificates(material.ca_cert_pem) == material.ca_cert_pem
    path = tmp_path / "ca.pem"
    path.write_bytes(material.ca_cert_pem)
    assert load_root_certificates(str(path)) == material.ca_cert_pem
    assert load_root_certificates(path) == material.ca_cert_pem
    bundle = material.ca_cert_pem + material.server_cert_pem
    assert load_root_certificates(bundle) == bundle


def test_load_root_certificates_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match="root_certificates") as info:
        load_root_certificates(str(missing))
    assert "does not exist" in str(info.value)
    assert str(missing) in str(info.value)


def test_load_root_certificates_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"root_certificates.*not a regular file"):
        load_root_certificates(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello",
        b"\x30\x82\x01\x0a",  # DER-ish
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_root_certificates_not_pem(content: bytes, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root_certificates: no PEM certificate"):
        load_root_certificates(content)
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="root_certificates: no PEM certificate in file"):
        load_root_certificates(str(path))


def test_load_root_certificates_unparseable_pem() -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match=r"root_certificates.*cannot be parsed"):
        load_root_certificates(broken)


def test_load_root_certificates_pem_text_as_str(material: TLSMaterial) -> None:
    with pytest.raises(ValueError, match=r"root_certificates is a str.*pass PEM content as bytes"):
        load_root_certificates(material.ca_cert_pem.decode())


@pytest.mark.parametrize("value", [42, ["ca.pem"], object()])
def test_load_root_certificates_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="root_certificates"):
        load_root_certificates(value)  # type: ignore[arg-type]


# --- resolve_insecure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("insecure", "root", "expected"),
    [
        (None, None, True),
        (None, b"pem", False),
        (False, None, False),
        (False, b"pem", False),
        (True, None, True),
    ],
)
def test_resolve_insecure(insecure: bool | None, root: bytes | None, expected: bool) -> None:
    assert resolve_insecure(insecure, root) is expected


def test_resolve_insecure_conflict() -> None:
    with pytest.raises(ValueError) as info:
        resolve_insecure(True, b"pem")
    assert "insecure" in str(info.value)
    assert "root_certificates" in str(info.value)


def test_resolve_insecure_type() -> None:
    with pytest.raises(TypeError, match="insecure"):
        resolve_insecure("yes", None)  # type: ignore[arg-type]


# --- client_ssl_context ----------------------------------------------------------------------


def test_client_ssl_context_settings(material: TLSMaterial) -> None:
    ctx = client_ssl_context(material.ca_cert_pem, alpn=["h2"])
    assert ctx.check_hostname
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.cert_store_stats()["x509_ca"] == 1
    system = client_ssl_context(None, alpn=[])
    assert system.check_hostname
    assert system.verify_mode == ssl.CERT_REQUIRED


def test_client_ssl_context_bad_arguments() -> None:
    with pytest.raises(TypeError, match="alpn"):
        client_ssl_context(None, alpn="h2")
    with pytest.raises(ValueError, match="root_certificates"):
        client_ssl_context(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", alpn=[]
        )


# --- real handshakes -------------------------------------------------------------------------


async def _drain_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await reader.read(1024)
    writer.close()


async def _connect(
    handler: _Handler,
    server_ssl: ssl.SSLContext | None,
    client_ssl: ssl.SSLContext,
    host: str = "127.0.0.1",
) -> ssl.SSLObject | BaseException:
    """Start a server on ``host``, connect with ``client_ssl``; return the SSL object or error."""
    server = await asyncio.start_server(handler, host, 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=client_ssl), timeout=5
            )
        except (OSError, asyncio.TimeoutError) as exc:
            return exc
        ssl_object = writer.get_extra_info("ssl_object")
        writer.close()
        return ssl_object  # type: ignore[no-any-return]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_handshake_succeeds(material: TLSMaterial, host: str) -> None:
    if host == "::1" and not _has_ipv6():
        pytest.skip("no IPv6 loopback")
    client = client_ssl_context(load_root_certificates(material.ca_cert_pem), alpn=["h2"])
    result = asyncio.run(_connect(_drain_and_close, material.server_ssl_context(), client, host))
    assert isinstance(result, ssl.SSLObject), result
    assert result.selected_alpn_protocol() == "h2"
    assert result.version() in ("TLSv1.2", "TLSv1.3")


def _classified(result: object, host: str = "127.0.0.1") -> TLSError:
    assert isinstance(result, BaseException), f"handshake unexpectedly succeeded: {result}"
    error = classify_tls_error(result, host=host)
    assert error is not None, f"not classified: {result!r}"
    assert host in str(error)
    return error


def test_unknown_ca(material: TLSMaterial, other_material: TLSMaterial) -> None:
    client = client_ssl_context(other_material.ca_cert_pem, alpn=["h2"])
    result = asyncio.run(_connect(_drain_and_close, material.server_ssl_context(), client))
    error = _classified(result)
    assert error.reason == REASON_UNKNOWN_CA
    assert "root_certificates" in str(error)


def test_self_signed_server_certificate(material: TLSMaterial) -> None:
    # The server presents the CA certificate itself (self-signed), the client trusts another CA.
    ca = make_ca()
    self_signed = TLSMaterial(
        ca_cert_pem=ca.cert_pem,
        server_cert_pem=ca.cert_pem,
        server_key_pem=ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    client = client_ssl_context(material.ca_cert_pem, alpn=[])
    result = asyncio.run(_connect(_drain_and_close, self_signed.server_ssl_context(), client))
    assert _classified(result).reason == REASON_UNKNOWN_CA


def test_hostname_mismatch() -> None:
    ca = make_ca()
    cert, key = make_server_certificate(ca, ["other.example"])
    mismatched = TLSMaterial(ca.cert_pem, cert, key)
    client = client_ssl_context(ca.cert_pem, alpn=["h2"])
    result = asyncio.run(_connect(_drain_and_close, mismatched.server_ssl_context(), client))
    error = _classified(result)
    assert error.reason == REASON_HOSTNAME_MISMATCH
    assert "'127.0.0.1'" in str(error)


def test_expired_certificate() -> None:
    ca = make_ca()
    utc = datetime.timezone.utc
    cert, key = make_server_certificate(
        ca,
        ["localhost", "127.0.0.1"],
        not_before=datetime.datetime(2020, 1, 1, tzinfo=utc),
        not_after=datetime.datetime(2020, 2, 1, tzinfo=utc),
    )
    expired = TLSMaterial(ca.cert_pem, cert, key)
    client = client_ssl_context(ca.cert_pem, alpn=["h2"])
    result = asyncio.run(_connect(_drain_and_close, expired.server_ssl_context(), client))
    error = _classified(result)
    assert error.reason == REASON_EXPIRED
    assert "expired" in str(error)


async def _plaintext_talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # What a plaintext HTTP/2 (gRPC) server does first: send its SETTINGS frame.
    writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    await writer.drain()
    await _drain_and_close(reader, writer)


async def _plaintext_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("handler", [_plaintext_talker, _plaintext_http])
def test_server_does_not_speak_tls(material: TLSMaterial, handler: _Handler) -> None:
    client = client_ssl_context(material.ca_cert_pem, alpn=["h2"])
    result = asyncio.run(_connect(handler, None, client))
    error = _classified(result)
    assert error.reason == REASON_NOT_TLS
    assert "insecure=True" in str(error)


def test_silent_plaintext_server_needs_handshake_hint(material: TLSMaterial) -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    client = client_ssl_context(material.ca_cert_pem, alpn=["h2"])
    result = asyncio.run(_connect(close_at_once, None, client))
    assert isinstance(result, ConnectionError)
    assert classify_tls_error(result, host="127.0.0.1") is None
    error = classify_tls_error(result, host="127.0.0.1", during_handshake=True)
    assert error is not None
    assert error.reason == REASON_NOT_TLS


def test_classify_follows_cause_chain_httpx(
    material: TLSMaterial, other_material: TLSMaterial
) -> None:
    async def run() -> BaseException:
        server = await asyncio.start_server(
            _drain_and_close, "127.0.0.1", 0, ssl=material.server_ssl_context(alpn=["http/1.1"])
        )
        port = server.sockets[0].getsockname()[1]
        ctx = client_ssl_context(other_material.ca_cert_pem, alpn=["http/1.1"])
        try:
            async with httpx.AsyncClient(verify=ctx) as client:
                await client.get(f"https://127.0.0.1:{port}/")
        except httpx.HTTPError as exc:
            return exc
        finally:
            server.close()
            await server.wait_closed()
        raise AssertionError("request unexpectedly succeeded")

    exc = asyncio.run(run())
    assert isinstance(exc, httpx.ConnectError)
    error = classify_tls_error(exc, host="127.0.0.1")
    assert error is not None
    assert error.reason == REASON_UNKNOWN_CA


@pytest.mark.parametrize(
    "exc", [ValueError("x"), ConnectionRefusedError(111, "refused"), asyncio.TimeoutError()]
)
def test_classify_ignores_non_tls_errors(exc: BaseException) -> None:
    assert classify_tls_error(exc, host="h") is None
