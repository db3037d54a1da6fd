"""The import contract of docs/architecture.md: layers only import downward.

The layer table is read from the document itself, so the page and the check cannot
drift apart. Every ``import`` / ``from … import`` in every module of ``flwr_sdk`` counts,
including those inside functions and ``TYPE_CHECKING`` blocks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "flwr_sdk"
DOC = REPO / "docs" / "architecture.md"

NO_LINE_NAMES = ("flwr_sdk.transport", "flwr_sdk.app", "flwr_sdk.node_loop", "flwr_sdk.validation")
LINE_MODULE = re.compile(r"^(flwr_sdk_proto\.v\d+_\d+|flwr_sdk\.wire\.v\d+_\d+)")
SERVER_MUST_NOT_IMPORT = ("flwr_sdk.client", "flwr_sdk.clientapp", "flwr_sdk.transport")


def layer_table() -> dict[str, int]:
    """Module prefix → layer, from the table between the ``layers`` comments."""
    text = DOC.read_text()
    block = text.split("<!-- layers:", 1)[1].split("<!-- /layers -->", 1)[0]
    layers: dict[str, int] = {}
    for row in block.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`(flwr_sdk[\w.]*)`", cells[1]):
            layers[name] = int(cells[0])
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, own: str | None = None) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    own = own if own is not None else module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from flwr_sdk.pkg import module`` imports that module too.
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def layer_of(name: str, table: dict[str, int]) -> int | None:
    best: tuple[int, int] | None = None
    for prefix, layer in table.items():
        matches = name == prefix or name.startswith(prefix + ".")
        if matches and (best is None or len(prefix) > best[0]):
            best = (len(prefix), layer)
    return None if best is None else best[1]


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_table_names_every_module() -> None:
    table = layer_table()
    assert table, "no layer table found in docs/architecture.md"
    unplaced = [module_name(p) for p in sources() if layer_of(module_name(p), table) is None]
    assert unplaced == [], f"modules with no layer in docs/architecture.md: {unplaced}"


def upward_imports(path: Path, own: str, table: dict[str, int]) -> list[str]:
    own_layer = layer_of(own, table)
    assert own_layer is not None, own
    return [
        f"{own}:{line} (layer {own_layer}) imports {target} (layer {layer_of(target, table)})"
        for line, target in imports_of(path, own)
        if target.startswith("flwr_sdk") and (layer_of(target, table) or 0) > own_layer
    ]


def line_imports(path: Path, own: str) -> list[str]:
    return [
        f"{own}:{line} imports {target}"
        for line, target in imports_of(path, own)
        if LINE_MODULE.match(target)
    ]


def test_imports_only_run_downward() -> None:
    table = layer_table()
    violations = [v for p in sources() for v in upward_imports(p, module_name(p), table)]
    assert violations == [], "imports that run upward:\n" + "\n".join(violations)


def test_sessions_transports_and_app_name_no_line() -> None:
    violations = [
        v
        for path in sources()
        if module_name(path).startswith(NO_LINE_NAMES)
        for v in line_imports(path, module_name(path))
    ]
    assert violations == []


def test_the_server_does_not_import_the_client_side() -> None:
    violations = [
        f"{path.relative_to(REPO)}:{line} imports {target}"
        for path in sources()
        if module_name(path).startswith("flwr_sdk.server")
        for line, target in imports_of(path)
        if target.startswith(SERVER_MUST_NOT_IMPORT)
    ]
    assert violations == []


def test_the_checks_catch_violations(tmp_path: Path) -> None:
    """A wire module importing the transport layer; a transport importing a line."""
    table = layer_table()
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from flwr_sdk.transport.base import Connector\n")
    assert upward_imports(fake, "flwr_sdk.wire.fake", table)
    assert not upward_imports(fake, "flwr_sdk.app", table)
    fake.write_text("from flwr_sdk_proto.v1_12.flwr import proto as pb\n")
    assert line_imports(fake, "flwr_sdk.transport.fake")
    fake.write_text("from flwr_sdk.wire import v1_15\n")
    assert line_imports(fake, "flwr_sdk.transport.fake")


def module_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module → the ``flwr_sdk`` modules it imports (a package's ``__init__`` by its name).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else
    as importing ``pkg`` (a name its ``__init__`` defines or re-exports).
    """
    modules = {module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for own, path in modules.items():
        targets = {t for _, t in imports_of(path, own) if t in modules and t != own}
        # ``from pkg import module`` lists ``pkg`` too; the module alone is what runs.
        graph[own] = {
            t for t in targets if not any(o.startswith(t + ".") and o in targets for o in targets)
        }
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                members.append(top)
                if top == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other() -> None:
    """Imports run downward between modules too, not only between layers: no circles."""
    cycles = import_cycles(module_graph(sources()))
    assert cycles == [], "modules that import each other (directly or around a circle):\n" + (
        "\n".join(" <-> ".join(c) for c in cycles)
    )


def test_the_cycle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
