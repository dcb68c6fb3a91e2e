"""vaelib's modules import each other in one direction: no circle, not even through an import inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import vaelib

PACKAGE = Path(vaelib.__file__).parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package at ``root`` (subpackages included) and the package's modules it imports,
    anywhere in its source: at the top, inside a function, under ``if TYPE_CHECKING``.

    An import of a module's own package (or of a package above it) is left out: Python imports a package
    before any module in it, so that edge is there for every module and says nothing."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # a relative import: from . import x, from ..y import z
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in paths and t != name and t not in ancestors}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules along it (the first repeated at the end), or ``None``."""
    state: dict[str, str] = {}  # "open" while its imports are being followed, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_vaelib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "vaelib's imports go in a circle: " + " -> ".join(cycle)


def test_the_graph_sees_a_circle_held_open_by_an_import_inside_a_function(tmp_path):
    """The check itself: a deferred import that closes a circle, through a subpackage, is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import thing\n")
    (pkg / "c.py").write_text("import pkg\n\ndef thing():\n    from pkg import a\n    return a\n")
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.a"}  # `import pkg`, its own package, is no edge
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("def thing():\n    return 1\n")
    assert find_cycle(import_graph(pkg)) is None
