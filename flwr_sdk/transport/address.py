"""Parsing of ``server_address`` for the gRPC and REST transports.

The rules follow Flower (host and port split at the last ``:``; port an int in 1..65535;
IPv6 literals in brackets) but are stricter, with errors that say what to write instead:

* an unbracketed IPv6 literal such as ``::1:8080`` is refused (Flower guesses
  ``[::1]:8080``; we ask for the brackets, because ``::1:8080`` is itself a valid IPv6
  address and the guess is ambiguous);
* brackets are only allowed around IPv6 literals;
* a REST address must be ``http://`` or ``https://`` + host + port, with no path, query,
  fragment or user info.

Hostnames are kept verbatim (no DNS lookup, no case folding). ``[::]:8080`` is accepted:
it is the IPv6 "any" address; whether connecting to it works is the caller's business.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["GrpcTarget", "RestTarget", "parse_grpc_address", "parse_rest_address"]

_PORT_RE = re.compile(r"[0-9]+")
_PATH_START_RE = re.compile(r"[/?#]")
# Characters that can never be part of a host name in server_address.
_FORBIDDEN_HOST_CHARS = frozenset("/\\@?#[]%")
_REST_SCHEMES = ("http", "https")
_NO_PORT = "has no port; write it as host:port, e.g. '127.0.0.1:9092' or '[::1]:9092'"


@dataclass(frozen=True)
class GrpcTarget:
    """Where a gRPC transport connects.

    ``host`` is what to pass to the socket layer: a hostname, an IPv4 address, or an IPv6
    address *without* brackets. ``authority`` is ``host:port`` with IPv6 in brackets.
    """

    host: str
    port: int
    is_ipv6: bool

    @property
    def authority(self) -> str:
        """``host:port``, e.g. ``127.0.0.1:8080``, ``localhost:8080`` or ``[::1]:8080``."""
        return _authority(self.host, self.port, self.is_ipv6)

    def __str__(self) -> str:
        return self.authority


@dataclass(frozen=True)
class RestTarget:
    """Where the REST transport sends requests.

    ``base_url`` is ``scheme://authority`` without a trailing slash; request paths such as
    ``/api/v0/fleet/create-node`` are appended to it.
    """

    scheme: str
    host: str
    port: int
    is_ipv6: bool

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 in brackets."""
        return _authority(self.host, self.port, self.is_ipv6)

    @property
    def base_url(self) -> str:
        """``http(s)://host:port``, no trailing slash."""
        return f"{self.scheme}://{self.authority}"

    @property
    def uses_tls(self) -> bool:
        """``True`` for ``https``."""
        return self.scheme == "https"

    def __str__(self) -> str:
        return self.base_url


def _authority(host: str, port: int, is_ipv6: bool) -> str:
    return f"[{host}]:{port}" if is_ipv6 else f"{host}:{port}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _parse_port(text: str, address: str) -> int:
    if not text:
        raise ValueError(f"server_address {address!r} {_NO_PORT}")
    if not _PORT_RE.fullmatch(text):
        raise ValueError(
            f"server_address {address!r} has an invalid port {text!r}; "
            "the port must be an integer in 1..65535"
        )
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"server_address {address!r} has port {port}, outside 1..65535")
    return port


def _parse_host_port(hostport: str, address: str) -> tuple[str, int, bool]:
    """Split ``host:port`` / ``[v6]:port``; return ``(host, port, is_ipv6)``."""
    if not hostport:
        raise ValueError(f"server_address {address!r} has an empty host")
    if any(ch.isspace() for ch in hostport):
        raise ValueError(f"server_address {address!r} must not contain whitespace")

    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise ValueError(f"server_address {address!r} has '[' without a matching ']'")
        inner, rest = hostport[1:close], hostport[close + 1 :]
        if not inner:
            raise ValueError(f"server_address {address!r} has an empty host")
        if not _is_ipv6(inner):
            raise ValueError(
                f"server_address {address!r}: brackets are only for IPv6 addresses, "
                f"and {inner!r} is not one; write hostnames and IPv4 addresses without "
                "brackets, e.g. 'localhost:9092'"
            )
        if not rest.startswith(":"):
            if rest:
                raise ValueError(
                    f"server_address {address!r} has unexpected text {rest!r} after ']'; "
                    f"write it as '[{inner}]:PORT'"
                )
            raise ValueError(
                f"server_address {address!r} has no port; write it as '[{inner}]:PORT'"
            )
        port = _parse_port(rest[1:], address)
        return str(ipaddress.IPv6Address(inner)), port, True

    if "]" in hostport:
        raise ValueError(f"server_address {address!r} has ']' without a matching '['")

    host, sep, port_text = hostport.rpartition(":")
    if not sep:
        raise ValueError(f"server_address {address!r} {_NO_PORT}")
    if ":" in host:
        # More than one ':' without brackets: an IPv6 literal (with or without port).
        readings = []
        if _is_ipv6(host) and _PORT_RE.fullmatch(port_text):
            readings.append(f"'[{host}]:{port_text}'")
        if _is_ipv6(hostport):
            readings.append(f"'[{hostport}]:PORT'")
        if not readings:
            raise ValueError(
                f"server_address {address!r} is not host:port (too many ':'); IPv6 "
                "addresses must be written in brackets, e.g. '[::1]:9092'"
            )
        raise ValueError(
            f"server_address {address!r} looks like an IPv6 address without brackets, "
            f"which is ambiguous; write it as {' or '.join(readings)}"
        )
    if not host:
        raise ValueError(f"server_address {address!r} has an empty host")
    bad = sorted(set(host) & _FORBIDDEN_HOST_CHARS)
    if bad:
        raise ValueError(
            f"server_address {address!r} has a host {host!r} containing {''.join(bad)!r}; "
            "expected a hostname or an IP address"
        )
    port = _parse_port(port_text, address)
    return host, port, False


def _require_str(server_address: object) -> str:
    if not isinstance(server_address, str):
        raise TypeError(
            f"server_address must be a str such as '127.0.0.1:9092', "
            f"got {type(server_address).__name__}"
        )
    return server_address


def parse_grpc_address(server_address: str) -> GrpcTarget:
    """Parse a gRPC ``server_address``: ``host:port``, ``a.b.c.d:port`` or ``[v6]:port``.

    Raises:
        TypeError: ``server_address`` is not a ``str``.
        ValueError: no port, port not an int in 1..65535, empty host, an IPv6 literal
            without brackets, brackets around something that is not IPv6, or a scheme /
            path (gRPC addresses have neither).

    """
    address = _require_str(server_address)
    if "://" in address:
        raise ValueError(
            f"server_address {address!r} has a URL scheme; gRPC addresses are plain "
            "host:port (e.g. '127.0.0.1:9092'); 'http://' addresses are for transport='rest'"
        )
    host, port, is_ipv6 = _parse_host_port(address, address)
    return GrpcTarget(host=host, port=port, is_ipv6=is_ipv6)


def parse_rest_address(server_address: str) -> RestTarget:
    """Parse a REST ``server_address``: ``http://host:port`` or ``https://host:port``.

    The scheme decides TLS. A single trailing ``/`` is tolerated and dropped; any other
    path, a query, a fragment or user info is refused (Flower cannot use them either).

    Raises:
        TypeError: ``server_address`` is not a ``str``.
        ValueError: missing or unsupported scheme, a path/query/fragment, or any
            host/port problem listed in :func:`parse_grpc_address`.

    """
    address = _require_str(server_address)
    scheme, sep, rest = address.partition("://")
    if not sep:
        raise ValueError(
            f"server_address {address!r} needs a scheme for transport='rest': "
            f"'http://{address}' or 'https://{address}'"
        )
    scheme_lower = scheme.lower()
    if scheme_lower not in _REST_SCHEMES:
        raise ValueError(
            f"server_address {address!r} has scheme {scheme!r}; transport='rest' supports "
            "only 'http' and 'https'"
        )
    path_start = _PATH_START_RE.search(rest)
    end = path_start.start() if path_start else len(rest)
    hostport, tail = rest[:end], rest[end:]
    if tail not in ("", "/"):
        raise ValueError(
            f"server_address {address!r} has a path, query or fragment ({tail!r}); "
            f"a REST server_address is only scheme://host:port, e.g. "
            f"'{scheme_lower}://{hostport}'"
        )
    if "@" in hostport:
        raise ValueError(f"server_address {address!r} must not contain user info ('@')")
    host, port, is_ipv6 = _parse_host_port(hostport, address)
    return RestTarget(scheme=scheme_lower, host=host, port=port, is_ipv6=is_ipv6)
