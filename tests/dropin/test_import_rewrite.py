"""The flwr_sdk twin of a corpus program differs from it in its flwr imports only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.dropin import CORPUS, flwr_import_lines, imported_modules, rewrite_imports

PROGRAMS = sorted(CORPUS.glob("*.py"))


def test_corpus_holds_the_four_programs() -> None:
    assert [p.stem for p in PROGRAMS] == [
        "lowlevel_client",
        "numpy_client_legacy",
        "quickstart_numpy",
        "template_client_app",
    ]


class _BackToFlwr(ast.NodeTransformer):
    """Rename ``flwr_sdk`` modules in imports back to ``flwr``."""

    @staticmethod
    def _flwr(name: str) -> str:
        if name == "flwr_sdk" or name.startswith("flwr_sdk."):
            return "flwr" + name[len("flwr_sdk") :]
        return name

    def visit_Import(self, node: ast.Import) -> ast.Import:
        for alias in node.names:
            alias.name = self._flwr(alias.name)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom:
        if node.module is not None:
            node.module = self._flwr(node.module)
        return node


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_rewrite_changes_only_flwr_import_lines(program: Path) -> None:
    source = program.read_text()
    rewritten = rewrite_imports(source)
    before, after = source.splitlines(), rewritten.splitlines()
    assert len(before) == len(after)

    imports = flwr_import_lines(source)
    assert imports, f"{program.name} imports nothing from flwr"
    changed = {n for n, (a, b) in enumerate(zip(before, after, strict=True), start=1) if a != b}
    # Exactly the first line of every flwr import statement changed, and only its name.
    assert changed == set(imports), (sorted(changed), imports)
    for number in changed:
        old, new = before[number - 1], after[number - 1]
        assert new == old.replace("flwr", "flwr_sdk", 1), (number, old, new)
        assert new.lstrip().startswith(("import flwr_sdk", "from flwr_sdk")), new

    modules = imported_modules(rewritten)
    assert not {m for m in modules if m == "flwr" or m.startswith("flwr.")}, modules
    assert {m for m in modules if m.startswith("flwr_sdk")}
    # Apart from those names the two programs are the same program.
    restored = _BackToFlwr().visit(ast.parse(rewritten))
    assert ast.dump(restored) == ast.dump(ast.parse(source))


def test_rewrite_leaves_other_mentions_of_flwr_alone() -> None:
    source = (
        '"""Uses flwr.\n'
        "from flwr import x  (in a docstring: not an import)\n"
        '"""\n'
        "import flwr as fl\n"
        "from flwr.common import (\n"
        "    log,\n"
        ")\n"
        "if fl:\n"
        "    from flwr.client.mod import message_size_mod\n"
        "import flwrx\n"
        "from flwr_datasets import FederatedDataset\n"
        "name = 'flwr'\n"
        "fl.client.start_client\n"
    )
    assert rewrite_imports(source).splitlines() == [
        '"""Uses flwr.',
        "from flwr import x  (in a docstring: not an import)",
        '"""',
        "import flwr_sdk as fl",
        "from flwr_sdk.common import (",
        "    log,",
        ")",
        "if fl:",
        "    from flwr_sdk.client.mod import message_size_mod",
        "import flwrx",
        "from flwr_datasets import FederatedDataset",
        "name = 'flwr'",
        "fl.client.start_client",
    ]


def test_rewrite_refuses_an_import_it_cannot_rename_on_its_line() -> None:
    with pytest.raises(ValueError, match="line 1"):
        rewrite_imports("import os, flwr\n")
