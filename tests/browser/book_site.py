"""Helpers shared by the browser checks: where the built book is, its pages, and their links and ids.

Plain functions (no fixtures), imported by ``conftest.py`` and ``test_book_browser.py``.
"""

from __future__ import annotations

import functools
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The book's sources (its _config.yml and notebooks): this repository unless BOOK_SOURCE says otherwise.
SOURCE = Path(os.environ.get("BOOK_SOURCE") or REPO).resolve()
PDF_NAME = "book.pdf"  # the whole book, printed by tools/print_pdf.py into the HTML folder

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI", "").strip().lower() == "true"
MATHJAX_TIMEOUT_MS = 20_000


def unavailable(reason: str):
    """Skip (locally) or fail (under CI=true) when the browser checks cannot run at all."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser checks must run)", pytrace=False)
    pytest.skip(reason)


def book_root() -> Path:
    path = Path(os.environ.get("BOOK_HTML", "_build/quick/_build/html"))
    return path if path.is_absolute() else (Path.cwd() / path if (Path.cwd() / path).exists() else REPO / path)


def book_pages(root: Path | None = None) -> list[str]:
    """Every HTML page of the built book, as paths relative to its root ('chapters/x.html')."""
    root = root or book_root()
    if not root.is_dir():
        return []
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        # _static, _sources, _images, ... hold assets and theme templates, not pages.
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        pages.append(rel.as_posix())
    return pages


class _IdCollector(HTMLParser):
    """The ids and names a fragment can point at, the links of a page, and its meta refresh."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href") is not None:
            self.hrefs.append(a["href"])
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            m = re.search(r"url=(.+)$", a.get("content") or "", re.I)
            self.refresh = m.group(1).strip() if m else None


@functools.lru_cache(maxsize=None)
def parse_page(path: str) -> _IdCollector:
    parser = _IdCollector()
    parser.feed((book_root() / path).read_text(encoding="utf-8", errors="replace"))
    return parser


def is_redirect(path: str) -> bool:
    return parse_page(path).refresh is not None
