"""Transport security failures surface from start_client as TLSError saying what failed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection

from flwr_sdk import Client, Context, start_client_async
from flwr_sdk.errors import TLSError
from flwr_sdk.server.tls_material import TLSMaterial, make_ca, make_server_certificate

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _plain_h2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A plaintext HTTP/2 endpoint: sends its SETTINGS and waits."""
    conn = H2Connection(H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        await reader.read(65536)
    except ConnectionError:
        pass
    finally:
        writer.close()


def _client_fn(context: Context) -> Client:
    raise AssertionError("unreachable")


async def _run_against(
    handler: Handler, server_ssl: ssl.SSLContext | None, root: bytes
) -> TLSError:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TLSError) as info:
            await asyncio.wait_for(
                start_client_async(
                    server_address=f"127.0.0.1:{port}",
                    client_fn=_client_fn,
                    root_certificates=root,
                    max_retries=0,
                ),
                timeout=10,
            )
    finally:
        server.close()
        await server.wait_closed()
    return info.value


def _material(hosts: tuple[str, ...]) -> TLSMaterial:
    ca = make_ca()
    cert, key = make_server_certificate(ca, hosts)
    return TLSMaterial(ca.cert_pem, cert, key)


def test_unknown_certificate_authority() -> None:
    material = _material(("127.0.0.1",))
    other_ca = make_ca().cert_pem
    error = asyncio.run(_run_against(_plain_h2, material.server_ssl_context(), other_ca))
    assert error.reason == "unknown certificate authority"
    assert "127.0.0.1" in str(error)


def test_hostname_mismatch() -> None:
    material = _material(("server.example",))
    error = asyncio.run(
        _run_against(_plain_h2, material.server_ssl_context(), material.ca_cert_pem)
    )
    assert error.reason == "hostname mismatch"


def test_server_does_not_speak_tls() -> None:
    material = _material(("127.0.0.1",))
    error = asyncio.run(_run_against(_plain_h2, None, material.ca_cert_pem))
    assert error.reason == "server does not speak TLS"
