"""What the ``flwr-sdk`` commands read from their arguments: apps, keys, node config.

Shared by :mod:`flwr_sdk.cli` and the swarm's command (:mod:`flwr_sdk.swarm.cli`):
``module:attr`` specs resolved to a client app (:func:`load_app`) or a server app
(:func:`load_server_app`), EC keys from OpenSSH or PEM files (:func:`load_private_key`,
:func:`load_public_key`) and ``--node-config`` text (:func:`parse_node_config`). Every
function raises ``ValueError`` with a message naming the flag and what is wrong. The
options both client commands take to reach a server are defined once
(:data:`CONNECTION_OPTIONS`, :func:`add_connection_options`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH, TRANSPORTS
from flwr_sdk.wire.lines import LINE_MODULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CONNECTION_OPTIONS",
    "add_connection_options",
    "load_app",
    "load_private_key",
    "load_public_key",
    "load_server_app",
    "parse_node_config",
]


CONNECTION_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "--server-address": {
        "required": True,
        "help": "host:port (IPv4, [IPv6]:port or a name); http(s)://host:port for rest",
    },
    "--transport": {"choices": TRANSPORTS, "default": None, "help": "wire protocol"},
    "--wire": {
        "choices": tuple(LINE_MODULES),
        "default": None,
        "help": "Flower wire line of the Fleet API (default: detect it)",
    },
    "--root-certificates": {"default": None, "metavar": "PATH", "help": "CA certificates (PEM)"},
    "--insecure": {
        "action": argparse.BooleanOptionalAction,
        "default": None,
        "help": "plaintext (--insecure) or TLS (--no-insecure)",
    },
    "--max-retries": {"type": int, "default": None, "help": "retries (default: no limit)"},
    "--max-wait-time": {
        "type": float,
        "default": None,
        "metavar": "SECONDS",
        "help": "total time to keep retrying (default: no limit)",
    },
    "--grpc-max-message-length": {
        "type": int,
        "default": DEFAULT_MAX_MESSAGE_LENGTH,
        "help": "largest message in bytes, either way",
    },
    "--fail-fast": {"action": "store_true", "help": "stop at the first failed instruction"},
}
"""The options that say how a node reaches its server (``start_client``'s arguments), by
flag, in help order: what ``argparse`` takes for each."""


def add_connection_options(
    parser: argparse.ArgumentParser,
    *,
    helps: Mapping[str, str] | None = None,
    transport_default: str | None = None,
    server_alias: bool = False,
) -> None:
    """Add :data:`CONNECTION_OPTIONS` to ``parser``.

    ``helps``: a command's own help text for some flags; ``transport_default``: its
    ``--transport`` default (None: ``start_client``'s); ``server_alias``: also accept
    ``--server`` for ``--server-address``.
    """
    for flag, options in CONNECTION_OPTIONS.items():
        keywords = dict(options)
        if helps is not None and flag in helps:
            keywords["help"] = helps[flag]
        if flag == "--transport":
            keywords["default"] = transport_default
        names = [flag, "--server"] if server_alias and flag == "--server-address" else [flag]
        parser.add_argument(*names, **keywords)


def _import_attr(spec: str) -> Any:
    """The object ``module:attr`` names (``attr`` may be dotted); the cwd is importable.

    Raises:
        ValueError: ``spec`` is not ``module:attr``, the module (or a module it imports)
            is not installed, or the attribute is missing.

    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app must look like module:attr, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ValueError(
                f"--app {spec}: no module named {exc.name!r} "
                f"(looked in the current directory {os.getcwd()} and on sys.path)"
            ) from None
        raise ValueError(f"--app {spec}: importing {module_name!r} failed: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--app {spec}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_app(spec: str) -> tuple[str, Any]:
    """Resolve ``module:attr``; return ``("app" | "client_fn" | "client", object)``.

    A :class:`~flwr_sdk.client.ClientApp` is ``"app"`` (run with its mods and handlers);
    a ``Client`` or ``NumPyClient`` instance is ``"client"``; any other callable that is
    not a class is a ``"client_fn"``. ``attr`` may be dotted (``module:holder.app``). The
    current directory is importable, so ``examples.cli_client:client_fn`` works from a
    checkout.

    Raises:
        ValueError: ``spec`` is not ``module:attr``, the module (or a module it imports)
            is not installed, the attribute is missing, or it is none of the above.

    """
    from flwr_sdk.clientapp.app import ClientApp
    from flwr_sdk.clientapp.client import Client
    from flwr_sdk.clientapp.numpy_client import NumPyClient

    obj = _import_attr(spec)
    if isinstance(obj, ClientApp):
        return "app", obj
    if isinstance(obj, (Client, NumPyClient)):
        return "client", obj
    if isinstance(obj, type):
        raise ValueError(
            f"--app {spec} is a class; give a ClientApp, a client_fn or a Client/NumPyClient "
            "instance"
        )
    if callable(obj):
        return "client_fn", obj
    raise ValueError(
        f"--app {spec} is a {type(obj).__name__}, not a ClientApp, a client_fn or a "
        "Client/NumPyClient instance"
    )


def load_server_app(spec: str) -> Any:
    """Resolve ``module:attr`` to a server app: ``async def main(driver, context)``.

    An object whose ``__call__`` is ``async def`` (like
    :class:`~flwr_sdk.server.fedavg_app.FedAvgApp`) is accepted too.

    Raises:
        ValueError: as :func:`load_app`, or the object is not an async callable (a
            synchronous function would block the server's event loop).

    """
    obj = _import_attr(spec)
    call = obj if inspect.isroutine(obj) else getattr(obj, "__call__", None)  # noqa: B004
    if isinstance(obj, type) or not inspect.iscoroutinefunction(call):
        raise ValueError(
            f"--app {spec} must be an async function main(driver, context) (it runs on the "
            f"server's event loop), got {type(obj).__name__} {obj!r}"
        )
    return obj


def load_private_key(path: str, flag: str) -> Any:
    """The private key in ``path`` (OpenSSH or PEM, unencrypted)."""
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            return serialization.load_ssh_private_key(data, password=None)
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {path}: not an unencrypted private key ({exc})") from None


def load_public_key(path: str, flag: str) -> Any:
    """The public key in ``path`` (OpenSSH or PEM)."""
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(data)
        return serialization.load_ssh_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {path}: not a public key ({exc})") from None


_NODE_CONFIG_PAIR = re.compile(r"""([^\s=]+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S+)""")


def parse_node_config(text: str | None) -> dict[str, bool | int | float | str]:
    """Parse ``--node-config`` as ``flower-supernode`` does: ``KEY=VALUE`` pairs, TOML values.

    ``'partition-id=0 num-partitions=2 name="a b"'`` → ``{"partition-id": 0,
    "num-partitions": 2, "name": "a b"}``.

    Raises:
        ValueError: a pair has no ``=``, or its value is not a TOML bool, number or string.

    """
    if not text:
        return {}
    result: dict[str, bool | int | float | str] = {}
    position = 0
    for match in _NODE_CONFIG_PAIR.finditer(text):
        if text[position : match.start()].strip():
            raise ValueError(f"--node-config takes KEY=VALUE pairs, got {text[position:]!r}")
        position = match.end()
        key, value = match.group(1), match.group(2)
        try:
            parsed = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            raise ValueError(
                f"--node-config {key}: {value!r} is not a TOML value (quote strings: "
                f'{key}="{value}")'
            ) from None
        if not isinstance(parsed, (bool, int, float, str)):
            raise ValueError(f"--node-config {key}: only bool, number and string values")
        result[key] = parsed
    if text[position:].strip():
        raise ValueError(f"--node-config takes KEY=VALUE pairs, got {text[position:]!r}")
    return result
