"""Count code lines (not blank, not comments, not docstrings) of Python files.

Usage: python scripts/code_lines.py [--exclude PATH]... PATH...
Prints the total; ``--by-file`` lists every file too. Used to state the size of the
hand-written client path: ``python scripts/code_lines.py flwr_sdk --exclude
flwr_sdk/server --exclude flwr_sdk/demo --exclude flwr_sdk/cli.py``.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path


def docstring_lines(source: str) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):  # attribute docstrings
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def code_lines(path: Path) -> int:
    source = path.read_text()
    skip = docstring_lines(source)
    code: set[int] = set()
    ignored = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in ignored or token.type == tokenize.ENDMARKER:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if line not in skip:
                code.add(line)
    return len(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--exclude", action="append", type=Path, default=[])
    parser.add_argument("--by-file", action="store_true")
    args = parser.parse_args()
    excluded = [p.resolve() for p in args.exclude]
    files = sorted(
        f
        for p in args.paths
        for f in ([p] if p.is_file() else p.rglob("*.py"))
        if not any(f.resolve() == e or e in f.resolve().parents for e in excluded)
    )
    total = 0
    for f in files:
        n = code_lines(f)
        total += n
        if args.by_file:
            print(f"{n:6d} {f}")
    print(total)


if __name__ == "__main__":
    main()
