"""The ``flwr-sdk`` command line."""

from __future__ import annotations

import argparse
import sys


def _codegen(argv: list[str]) -> int:
    try:
        from flwr_sdk_codegen.__main__ import (  # type: ignore[import-untyped]  # wheel
            main as codegen_main,
        )
    except ImportError:
        try:
            from codegen.__main__ import main as codegen_main  # source checkout
        except ImportError:
            print(
                "flwr-sdk codegen needs the codegen extra: pip install 'flwr-sdk[codegen]'",
                file=sys.stderr,
            )
            return 2
    result: int = codegen_main(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the ``flwr-sdk`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="flwr-sdk", description="flwr-sdk command line")
    parser.add_argument("command", choices=["codegen"], help="what to run")
    if args[:1] == ["codegen"]:
        return _codegen(args[1:])
    parser.parse_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
