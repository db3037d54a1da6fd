"""The ``flwr-sdk`` command line: ``demo``, ``server``, ``client`` and ``codegen``.

* ``flwr-sdk demo`` runs a whole federation on this machine (reference server + client
  processes) and shows the training live.
* ``flwr-sdk server`` runs the reference server (FedAvg) for your own clients.
* ``flwr-sdk client --app module:attr`` runs a client node; ``attr`` is a
  ``client_fn(context)`` or a ``Client`` / ``NumPyClient`` instance. The flags mirror
  :func:`flwr_sdk.start_client`.
* ``flwr-sdk codegen …`` regenerates the bindings (needs the ``codegen`` extra).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH, TRANSPORTS
from flwr_sdk.errors import FlwrSdkError
from flwr_sdk.wire.lines import LINE_MODULES

__all__ = ["load_app", "main"]


def _codegen_main() -> Callable[[list[str]], int] | None:
    """The code generator's entry point, or None when it is not installed.

    From a source checkout (``flwr_sdk`` sits next to ``codegen/``, e.g. an editable
    install) the checkout's ``codegen`` package is used, so edits take effect at once; an
    installed wheel carries its own copy as ``flwr_sdk_codegen``.
    """
    checkout = Path(__file__).resolve().parent.parent
    module_name = "flwr_sdk_codegen.__main__"
    if (checkout / "codegen" / "__main__.py").is_file():
        if str(checkout) not in sys.path:
            sys.path.insert(0, str(checkout))
        module_name = "codegen.__main__"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    entry: Callable[[list[str]], int] = module.main
    return entry


def _codegen(argv: list[str]) -> int:
    codegen_main = _codegen_main()
    if codegen_main is None:
        print(
            "flwr-sdk codegen needs the codegen extra: pip install 'flwr-sdk[codegen]'",
            file=sys.stderr,
        )
        return 2
    return codegen_main(argv)


# ------------------------------------------------------------------------------ client


def load_app(spec: str) -> tuple[str, Any]:
    """Resolve ``module:attr``; return ``("client_fn" | "client", object)``.

    A function (or any callable that is not a client) is a ``client_fn``; a ``Client``
    or ``NumPyClient`` instance is used as ``client``. The current directory is
    importable (``examples.my_client:client_fn`` works from a checkout).
    """
    from flwr_sdk.clientapp.client import Client
    from flwr_sdk.clientapp.numpy_client import NumPyClient

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app must look like module:attr, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, (Client, NumPyClient)):
        return "client", obj
    if isinstance(obj, type):
        raise ValueError(f"{spec} is a class; give a client_fn or a Client/NumPyClient instance")
    if callable(obj):
        return "client_fn", obj
    raise ValueError(f"{spec} is neither a client_fn nor a Client/NumPyClient instance")


def _load_private_key(path: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    if b"OPENSSH PRIVATE KEY" in data:
        return serialization.load_ssh_private_key(data, password=None)
    return serialization.load_pem_private_key(data, password=None)


def _load_public_key(path: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(data)
    return serialization.load_ssh_public_key(data)


def _client(args: argparse.Namespace) -> int:
    import flwr_sdk

    kind, app = load_app(args.app)
    keys = None
    if (args.auth_key_private is None) != (args.auth_key_public is None):
        raise ValueError("give both --auth-key-private and --auth-key-public")
    if args.auth_key_private is not None:
        keys = (_load_private_key(args.auth_key_private), _load_public_key(args.auth_key_public))
    root: bytes | str | None = args.root_certificates
    flwr_sdk.start_client(
        server_address=args.server_address,
        client_fn=app if kind == "client_fn" else None,
        client=app if kind == "client" else None,
        grpc_max_message_length=args.grpc_max_message_length,
        root_certificates=root,
        insecure=args.insecure,
        transport=args.transport,
        authentication_keys=keys,
        max_retries=args.max_retries,
        max_wait_time=args.max_wait_time,
        wire=args.wire,
    )
    return 0


# ------------------------------------------------------------------------------ server


def _scalar(text: str) -> bool | int | float | str:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _key_values(items: Sequence[str], flag: str) -> dict[str, bool | int | float | str]:
    result: dict[str, bool | int | float | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        result[key] = _scalar(value)
    return result


def _server(args: argparse.Namespace) -> int:
    from flwr_sdk.server import FedAvg, NodeAuthenticator, ServerConfig, ServerTLS, run_server
    from flwr_sdk.server.node_auth import load_public_keys
    from flwr_sdk.server.node_auth_v1_15 import SignedTimestampAuthenticator

    fit_config = _key_values(args.fit_config, "--fit-config")
    tls = None
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise ValueError("give both --ssl-certfile and --ssl-keyfile")
    if args.ssl_certfile:
        tls = ServerTLS.from_files(args.ssl_certfile, args.ssl_keyfile)
    auth: NodeAuthenticator | SignedTimestampAuthenticator | None = None
    if args.wire == "1.15":
        # Always on for grpc-rere; a list restricts it to the listed keys. The SuperLink
        # also takes --auth-superlink-private-key in 1.15 and ignores it: so do we.
        if args.auth_server_private_key:
            logging.getLogger("flwr_sdk.server").warning(
                "--auth-server-private-key has no effect on the Flower 1.15 wire line"
            )
        if args.auth_list_public_keys:
            auth = SignedTimestampAuthenticator.create(load_public_keys(args.auth_list_public_keys))
    elif args.auth_list_public_keys or args.auth_server_private_key:
        if not (args.auth_list_public_keys and args.auth_server_private_key):
            raise ValueError(
                "node auth needs --auth-list-public-keys and --auth-server-private-key"
            )
        auth = NodeAuthenticator.create(
            _load_private_key(args.auth_server_private_key),
            load_public_keys(args.auth_list_public_keys),
        )
    clients = args.min_clients
    strategy = FedAvg(
        min_fit_clients=clients,
        min_evaluate_clients=0 if args.no_evaluate else clients,
        min_available_clients=clients,
        fraction_fit=args.fraction_fit,
        fraction_evaluate=args.fraction_fit,
        on_fit_config=lambda rnd: {"round": rnd, **fit_config},
        on_evaluate_config=lambda rnd: {"round": rnd},
    )
    config = ServerConfig(
        transport=args.transport,
        host=args.host,
        port=args.port,
        num_rounds=args.rounds,
        strategy=strategy,
        round_timeout=args.round_timeout,
        wait_timeout=args.wait_timeout,
        tls=tls,
        auth=auth,
        max_message_length=args.max_message_length,
        record_parameters=args.report is not None,
        wire=args.wire,
    )
    history = run_server(config)
    summary = history.to_dict()
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=1))
    for number, result in summary["rounds"].items():
        print(
            f"round {number}: fit {result['fit_results']} ok / {result['fit_failures']} failed, "
            f"evaluate {result['evaluate_results']} ok / {result['evaluate_failures']} failed, "
            f"loss {result['evaluate_loss']}"
        )
    return 0


# -------------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    try:
        from flwr_sdk.demo.runner import DemoOptions, run_demo
    except ImportError as exc:
        print(f"flwr-sdk demo needs the demo extra ({exc}): pip install 'flwr-sdk[demo]'")
        return 2
    fleet = args.auth or args.wire is not None
    transport = args.transport or ("grpc-rere" if fleet else "grpc-bidi")
    options = DemoOptions(
        clients=args.clients,
        rounds=args.rounds,
        transport=transport,
        wire=args.wire or "1.12",
        tls=args.tls,
        auth=args.auth,
        plot=args.plot,
        seed=args.seed,
        local_epochs=args.local_epochs,
        lr=args.lr,
        live=not args.no_live,
    )
    return run_demo(options)


# ------------------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flwr-sdk",
        description="flwr-sdk: a client SDK for Flower, with a reference server and a demo.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run a whole federation on this machine",
        description="Start the reference server and N client processes on loopback and "
        "train a multinomial logistic regression on synthetic non-IID data with FedAvg.",
    )
    demo.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    demo.add_argument("--rounds", type=int, default=5, help="FedAvg rounds (default 5)")
    demo.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=None,
        help="wire protocol (default grpc-bidi; grpc-rere with --auth or --wire)",
    )
    demo.add_argument(
        "--wire",
        choices=tuple(LINE_MODULES),
        default=None,
        help="Flower wire line of the server's Fleet API (default 1.12); the clients detect it",
    )
    demo.add_argument("--tls", action="store_true", help="TLS with a throwaway CA")
    demo.add_argument(
        "--auth", action="store_true", help="node authentication with generated client keys"
    )
    demo.add_argument("--plot", type=Path, default=None, metavar="FILE", help="write a PNG")
    demo.add_argument("--seed", type=int, default=0, help="dataset seed")
    demo.add_argument("--local-epochs", type=int, default=2, help="local epochs per round")
    demo.add_argument("--lr", type=float, default=0.1, help="learning rate of round 1")
    demo.add_argument("--no-live", action="store_true", help="no live progress bars")

    server = sub.add_parser(
        "server",
        help="run the reference server (FedAvg)",
        description="Run the reference server (Flower 1.12 or 1.15 wire): FedAvg weighted "
        "by num_examples, federated evaluation, per-round fit config.",
    )
    server.add_argument("--transport", choices=TRANSPORTS, default="grpc-bidi")
    server.add_argument(
        "--wire",
        choices=tuple(LINE_MODULES),
        default="1.12",
        help="Flower wire line of the Fleet API (grpc-rere, rest): 1.12 (default) or 1.15",
    )
    server.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    server.add_argument(
        "--port", type=int, default=None, help="default: 8080 bidi, 9092 grpc-rere, 9093 rest"
    )
    server.add_argument("--rounds", type=int, default=3)
    server.add_argument(
        "--min-clients", type=int, default=2, help="nodes to wait for and sample per round"
    )
    server.add_argument("--fraction-fit", type=float, default=1.0)
    server.add_argument("--no-evaluate", action="store_true", help="skip federated evaluation")
    server.add_argument(
        "--fit-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to every round's fit config (also gets 'round')",
    )
    server.add_argument("--round-timeout", type=float, default=None, metavar="SECONDS")
    server.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS")
    server.add_argument("--ssl-certfile", default=None, help="server certificate chain (PEM)")
    server.add_argument("--ssl-keyfile", default=None, help="server private key (PEM)")
    server.add_argument(
        "--auth-list-public-keys", default=None, help="CSV of allowed node keys (OpenSSH)"
    )
    server.add_argument(
        "--auth-server-private-key",
        default=None,
        help="server EC key (OpenSSH or PEM; 1.12 only)",
    )
    server.add_argument("--max-message-length", type=int, default=DEFAULT_MAX_MESSAGE_LENGTH)
    server.add_argument("--report", default=None, metavar="FILE", help="write results as JSON")

    client = sub.add_parser(
        "client",
        help="run a client node (start_client)",
        description="Run a client node with flwr_sdk.start_client. --app module:attr names "
        "a client_fn(context) or a Client/NumPyClient instance.",
    )
    client.add_argument("--app", required=True, metavar="MODULE:ATTR")
    client.add_argument("--server-address", required=True)
    client.add_argument("--transport", choices=TRANSPORTS, default=None)
    client.add_argument("--root-certificates", default=None, metavar="PATH", help="CA (PEM)")
    client.add_argument(
        "--insecure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="plaintext (--insecure) or TLS (--no-insecure)",
    )
    client.add_argument("--auth-key-private", default=None, metavar="PATH")
    client.add_argument("--auth-key-public", default=None, metavar="PATH")
    client.add_argument("--max-retries", type=int, default=None)
    client.add_argument("--max-wait-time", type=float, default=None, metavar="SECONDS")
    client.add_argument("--grpc-max-message-length", type=int, default=DEFAULT_MAX_MESSAGE_LENGTH)
    client.add_argument(
        "--wire",
        choices=tuple(LINE_MODULES),
        default=None,
        help="Flower wire line of the Fleet API (default: detect it)",
    )

    sub.add_parser(
        "codegen",
        help="regenerate bindings from proto/ (see flwr-sdk codegen --help)",
        add_help=False,
    )
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "server": _server,
    "client": _client,
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``flwr-sdk`` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["codegen"]:
        return _codegen(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    level = (
        logging.INFO if args.verbose or args.command in ("server", "client") else logging.WARNING
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.exit(2, f"flwr-sdk {args.command}: error: {exc}\n")
    except FlwrSdkError as exc:
        parser.exit(1, f"flwr-sdk {args.command}: {type(exc).__name__}: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
