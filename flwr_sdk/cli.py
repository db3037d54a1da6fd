"""The ``flwr-sdk`` command line: ``demo``, ``server``, ``client`` and ``codegen``.

* ``flwr-sdk demo`` runs a whole federation on this machine (reference server + client
  processes) and shows the training live (needs the ``demo`` extra).
* ``flwr-sdk server`` runs the reference server (FedAvg) for your own clients (REST needs
  the ``server`` extra).
* ``flwr-sdk client --app module:attr`` runs a client node; ``attr`` is a
  :class:`~flwr_sdk.client.ClientApp`, a ``client_fn(context)`` or a ``Client`` /
  ``NumPyClient`` instance. The flags mirror :func:`flwr_sdk.start_client`.
* ``flwr-sdk codegen …`` regenerates the bindings (needs the ``codegen`` extra).

``python -m flwr_sdk`` is the same command. ``-v`` / ``-q`` (more or less output) go before
or after the subcommand; ``--version`` prints the version. Expected failures end the command
with one line on stderr: exit 2 for a bad argument or a missing extra (the line says which
``pip install`` fixes it), exit 1 for an error while running.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - Python 3.10
    pass

from flwr_sdk.cli_inputs import (
    add_connection_options,
    load_app,
    load_private_key,
    load_public_key,
    load_server_app,
    parse_node_config,
)
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH, TRANSPORTS
from flwr_sdk.errors import FlwrSdkError
from flwr_sdk.wire.lines import LINE_MODULES

__all__ = ["load_app", "main"]

_EXTRA_OF_MODULE = {
    "aiohttp": "server",
    "matplotlib": "plot",
    "jinja2": "codegen",
    "grpc_tools": "codegen",
    "betterproto2_compiler": "codegen",
    "google": "codegen",
    "ray": "swarm-ray",
}
"""Top-level module → the extra of pyproject.toml that installs it."""

_CODEGEN_MODULES = ("jinja2", "grpc_tools", "betterproto2_compiler", "google.protobuf")
"""What ``flwr-sdk codegen`` imports from the ``codegen`` extra."""


class MissingExtraError(Exception):
    """A command needs an optional dependency that is not installed.

    ``extra`` names the extra of ``flwr-sdk`` that installs it, ``module`` the module
    that is missing.
    """

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"needs the {extra!r} extra (module {module!r} is not installed): "
            f"pip install 'flwr-sdk[{extra}]'"
        )
        self.module = module
        self.extra = extra


def _missing_extra(exc: ModuleNotFoundError) -> MissingExtraError | None:
    """The extra that installs the module ``exc`` did not find, if it is one of ours."""
    top = (exc.name or "").partition(".")[0]
    extra = _EXTRA_OF_MODULE.get(top)
    return None if extra is None else MissingExtraError(top, extra)


def _require(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, extra)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("flwr-sdk")
    except PackageNotFoundError:  # pragma: no cover - a checkout on sys.path, not installed
        installed = "(not installed)"
    lines = ", ".join(sorted(LINE_MODULES))
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"flwr-sdk {installed} (Flower wire lines {lines}; Python {python})"


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
    for name in _CODEGEN_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            raise MissingExtraError(name, "codegen")
    codegen_main = _codegen_main()
    if codegen_main is None:
        raise MissingExtraError("codegen", "codegen")
    return codegen_main(argv)


# ------------------------------------------------------------------------------ client


def _user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback with only the user's frames (not flwr-sdk's nor the stdlib's)."""
    import sysconfig
    import traceback

    skip = (
        str(Path(__file__).resolve().parent),
        str(Path(sysconfig.get_paths()["stdlib"]).resolve()),
    )
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not str(Path(frame.filename).resolve()).startswith(skip)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join([*lines, *traceback.format_exception_only(type(exc), exc)])


def _client(args: argparse.Namespace) -> int:
    """Run ``start_client`` with the node's events drawn; exit 1 if instructions failed."""
    from flwr_sdk.app import start_client
    from flwr_sdk.cli_display import ClientDisplay
    from flwr_sdk.events import NodeEvent, Stopped

    kind, app = load_app(args.app)
    keys = None
    if (args.auth_key_private is None) != (args.auth_key_public is None):
        raise ValueError("give both --auth-key-private and --auth-key-public")
    if args.auth_key_private is not None:
        keys = (
            load_private_key(args.auth_key_private, "--auth-key-private"),
            load_public_key(args.auth_key_public, "--auth-key-public"),
        )
    root: bytes | str | None = args.root_certificates
    # -q: no display; the node's WARNING / ERROR log lines (failures, the summary) remain.
    display = None if args.quiet else ClientDisplay(show_error=False)
    if display is not None and not args.verbose:
        # The display draws each retry (Retrying event); its log line would repeat it.
        logging.getLogger("flwr_sdk.retry").setLevel(logging.ERROR)
    stopped: list[Stopped] = []

    def on_event(event: NodeEvent) -> None:
        if isinstance(event, Stopped):
            stopped.append(event)
        if display is not None:
            display(event)

    try:
        start_client(
            server_address=args.server_address,
            client_fn=app if kind == "client_fn" else None,
            client=app if kind == "client" else None,
            app=app if kind == "app" else None,
            grpc_max_message_length=args.grpc_max_message_length,
            root_certificates=root,
            insecure=args.insecure,
            transport=args.transport,
            authentication_keys=keys,
            max_retries=args.max_retries,
            max_wait_time=args.max_wait_time,
            wire=args.wire,
            fail_fast=args.fail_fast,
            on_event=on_event,
            node_config=parse_node_config(args.node_config),
        )
    except Exception as exc:
        end = stopped[-1] if stopped else None
        if args.fail_fast and end is not None and end.summary.failures:
            # The user's own exception: where it came from in their code, then one line.
            sys.stderr.write(_user_traceback(exc))
            print(
                f"flwr-sdk client: stopped at the first failure (--fail-fast): "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
        raise
    finally:
        if display is not None:
            display.close()
    # Failed instructions: the node logged each one and the summary (at ERROR).
    return 1 if stopped and stopped[-1].summary.failures else 0


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
    from flwr_sdk.server.node_auth_v1_42 import SignedCallAuthenticator

    if args.transport == "rest":
        _require("aiohttp", "server")
    app = load_server_app(args.app) if args.app else None
    run_config = _key_values(args.run_config, "--run-config")
    fit_config = _key_values(args.fit_config, "--fit-config")
    tls = None
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise ValueError("give both --ssl-certfile and --ssl-keyfile")
    if args.ssl_certfile:
        tls = ServerTLS.from_files(args.ssl_certfile, args.ssl_keyfile)
    auth: NodeAuthenticator | SignedTimestampAuthenticator | SignedCallAuthenticator | None = None
    if args.wire == "1.15":
        # Always on for grpc-rere; a list restricts it to the listed keys. The SuperLink
        # also takes --auth-superlink-private-key in 1.15 and ignores it: so do we.
        if args.auth_server_private_key:
            logging.getLogger("flwr_sdk.server").warning(
                "--auth-server-private-key has no effect on the Flower 1.15 wire line"
            )
        if args.auth_list_public_keys:
            auth = SignedTimestampAuthenticator.create(load_public_keys(args.auth_list_public_keys))
    elif args.wire == "1.42":
        # Every call is signed regardless; a list = the keys the operator registered
        # (the SuperLink's --enable-supernode-auth): nodes may then only activate them.
        if args.auth_server_private_key:
            raise ValueError("--auth-server-private-key has no use on the Flower 1.42 wire line")
        if args.auth_list_public_keys:
            auth = SignedCallAuthenticator.create(load_public_keys(args.auth_list_public_keys))
    elif args.auth_list_public_keys or args.auth_server_private_key:
        if not (args.auth_list_public_keys and args.auth_server_private_key):
            raise ValueError(
                "node auth needs --auth-list-public-keys and --auth-server-private-key"
            )
        auth = NodeAuthenticator.create(
            load_private_key(args.auth_server_private_key, "--auth-server-private-key"),
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
        run_config=run_config,
        fab=None if args.fab is None else args.fab.read_bytes(),
    )
    if app is not None:
        result = run_server(config, None, app)
        if args.report:
            Path(args.report).write_text(json.dumps(result, indent=1, default=repr))
        if result is not None:
            print(f"app result: {result!r}")
        return 0
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
    if args.plot is not None:
        _require("matplotlib", "plot")
    from flwr_sdk.demo.runner import DemoOptions, run_demo

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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is none worth showing.

    Flags (``--tls``, ``-v``) and options whose default is None or empty (nothing is
    passed on: the called function's own default applies, which the help says) get none.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


def _output_options(parser: argparse.ArgumentParser, default: int | str) -> None:
    """``-v`` / ``-q``; on subcommands they default to SUPPRESS (keep the global value)."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="more log output (-v: INFO, -vv: flwr-sdk's DEBUG, -vvv: all DEBUG)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="less output (-q: warnings and errors only, no progress display; -qq: errors)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flwr-sdk",
        description="flwr-sdk: a client SDK for Flower, with a reference server and a demo.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    _output_options(parser, 0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        subparser: argparse.ArgumentParser = sub.add_parser(
            name, formatter_class=_HelpFormatter, **kwargs
        )
        _output_options(subparser, argparse.SUPPRESS)
        return subparser

    demo = command(
        "demo",
        help="run a whole federation on this machine (extra: demo)",
        description="Start the reference server and N client processes on loopback and "
        "train a multinomial logistic regression on synthetic non-IID data with FedAvg. "
        "Needs the demo extra: pip install 'flwr-sdk[demo]'.",
    )
    demo.add_argument("--clients", type=int, default=3, help="client processes")
    demo.add_argument("--rounds", type=int, default=5, help="FedAvg rounds")
    demo.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=None,
        help="wire protocol (default: grpc-bidi; grpc-rere with --auth or --wire)",
    )
    demo.add_argument(
        "--wire",
        choices=tuple(LINE_MODULES),
        default=None,
        help="Flower wire line of the server's Fleet API (default: 1.12); the clients detect it",
    )
    demo.add_argument("--tls", action="store_true", help="TLS with a throwaway CA")
    demo.add_argument(
        "--auth", action="store_true", help="node authentication with generated client keys"
    )
    demo.add_argument(
        "--plot", type=Path, default=None, metavar="FILE", help="write a PNG (extra: plot)"
    )
    demo.add_argument("--seed", type=int, default=0, help="dataset seed")
    demo.add_argument("--local-epochs", type=int, default=2, help="local epochs per round")
    demo.add_argument("--lr", type=float, default=0.1, help="learning rate of round 1")
    demo.add_argument("--no-live", action="store_true", help="no live progress bars")

    server = command(
        "server",
        help="run the reference server (FedAvg, or your server app)",
        description="Run the reference server (Flower 1.12, 1.15 or 1.42 wire) and a server app "
        "on it. By default the app is FedAvg weighted by num_examples, with federated "
        "evaluation and per-round fit config: it waits for --min-clients nodes, runs "
        "--rounds rounds, prints one line per round and exits. --app module:main runs "
        "your own app instead (async def main(driver, context), see docs/server-apps.md; "
        "the FedAvg options then do nothing) and exits when it returns. "
        "--transport rest needs the server extra: pip install 'flwr-sdk[server]'.",
    )
    server.add_argument(
        "--transport", choices=TRANSPORTS, default="grpc-bidi", help="wire protocol"
    )
    server.add_argument(
        "--wire",
        choices=tuple(LINE_MODULES),
        default="1.12",
        help="Flower wire line of the Fleet API (grpc-rere, rest)",
    )
    server.add_argument(
        "--app",
        default=None,
        metavar="MODULE:ATTR",
        help="server app to run: async def main(driver, context); the current directory "
        "is importable (default: FedAvg)",
    )
    server.add_argument(
        "--run-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the app's context.run_config (numbers and true/false parsed); repeatable",
    )
    server.add_argument("--host", default="127.0.0.1", help="listen address")
    server.add_argument(
        "--port", type=int, default=None, help="default: 8080 bidi, 9092 grpc-rere, 9093 rest"
    )
    server.add_argument("--rounds", type=int, default=3, help="FedAvg rounds")
    server.add_argument(
        "--min-clients", type=int, default=2, help="nodes to wait for and sample per round"
    )
    server.add_argument(
        "--fraction-fit", type=float, default=1.0, help="fraction of nodes sampled per round"
    )
    server.add_argument("--no-evaluate", action="store_true", help="skip federated evaluation")
    server.add_argument(
        "--fit-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to every round's fit config (also gets 'round'); repeatable",
    )
    server.add_argument(
        "--round-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a round's missing replies after this long (default: wait)",
    )
    server.add_argument(
        "--wait-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting for --min-clients nodes after this long (default: wait)",
    )
    server.add_argument("--ssl-certfile", default=None, help="server certificate chain (PEM)")
    server.add_argument("--ssl-keyfile", default=None, help="server private key (PEM)")
    server.add_argument(
        "--auth-list-public-keys",
        default=None,
        help="CSV of allowed node keys (OpenSSH); 1.42: the keys the operator registers "
        "(as --enable-supernode-auth; needs TLS)",
    )
    server.add_argument(
        "--auth-server-private-key",
        default=None,
        help="server EC key (OpenSSH or PEM; 1.12 only)",
    )
    server.add_argument(
        "--max-message-length",
        type=int,
        default=DEFAULT_MAX_MESSAGE_LENGTH,
        help="largest message in bytes, either way",
    )
    server.add_argument(
        "--fab",
        type=Path,
        default=None,
        metavar="FILE",
        help="a FAB (flwr build) the run names and the 1.42 Fleet API serves (GetFab), so "
        "Flower's own flower-supernode can run its ClientApp",
    )
    server.add_argument("--report", default=None, metavar="FILE", help="write results as JSON")

    client = command(
        "client",
        help="run a client node (start_client)",
        description="Run a client node with flwr_sdk.start_client and show its progress: a "
        "line per instruction received and reply sent, a progress bar for big transfers, "
        "retries, and a summary at the end. --app module:attr names a ClientApp, a "
        "client_fn(context) or a Client/NumPyClient instance; the current directory is "
        "importable. Exits 1 when instructions failed or the node stopped with an error.",
    )
    client.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="ClientApp, client_fn or Client/NumPyClient instance to run",
    )
    add_connection_options(
        client,
        helps={
            "--transport": "wire protocol (default: grpc-bidi)",
            "--insecure": "plaintext (--insecure) or TLS (--no-insecure) (default: TLS only "
            "with --root-certificates)",
            "--max-retries": "retries while the server is unavailable (default: no limit)",
            "--fail-fast": "stop at the first failure of user code "
            "(start_client(fail_fast=True)) instead of sending an error reply and going on",
        },
    )
    client.add_argument(
        "--auth-key-private",
        default=None,
        metavar="PATH",
        help="node authentication: the node's EC private key (OpenSSH or PEM)",
    )
    client.add_argument(
        "--auth-key-public",
        default=None,
        metavar="PATH",
        help="node authentication: its public key (OpenSSH or PEM)",
    )
    client.add_argument(
        "--node-config",
        default=None,
        metavar="'KEY=VALUE ...'",
        help="Context.node_config of the node, as flower-supernode takes it: one string of "
        "space-separated KEY=VALUE pairs, values in TOML syntax "
        "(e.g. 'partition-id=0 num-partitions=2 name=\"a b\"')",
    )

    from flwr_sdk.swarm.cli import add_parser as add_swarm_parser

    add_swarm_parser(command)

    sub.add_parser(
        "codegen",
        help="regenerate bindings from protos (extra: codegen; see flwr-sdk codegen --help)",
        add_help=False,
    )
    return parser


def _swarm(args: argparse.Namespace) -> int:
    from flwr_sdk.swarm.cli import swarm_command

    return swarm_command(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "server": _server,
    "client": _client,
    "swarm": _swarm,
}

_BASE_LEVEL = {
    "demo": logging.WARNING,
    "server": logging.INFO,
    "client": logging.WARNING,
    "swarm": logging.WARNING,
}
"""Each command's log level without ``-v`` / ``-q`` (the client draws its progress instead)."""


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # not subscriptable at run time before Python 3.11
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record (rich's live display wraps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def _configure_logging(command: str, verbose: int, quiet: int) -> None:
    """Log to stderr at the command's level, lowered by ``-v`` and raised by ``-q``.

    ``-vv`` shows flwr-sdk's DEBUG records (other libraries stay at INFO); ``-vvv`` every
    library's.
    """
    level = _BASE_LEVEL[command]
    if verbose:
        level = min(level, logging.INFO if verbose < 3 else logging.DEBUG)
    if quiet:
        level = max(level, logging.WARNING if quiet == 1 else logging.ERROR)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if verbose >= 2 and not quiet:
        logging.getLogger("flwr_sdk").setLevel(logging.DEBUG)


def _first_command(args: Sequence[str]) -> int | None:
    """Index of the first argument that is not a global option, or None."""
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            return index
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the ``flwr-sdk`` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = _first_command(args_list)
    if first is not None and args_list[first] == "codegen":
        # Everything after "codegen" is the generator's own command line.
        try:
            return _codegen(args_list[first + 1 :])
        except MissingExtraError as exc:
            print(f"flwr-sdk codegen: {exc}", file=sys.stderr)
            return 2
    parser = _parser()
    args = parser.parse_args(args_list)
    _configure_logging(args.command, args.verbose, args.quiet)
    prefix = f"flwr-sdk {args.command}"
    try:
        return _COMMANDS[args.command](args)
    except MissingExtraError as exc:
        parser.exit(2, f"{prefix}: {exc}\n")
    except ModuleNotFoundError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            raise
        parser.exit(2, f"{prefix}: {missing}\n")
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.exit(2, f"{prefix}: error: {exc}\n")
    except (FlwrSdkError, OSError) as exc:
        parser.exit(1, f"{prefix}: {type(exc).__name__}: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
