"""Tests for flwr_sdk.transport.address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flwr_sdk.transport.address import (
    GrpcTarget,
    RestTarget,
    parse_grpc_address,
    parse_rest_address,
)

# --- gRPC: accepted -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "host", "port", "is_ipv6", "authority"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080, False, "127.0.0.1:8080"),
        ("localhost:9092", "localhost", 9092, False, "localhost:9092"),
        ("my-host.example:1", "my-host.example", 1, False, "my-host.example:1"),
        ("MyHost.Example:65535", "MyHost.Example", 65535, False, "MyHost.Example:65535"),
        ("[::1]:8080", "::1", 8080, True, "[::1]:8080"),
        ("[::]:8080", "::", 8080, True, "[::]:8080"),
        ("[0:0:0:0:0:0:0:1]:9092", "::1", 9092, True, "[::1]:9092"),
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80, True, "[fe80::1%eth0]:80"),
        ("host:08080", "host", 8080, False, "host:8080"),
    ],
)
def test_grpc_address_accepted(
    address: str, host: str, port: int, is_ipv6: bool, authority: str
) -> None:
    target = parse_grpc_address(address)
    assert target == GrpcTarget(host=host, port=port, is_ipv6=is_ipv6)
    assert target.authority == authority
    assert str(target) == authority


# --- gRPC: refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("localhost", "has no port"),
        ("127.0.0.1", "has no port"),
        ("localhost:", "has no port"),
        ("[::1]", "has no port"),
        ("host:0", "outside 1..65535"),
        ("host:65536", "outside 1..65535"),
        ("host:70000", "outside 1..65535"),
        ("host:-1", "invalid port"),
        ("host:+80", "invalid port"),
        ("host:80a", "invalid port"),
        ("host:８０", "invalid port"),  # noqa: RUF001 - non-ASCII digits
        (":8080", "empty host"),
        ("[]:8080", "empty host"),
        ("", "empty host"),
        ("::1:8080", "'[::1]:8080'"),
        ("::1", "'[::1]:PORT'"),
        ("2001:db8::1:443", "'[2001:db8::1]:443'"),
        ("a:b:c", "too many ':'"),
        ("[localhost]:8080", "brackets are only for IPv6"),
        ("[127.0.0.1]:8080", "brackets are only for IPv6"),
        ("[::1:8080", "without a matching ']'"),
        ("::1]:8080", "without a matching '['"),
        ("[::1]8080", "unexpected text"),
        ("http://localhost:8080", "URL scheme"),
        ("host/path:80", "containing '/'"),
        ("user@host:80", "containing '@'"),
        ("local host:80", "whitespace"),
        (" localhost:80", "whitespace"),
    ],
)
def test_grpc_address_refused(address: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="server_address") as info:
        parse_grpc_address(address)
    assert fragment in str(info.value)


def test_unbracketed_ipv6_suggests_brackets() -> None:
    with pytest.raises(ValueError) as info:
        parse_grpc_address("::1:8080")
    message = str(info.value)
    assert "without brackets" in message
    assert "[::1]:8080" in message


@pytest.mark.parametrize("value", [8080, None, b"localhost:8080", ("localhost", 8080)])
def test_grpc_address_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="server_address must be a str"):
        parse_grpc_address(value)  # type: ignore[arg-type]


@given(
    ip=st.ip_addresses(v=4),
    port=st.integers(min_value=1, max_value=65535),
)
def test_grpc_ipv4_round_trip(ip: ipaddress.IPv4Address, port: int) -> None:
    target = parse_grpc_address(f"{ip}:{port}")
    assert (target.host, target.port, target.is_ipv6) == (str(ip), port, False)
    assert parse_grpc_address(target.authority) == target


@given(
    ip=st.ip_addresses(v=6),
    port=st.integers(min_value=1, max_value=65535),
)
def test_grpc_ipv6_round_trip(ip: ipaddress.IPv6Address, port: int) -> None:
    target = parse_grpc_address(f"[{ip.exploded}]:{port}")
    assert target.is_ipv6
    assert ipaddress.IPv6Address(target.host) == ip
    assert target.authority == f"[{ip}]:{port}"
    assert parse_grpc_address(target.authority) == target


@given(port=st.integers().filter(lambda p: not 1 <= p <= 65535))
def test_grpc_port_out_of_range(port: int) -> None:
    with pytest.raises(ValueError, match="server_address"):
        parse_grpc_address(f"localhost:{port}")


@given(text=st.text(max_size=30))
def test_grpc_parser_only_raises_value_error(text: str) -> None:
    try:
        target = parse_grpc_address(text)
    except ValueError as exc:
        assert "server_address" in str(exc)
    else:
        assert 1 <= target.port <= 65535
        assert target.host


# --- REST --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected", "base_url"),
    [
        (
            "http://127.0.0.1:9093",
            RestTarget("http", "127.0.0.1", 9093, False),
            "http://127.0.0.1:9093",
        ),
        (
            "https://localhost:9093",
            RestTarget("https", "localhost", 9093, False),
            "https://localhost:9093",
        ),
        ("http://[::1]:9095", RestTarget("http", "::1", 9095, True), "http://[::1]:9095"),
        ("HTTPS://[::1]:9095/", RestTarget("https", "::1", 9095, True), "https://[::1]:9095"),
        ("http://h:1/", RestTarget("http", "h", 1, False), "http://h:1"),
    ],
)
def test_rest_address_accepted(address: str, expected: RestTarget, base_url: str) -> None:
    target = parse_rest_address(address)
    assert target == expected
    assert target.base_url == base_url
    assert not target.base_url.endswith("/")
    assert target.uses_tls == (target.scheme == "https")
    assert str(target) == base_url


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1:9093", "needs a scheme"),
        ("ftp://h:21", "scheme 'ftp'"),
        ("grpc://h:1", "scheme 'grpc'"),
        ("http://h:1/api", "path, query or fragment"),
        ("http://h:1//", "path, query or fragment"),
        ("http://h:1?x=1", "path, query or fragment"),
        ("http://h:1#frag", "path, query or fragment"),
        ("http://user@h:1", "user info"),
        ("http://h", "has no port"),
        ("http://:80", "empty host"),
        ("http://", "empty host"),
        ("http://h:0", "outside 1..65535"),
        ("http://::1:9095", "without brackets"),
        ("http://[h]:80", "brackets are only for IPv6"),
    ],
)
def test_rest_address_refused(address: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="server_address") as info:
        parse_rest_address(address)
    assert fragment in str(info.value)


def test_rest_address_type_error() -> None:
    with pytest.raises(TypeError, match="server_address"):
        parse_rest_address(None)  # type: ignore[arg-type]


def test_targets_are_immutable() -> None:
    target = parse_grpc_address("localhost:1")
    with pytest.raises(AttributeError):
        target.port = 2  # type: ignore[misc]
