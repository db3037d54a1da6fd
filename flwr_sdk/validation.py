"""Up-front validation of every ``start_client`` argument.

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad
value) with a message that names the argument and says what is allowed. Nothing is
logged-and-ignored: an option that a transport cannot honour is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.clientapp.app import ClientApp, MessageApp
from flwr_sdk.clientapp.client import Client
from flwr_sdk.clientapp.numpy_client import NumPyClient
from flwr_sdk.common.context import Context
from flwr_sdk.constants import AUTH_TRANSPORTS, DEFAULT_TRANSPORT, FLEET_TRANSPORTS, TRANSPORTS
from flwr_sdk.events import EventCallback, NodeEvent
from flwr_sdk.net.tls import load_root_certificates, resolve_insecure
from flwr_sdk.transport.address import parse_grpc_address, parse_rest_address
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.lines import LINE_MODULES, get_line

ClientFn = Callable[[Context], Client | NumPyClient]

log = logging.getLogger("flwr_sdk.node")


@dataclass(frozen=True)
class ClientConfig:
    """Everything ``start_client`` was asked to do, validated."""

    transport: str
    settings: TransportSettings
    #: What the node runs for every message (a ClientApp wrapping client_fn / client).
    app: MessageApp
    retry: RetryPolicy
    #: The wire line the user chose, or None to detect it (Fleet API transports only).
    wire: str | None = None
    #: Stop with the user's exception at the first failed instruction.
    fail_fast: bool = False
    #: The user's ``on_event`` callback, guarded: it never raises (see :func:`guarded`).
    on_event: EventCallback | None = None
    #: ``Context.node_config`` of every run this node serves (copied per run).
    node_config: Mapping[str, bool | int | float | str] = field(default_factory=dict)


def guarded(callback: EventCallback) -> EventCallback:
    """``callback`` made safe for the node: an exception from it is logged at DEBUG only."""

    def call(event: NodeEvent) -> None:
        try:
            callback(event)
        except Exception as exc:
            log.debug(
                "on_event callback raised %s on %s; ignored",
                type(exc).__name__,
                type(event).__name__,
                exc_info=exc,
            )

    return call


def _check_node_config(node_config: object) -> dict[str, bool | int | float | str]:
    if node_config is None:
        return {}
    if not isinstance(node_config, Mapping):
        raise TypeError(
            f"node_config must be a mapping of str to bool/int/float/str, "
            f"got {type(node_config).__name__}"
        )
    checked: dict[str, bool | int | float | str] = {}
    for key, value in node_config.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"node_config keys must be non-empty str, got {key!r}")
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"node_config[{key!r}] must be a bool, int, float or str, "
                f"got {type(value).__name__}"
            )
        checked[key] = value
    return checked


def _check_on_event(on_event: object) -> EventCallback | None:
    if on_event is None:
        return None
    if not callable(on_event):
        raise TypeError(
            "on_event must be a callable taking one flwr_sdk.events event, or None; "
            f"got {type(on_event).__name__}"
        )
    callback: EventCallback = on_event
    return guarded(callback)


def _check_app(client_fn: object, client: object, app: object) -> MessageApp:
    given = [
        name
        for name, value in (("client_fn", client_fn), ("client", client), ("app", app))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "exactly one of client_fn, client and app must be given "
            f"(got {' and '.join(given) if given else 'none'})"
        )
    if app is not None:
        if not isinstance(app, ClientApp):
            raise TypeError(f"app must be a flwr_sdk.client.ClientApp, got {type(app).__name__}")
        if app.client_fn is None and not app.message_types:
            raise ValueError(
                "app is a ClientApp with nothing to run: give it a client_fn or register "
                "functions with @app.train() / @app.evaluate() / @app.query()"
            )
        return app
    return ClientApp(_check_client(client_fn, client))


def _check_client(client_fn: object, client: object) -> ClientFn:
    if client is not None:
        if not isinstance(client, (Client, NumPyClient)):
            raise TypeError(
                f"client must be a flwr_sdk.Client or NumPyClient, got {type(client).__name__}"
            )
        fixed: Client | NumPyClient = (
            client.to_client() if isinstance(client, NumPyClient) else client
        )

        def same_client(_context: Context) -> Client | NumPyClient:
            return fixed

        return same_client
    if not callable(client_fn):
        raise TypeError(f"client_fn must be callable (Context) -> Client, got {client_fn!r}")
    fn: ClientFn = client_fn
    return fn


def _check_transport(transport: object) -> str:
    if transport is None:
        return DEFAULT_TRANSPORT
    if not isinstance(transport, str):
        raise TypeError(f"transport must be a str or None, got {type(transport).__name__}")
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    return transport


def _check_wire(wire: object, transport: str) -> str | None:
    if wire is None:
        return None
    if not isinstance(wire, str):
        raise TypeError(f"wire must be a str or None, got {type(wire).__name__}")
    if wire not in LINE_MODULES:
        raise ValueError(
            f"unknown wire line {wire!r}; use one of {', '.join(LINE_MODULES)} "
            "(or None to detect it)"
        )
    if transport not in FLEET_TRANSPORTS:
        raise ValueError(
            f"wire={wire!r} cannot be used with transport {transport!r}: it chooses the "
            f"Fleet API line of {', '.join(FLEET_TRANSPORTS)} (grpc-bidi is the same on "
            "every line)"
        )
    return wire


def _check_max_message_length(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"grpc_max_message_length must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"grpc_max_message_length must be positive, got {value}")
    return value


def _check_keys(
    keys: object, transport: str
) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey] | None:
    if keys is None:
        return None
    if not isinstance(keys, tuple) or len(keys) != 2:
        raise TypeError(
            "authentication_keys must be a (private_key, public_key) tuple of cryptography EC keys"
        )
    private, public = keys
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError(
            "authentication_keys[0] must be an EllipticCurvePrivateKey, "
            f"got {type(private).__name__}"
        )
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TypeError(
            f"authentication_keys[1] must be an EllipticCurvePublicKey, got {type(public).__name__}"
        )
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != public.public_bytes(*spki):
        raise ValueError("authentication_keys: the public key does not belong to the private key")
    if transport not in AUTH_TRANSPORTS and transport not in FLEET_TRANSPORTS:
        raise ValueError(
            f"authentication_keys cannot be used with transport {transport!r}: node "
            f"authentication exists only on {', '.join(FLEET_TRANSPORTS)}"
        )
    return private, public


def _check_keys_on_line(keys: object, transport: str, wire: str | None) -> str | None:
    """Refuse keys on rest for a chosen line without node auth over HTTP; return ``wire``.

    With the line detected (``wire`` None) the check happens when the session opens.
    """
    if keys is not None and transport == "rest" and wire is not None:
        line = get_line(wire)
        if not line.node_auth_over_http:
            raise ValueError(
                f"authentication_keys cannot be used with transport 'rest' on the "
                f"{line.title}: it has no node authentication over HTTP (use grpc-rere)"
            )
    return wire


def _check_rest_security(
    server_address: str, root_pem: bytes | None, insecure: bool | None
) -> bool:
    target = parse_rest_address(server_address)
    if target.scheme == "http":
        if root_pem is not None:
            raise ValueError(
                "root_certificates were given but server_address uses http://; use https:// for TLS"
            )
        if insecure is False:
            raise ValueError(
                "insecure=False needs an https:// server_address on the rest transport"
            )
        return True
    if insecure is True:
        raise ValueError("insecure=True contradicts an https:// server_address")
    return False


def validate(
    *,
    server_address: object,
    client_fn: object,
    client: object,
    grpc_max_message_length: object,
    root_certificates: object,
    insecure: object,
    transport: object,
    authentication_keys: object,
    max_retries: object,
    max_wait_time: object,
    wire: object = None,
    app: object = None,
    fail_fast: object = False,
    on_event: object = None,
    node_config: object = None,
) -> ClientConfig:
    """Check every ``start_client`` argument; return the validated configuration."""
    if not isinstance(server_address, str):
        raise TypeError(f"server_address must be a str, got {type(server_address).__name__}")
    message_app = _check_app(client_fn, client, app)
    kind = _check_transport(transport)
    max_len = _check_max_message_length(grpc_max_message_length)
    if insecure is not None and not isinstance(insecure, bool):
        raise TypeError(f"insecure must be a bool or None, got {type(insecure).__name__}")
    if root_certificates is not None and not isinstance(
        root_certificates, (bytes, str, os.PathLike)
    ):
        raise TypeError(
            "root_certificates must be PEM bytes or a path (str), "
            f"got {type(root_certificates).__name__}"
        )
    certs: Any = root_certificates
    root_pem = load_root_certificates(certs)
    if kind == "rest":
        use_plaintext = _check_rest_security(server_address, root_pem, insecure)
    else:
        parse_grpc_address(server_address)
        use_plaintext = resolve_insecure(insecure, root_pem)
    keys = _check_keys(authentication_keys, kind)
    if not isinstance(fail_fast, bool):
        raise TypeError(f"fail_fast must be a bool, got {type(fail_fast).__name__}")
    callback = _check_on_event(on_event)
    retry = RetryPolicy(
        max_retries=max_retries,  # type: ignore[arg-type]
        max_wait_time=max_wait_time,  # type: ignore[arg-type]
        on_event=callback,
    )
    return ClientConfig(
        transport=kind,
        settings=TransportSettings(
            server_address=server_address,
            max_message_length=max_len,
            root_certificates=root_pem,
            insecure=use_plaintext,
            authentication_keys=keys,
            retry=retry,
        ),
        app=message_app,
        retry=retry,
        wire=_check_keys_on_line(keys, kind, _check_wire(wire, kind)),
        fail_fast=fail_fast,
        on_event=callback,
        node_config=_check_node_config(node_config),
    )
