"""Which version of the book a page is (a Sphinx extension).

Every page's footer names the book's version
(``vaelib.__version__``, which ``pyproject.toml``, ``CITATION.cff`` and ``CHANGELOG.md`` repeat, checked by
``tests/test_conventions.py``), the commit it was built from, linked to the repository, and that commit's
date. The introduction says the same in its text, ``{{ book_version }}``, which the whole-book PDF prints
(print hides the footer). A downloaded notebook or a printed copy can then be matched with the library it
was made with.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def book_version() -> str:
    """``vaelib.__version__``, read from the source (the book may be built before vaelib is installed)."""
    m = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "vaelib" / "__init__.py").read_text(encoding="utf-8"), re.M)
    if not m:
        raise RuntimeError("vaelib/__init__.py has no __version__")
    return m.group(1)


def build_commit() -> tuple[str, str] | None:
    """(full hash, ISO date) of the commit the book is built from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H %cs"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[0], out[1]) if len(out) == 2 else None


def version_line(repository_url: str) -> str:
    """The footer's HTML: version, commit (linked) and date."""
    commit = build_commit()
    if commit is None:
        return f'<p class="book-version">Version {book_version()} (built outside a git checkout).</p>'
    sha, date = commit
    return (f'<p class="book-version">Version {book_version()}, built from commit '
            f'<a href="{repository_url.rstrip("/")}/commit/{sha}"><code>{sha[:7]}</code></a> of {date}.</p>')


def version_text() -> str:
    """The same in words, for the introduction's ``{{ book_version }}``."""
    commit = build_commit()
    where = f", built from commit {commit[0][:7]} of {commit[1]}" if commit else ""
    return f"version {book_version()}{where}"


def add_version_to_text(app, config) -> None:
    config.myst_substitutions = {**(config.myst_substitutions or {}), "book_version": version_text()}


def add_version_to_footer(app) -> None:
    options = app.config.html_theme_options
    url = options.get("repository_url", "")
    options["extra_footer"] = (options.get("extra_footer") or "") + version_line(url)


def setup(app):
    app.connect("config-inited", add_version_to_text)
    app.connect("builder-inited", add_version_to_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
