"""Write a generated tree to disk, or compare it with what is there."""

from __future__ import annotations

import shutil
from pathlib import Path

from .generator import ROOT_PACKAGE, GeneratedTree

# Caches that tools (python, mypy, ruff, pytest, hypothesis) may leave under generated/.
IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def on_disk(out_dir: Path) -> GeneratedTree:
    """The files currently under ``out_dir/<root package>``."""
    base = out_dir / ROOT_PACKAGE
    if not base.exists():
        return {}
    return {
        p.relative_to(out_dir).as_posix(): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not IGNORED_PARTS.intersection(p.parts)
    }


def stale_files(expected: GeneratedTree, out_dir: Path) -> list[str]:
    """Paths that differ, are missing, or should not be there (sorted)."""
    actual = on_disk(out_dir)
    return sorted(
        path for path in set(expected) | set(actual) if expected.get(path) != actual.get(path)
    )


def write_tree(tree: GeneratedTree, out_dir: Path) -> None:
    """Replace ``out_dir/<root package>`` with exactly ``tree``."""
    base = out_dir / ROOT_PACKAGE
    if base.exists():
        shutil.rmtree(base)
    for rel, content in sorted(tree.items()):
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
