"""The library's shape: book policy in one module, one model interface, no process-wide changes."""

from __future__ import annotations

import ast
from pathlib import Path

import vaelib

SOURCES = sorted(Path(vaelib.__file__).parent.rglob("*.py"))  # with the subpackages' modules
MODEL_CLASSES = {"VAE", "Autoencoder"}


def _calls(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def test_only_the_book_module_reads_environment_variables():
    readers = {p.name for p in SOURCES
               if any(isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv")
                      for n in ast.walk(ast.parse(p.read_text())))}
    assert readers == {"book.py"}


def test_no_module_but_models_tests_a_models_class():
    offenders = []
    for p in SOURCES:
        if p.name == "models.py":
            continue
        for call in _calls(ast.parse(p.read_text())):
            if isinstance(call.func, ast.Name) and call.func.id in ("isinstance", "type") and \
                    len(call.args) == 2 and _names(call.args[1]) & MODEL_CLASSES:
                offenders.append(f"{p.name}:{call.lineno}")
    assert offenders == []


def test_nothing_changes_process_wide_network_settings():
    for p in SOURCES:
        text = p.read_text()
        assert "setdefaulttimeout" not in text, p.name
