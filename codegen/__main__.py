"""Command line: ``python -m codegen [--check]`` and ``python -m codegen buf``.

For users' own message types: ``python -m codegen --proto-path DIR --out DIR [--check]``
(or the ``[tool.flwr-sdk.codegen]`` table of ``./pyproject.toml``; see :mod:`codegen.user`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .buf import run_buf
from .generator import ROOT_PACKAGE, generate_all
from .toolchain import files_on_disk, replace_tree, report_check, stale_files
from .user import add_user_arguments, generate_sdk_ext, run_user_codegen, wants_user_codegen

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m codegen",
        description="Regenerate generated/ from proto/ (typed classes, grpclib stubs, glue).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["generate", "buf"],
        default="generate",
        help="generate (default): write or check generated/; buf: lint and format-check protos",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 and list stale files if generated/ is out of date",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO_ROOT,
        help="repository root holding proto/ and generated/ (default: this checkout)",
    )
    add_user_arguments(parser)
    args = parser.parse_args(argv)
    repo: Path = args.repo.resolve()

    if args.command == "generate" and wants_user_codegen(args):
        return run_user_codegen(args)

    if args.command == "buf":
        return run_buf(repo)

    out_dir = repo / "generated"
    package_dir = out_dir / ROOT_PACKAGE
    tree = generate_all(repo)
    tree.update(generate_sdk_ext(repo))
    if args.check:
        stale = stale_files(tree, files_on_disk(package_dir, relative_to=out_dir))
        return report_check(
            stale, len(tree), "generated/", "run `python -m codegen`", prefix="generated/"
        )
    replace_tree(tree, out_dir, replaced=package_dir)
    print(f"wrote {len(tree)} files under generated/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
