"""The reader's install: requirements-reader.txt holds what running the chapters needs and no tool that builds
or tests the book; requirements.txt is that set plus the tools; binder/ pins the same set; `make lab` installs
only that set.

"What the chapters need" is read from the chapters themselves: the imports of their code cells, followed
through every vaelib module they import, mapped to the distributions that provide them here, must each be a
package of the reader set or a dependency of one.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
READER = ROOT / "requirements-reader.txt"
FULL = ROOT / "requirements.txt"
BINDER = ROOT / "binder" / "requirements.txt"
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
# Tools that build or test the book; none belongs in a reader's install.
TOOLS = {"jupyter-book", "sphinx", "sphinxcontrib-bibtex", "nbval", "pytest", "playwright", "hypothesis"}
# What running the chapters needs that no import shows: Jupyter Lab, MyST in it, a kernel, and the widget
# manager of chapter 7's explorer (ipywidgets 8 brings it).
TO_RUN_THEM = {"jupyterlab", "jupyterlab-myst", "ipykernel", "jupyterlab-widgets"}
# The Colab cell's own module, present only on Colab.
COLAB_ONLY = {"google"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> dict[str, Requirement]:
    """name -> requirement, following ``-r FILE`` as pip does; other options (an index) are not requirements."""
    reqs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            reqs.update(read_requirements(path.parent / line.split(maxsplit=1)[1]))
        elif not line.startswith("-"):
            req = Requirement(line)
            assert _name(req.name) not in reqs, f"{path.name} lists {req.name} twice"
            reqs[_name(req.name)] = req
    return reqs


# --- the two sets ------------------------------------------------------------------------------------------


def test_requirements_txt_is_the_reader_set_plus_the_tools():
    lines = FULL.read_text(encoding="utf-8").splitlines()
    assert "-r requirements-reader.txt" in lines, "requirements.txt must include requirements-reader.txt"
    full, reader = read_requirements(FULL), read_requirements(READER)
    for name, req in reader.items():
        assert str(full[name]) == str(req), f"requirements.txt and requirements-reader.txt disagree on {name}"
    assert set(full) - set(reader) >= TOOLS - {"sphinx"}, "requirements.txt lacks a build or test tool"


def test_the_reader_set_has_no_build_or_test_tool():
    reader = read_requirements(READER)
    tools = sorted(n for n in reader if n in TOOLS or n.startswith(("sphinx", "pytest", "jupyter-book")))
    assert not tools, f"requirements-reader.txt lists build or test tools: {tools}"


# --- what the chapters import --------------------------------------------------------------------------------


def _code_cells(notebook: Path):
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            # IPython's %magics and !shell lines are not Python; keep the indentation valid.
            yield re.sub(r"^(\s*)[%!].*$", r"\1pass", src, flags=re.M)


def _optional(tree: ast.AST) -> set[int]:
    """Nodes inside ``try: ... except ImportError``: imports that may fail (myst_nb's glue, present in a build)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imports(source: str) -> set[str]:
    """Modules that ``source`` imports, with those it asks importlib about by name (``find_spec("mlxtend")``)."""
    found, tree = set(), ast.parse(source)
    optional = _optional(tree)
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("find_spec", "import_module") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def imports_of_the_chapters(notebooks=CHAPTERS) -> set[str]:
    """Top-level third-party modules the chapters import, directly or through vaelib."""
    todo = set().union(*(_imports(src) for nb in notebooks for src in _code_cells(nb)))
    seen, third_party = set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        top = module.split(".")[0]
        if top == "vaelib":
            path = ROOT.joinpath(*module.split("."))
            source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
            if source.is_file():
                todo |= _imports(source.read_text(encoding="utf-8"))
        elif top not in sys.stdlib_module_names and top not in COLAB_ONLY:
            third_party.add(top)
    return third_party


def _installed_closure(names) -> set[str]:
    """The distributions ``names`` bring, as this environment has them installed (extras left out)."""
    seen, todo = set(), [_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_name(req.name))
    return seen


def test_the_reader_set_brings_everything_the_chapters_import():
    modules = imports_of_the_chapters()
    assert {"torch", "matplotlib", "numpy", "mlxtend", "ipywidgets"} <= modules, modules  # the walk works
    provided = md.packages_distributions()
    reader = read_requirements(READER)
    brought = _installed_closure(reader)
    missing = {}
    for module in sorted(modules):
        dists = {_name(d) for d in provided.get(module, [])}
        assert dists, f"the chapters import {module}, which no installed distribution provides"
        if not dists & brought:
            missing[module] = sorted(dists)
    assert not missing, f"the chapters import modules that requirements-reader.txt does not bring: {missing}"


def test_the_reader_set_brings_jupyter_lab_to_run_them_in():
    reader = read_requirements(READER)
    assert TO_RUN_THEM <= _installed_closure(reader), TO_RUN_THEM - _installed_closure(reader)
    # ipywidgets 8 is the one whose widget manager works in Jupyter Lab 4.
    assert reader["ipywidgets"].specifier.contains("8.1.0") and not reader["ipywidgets"].specifier.contains("7.8")


def test_the_reader_set_brings_vaelibs_own_dependencies():
    """`pip install --no-deps -e .` follows the reader set, so it must hold what pyproject.toml declares."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reader = read_requirements(READER)
    missing = [d for d in project["dependencies"] if _name(Requirement(d).name) not in reader]
    assert not missing, f"requirements-reader.txt lacks vaelib's dependencies {missing}"


def test_the_import_walk_sees_an_import_the_reader_set_lacks(tmp_path):
    """The check above can fail: a chapter that imports a package of the tools is caught."""
    nb = tmp_path / "08_new.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["import playwright.sync_api\n", "%matplotlib inline\n"]}]}))
    modules = imports_of_the_chapters([nb])
    assert modules == {"playwright"}
    assert not {_name(d) for d in md.packages_distributions()["playwright"]} & _installed_closure(read_requirements(READER))


# --- Binder ---------------------------------------------------------------------------------------------------


def test_binder_pins_the_reader_set():
    """Binder installs the reader's set, each package at one version inside requirements-reader.txt's range,
    with the CPU-only PyTorch of the same version."""
    reader = read_requirements(READER)
    binder = read_requirements(BINDER)
    assert set(binder) == set(reader), (f"binder/requirements.txt and requirements-reader.txt differ: "
                                        f"only Binder {sorted(set(binder) - set(reader))}, "
                                        f"only the reader set {sorted(set(reader) - set(binder))}")
    for name, req in binder.items():
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"binder/requirements.txt: {req} is not pinned"
        version = pins[0].version
        assert reader[name].specifier.contains(version.split("+")[0], prereleases=True), \
            f"binder/requirements.txt pins {name} {version}, outside requirements-reader.txt's {reader[name].specifier}"
    assert str(binder["torch"].specifier).endswith("+cpu"), "Binder must install the CPU-only PyTorch"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in BINDER.read_text(encoding="utf-8")


# --- make lab ---------------------------------------------------------------------------------------------


def _recipe(makefile: str, target: str) -> tuple[str, str]:
    m = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", makefile, re.M)
    assert m, f"the Makefile has no {target} target"
    return m.group(1), m.group(2)


def test_make_lab_installs_the_reader_set_only():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    prereqs, _ = _recipe(makefile, "lab")
    assert prereqs.split() == ["$(READER_STAMP)"], f"`make lab` should install the reader set first: {prereqs}"
    deps, recipe = _recipe(makefile, "$(READER_STAMP)")
    assert "requirements-reader.txt" in deps.split(), deps
    assert re.search(r"pip install .*-r requirements-reader\.txt", recipe), recipe
    assert "requirements.txt" not in recipe.replace("requirements-reader.txt", ""), recipe
    # On Linux, the CPU-only PyTorch from PyTorch's own index
    m = re.search(r"^TORCH_INDEX\s*\?=\s*(.*)$", makefile, re.M)
    assert m and "https://download.pytorch.org/whl/cpu" in m.group(1) and "Linux" in m.group(1), m
    assert "$(TORCH_INDEX)" in recipe, recipe
    # `make install` (the whole stack) still installs requirements.txt
    deps, recipe = _recipe(makefile, "$(STAMP)")
    assert "requirements-reader.txt" in deps.split() and "requirements.txt" in deps.split(), deps
    assert re.search(r"pip install .*-r requirements\.txt", recipe), recipe
