"""The library's size and packaging: no module too big to hold one idea, and every file of the package in a
wheel."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

import vaelib

PACKAGE = Path(vaelib.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 400  # a module past this holds more than one idea: split it by concept (see STYLE.md)


def _dotted(folder: Path) -> str:
    return ".".join(folder.relative_to(ROOT).parts)


def test_no_module_is_above_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_bytes().splitlines()) for p in PACKAGE.rglob("*.py")}
    too_big = sorted((n, name) for name, n in sizes.items() if n > MAX_LINES)
    assert not too_big, (f"modules above {MAX_LINES} lines: "
                         + ", ".join(f"{name} ({n})" for n, name in reversed(too_big))
                         + "; split each into modules of one idea")


def test_the_wheel_ships_every_subpackage_and_data_file():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    include = setuptools["packages"]["find"]["include"]
    packages = [_dotted(p.parent) for p in PACKAGE.rglob("__init__.py")]
    missing = [p for p in packages if not any(fnmatch(p, pattern) for pattern in include)]
    assert missing == [], f"[tool.setuptools.packages.find] in pyproject.toml leaves out {missing}"
    data = setuptools.get("package-data", {})
    files = [p for p in PACKAGE.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    unshipped = [p.relative_to(ROOT).as_posix() for p in files
                 if not any(fnmatch(p.name, pattern) for pattern in data.get(_dotted(p.parent), []))]
    assert unshipped == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {unshipped}"
