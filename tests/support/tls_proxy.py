"""A small TLS-terminating TCP proxy: ``https://`` in front of a plaintext REST SuperLink.

The 1.12 SuperLink cannot serve its REST Fleet API over TLS (it hands certificate
*contents* to uvicorn as file names), so tests put this proxy in front of a plaintext
one. It accepts TLS (ALPN ``http/1.1``) on ``--listen-port`` and pipes bytes both ways
to ``--target-host:--target-port``.

    python tls_proxy.py --listen-host 127.0.0.1 --listen-port P \
        --target-host 127.0.0.1 --target-port F --cert server.pem --key server.key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(
    listen_host: str,
    listen_port: int,
    target_host: str,
    target_port: int,
    context: ssl.SSLContext,
) -> asyncio.Server:
    """Start the proxy; returns the listening server."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))

    return await asyncio.start_server(handle, listen_host, listen_port, ssl=context)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])

    async def run() -> None:
        server = await serve(
            args.listen_host, args.listen_port, args.target_host, args.target_port, context
        )
        print(f"tls proxy listening on {args.listen_host}:{args.listen_port}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
