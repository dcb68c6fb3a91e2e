"""Every way a reader meets the built book: its buttons, its downloads, its PDF, and its keyboard focus.

- Launch buttons (Binder, Colab) only on pages that are notebooks; the "Running this book" page, which
  reads local benchmark files, has none. The repository and issues buttons use _config.yml's address.
- Each chapter's .ipynb download is the executed reader notebook, with its outputs: plain Markdown and a
  Colab install pinned to a commit; the same notebooks (``<build>/reader``, which the workflow publishes
  for Colab) run top to bottom in a fresh kernel.
- The book links to its whole-book PDF, which has every page's title and the figures; its pages are
  rendered with pdftoppm and none is blank (its math, bookmarks and column: test_paper_and_phone.py).
- Every interactive control shows a visible outline when reached with the keyboard (:focus-visible), in
  light and dark mode.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nbformat
import pytest
import yaml
from book_site import PDF_NAME, SOURCE, book_pages, is_redirect, parse_page, unavailable

sys.path.insert(0, str(SOURCE / "tools"))
from reader_notebooks import leftover_myst  # noqa: E402  (tools/ is a folder of scripts, not a package)

pytestmark = pytest.mark.browser

RUNNING_PAGE = "chapters/running.html"
CHAPTER_HTML = re.compile(r"^chapters/\d\d_.+\.html$")


def _repository() -> str:
    return yaml.safe_load((SOURCE / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"].rstrip("/")


def _chapters(book_dir: Path) -> list[str]:
    chapters = [p for p in book_pages(book_dir) if CHAPTER_HTML.match(p)]
    if not chapters:
        unavailable("the built book has no chapter pages")
    return chapters


def _resolve(page: str, href: str) -> str:
    return urlsplit(urljoin("http://book.invalid/" + page, href)).path.lstrip("/")


# --- buttons -------------------------------------------------------------------------------------------


def test_launch_buttons_only_where_the_page_can_run_elsewhere(book_dir):
    if not (book_dir / RUNNING_PAGE).is_file():
        pytest.fail(f"the book has no {RUNNING_PAGE}")
    running = (book_dir / RUNNING_PAGE).read_text(encoding="utf-8")
    assert "dropdown-launch-buttons" not in running, f"{RUNNING_PAGE} offers launch buttons"
    launch = [h for h in parse_page(RUNNING_PAGE).hrefs
              if re.search(r"mybinder\.org/v2|colab\.research\.google\.com/github", h)]
    assert not launch, f"{RUNNING_PAGE} links to launch services: {launch}"
    for page in _chapters(book_dir):
        assert "dropdown-launch-buttons" in (book_dir / page).read_text(encoding="utf-8"), \
            f"{page} has no launch buttons"


def test_repository_and_issue_buttons_use_the_books_address(book_dir):
    url = _repository()
    for page in _chapters(book_dir):
        hrefs = parse_page(page).hrefs
        assert url in hrefs, f"{page}: no repository button to {url}"
        assert any(h.startswith(f"{url}/issues/new") for h in hrefs), f"{page}: no issue button for {url}"


# --- downloads -----------------------------------------------------------------------------------------


def test_each_chapter_downloads_its_executed_notebook(book_dir):
    problems = []
    for page in _chapters(book_dir):
        links = [h for h in parse_page(page).hrefs if h.endswith(".ipynb") and "_sources/" in h]
        if not links:
            problems.append(f"{page}: no .ipynb download")
            continue
        nb = json.loads((book_dir / _resolve(page, links[0])).read_text(encoding="utf-8"))
        source = json.loads((SOURCE / Path(page).with_suffix(".ipynb")).read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        outputs = [o for c in code for o in c.get("outputs", [])]
        ids = [c.get("id") for c in source["cells"]]
        ids.insert(1, "books-numbers")  # the reader notebook's note that the text's numbers are the book's
        if [c.get("id") for c in nb["cells"]] != ids:
            problems.append(f"{page}: the download is not this chapter's notebook (rebuild the book?)")
        for index, cell in enumerate(nb["cells"]):
            left = leftover_myst("".join(cell["source"])) if cell["cell_type"] == "markdown" else []
            if left:
                problems.append(f"{page}: cell {index} of the download still holds MyST: {left}")
        install = [c for c in code if "google.colab" in "".join(c["source"])]
        if not install or not re.search(r"git\+https://\S+@[0-9a-f]{40}\b", "".join(install[0]["source"])):
            problems.append(f"{page}: the download's Colab cell does not install vaelib from a pinned commit")
        if not any("image/png" in o.get("data", {}) for o in outputs):
            problems.append(f"{page}: the download has no figures: it is not the executed notebook")
        if sum(bool(c.get("outputs")) for c in code) < len(code) / 3:
            problems.append(f"{page}: only {sum(bool(c.get('outputs')) for c in code)} of {len(code)} code "
                            "cells have outputs")
        if any(k.startswith("application/papermill.record/") for o in outputs for k in o.get("data", {})):
            problems.append(f"{page}: the download still carries glue records Jupyter cannot show")
        if nb.get("metadata", {}).get("widgets"):
            problems.append(f"{page}: the download stores widget state")
    assert not problems, "download problems:\n  " + "\n  ".join(problems)


# Two of the faster chapters: each reader notebook must run top to bottom as Colab would run it.
READER_RUNS = ["chapters/03_vae_encoder.ipynb", "chapters/06_reparameterization.ipynb"]


@pytest.mark.parametrize("notebook", READER_RUNS)
def test_the_reader_notebooks_run_top_to_bottom_in_quick_mode(book_dir, notebook, monkeypatch):
    from nbclient import NotebookClient

    path = book_dir.parent / "reader" / notebook
    if not path.is_file():
        pytest.fail(f"no reader notebook {path}: `make book-quick` writes them (tools/executed_notebooks.py)")
    assert (book_dir.parent / "reader" / "README.md").is_file()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for name, value in {"VAELIB_QUICK": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(SOURCE / "chapters")}}).execute()  # raises on an error
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


# --- the PDF -------------------------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} not found: apt-get install poppler-utils")
    return path


def _page_titles(book_dir: Path) -> list[str]:
    """The first heading of every page in the table of contents (as the HTML shows it)."""
    titles = []
    for page in book_pages(book_dir):
        if page in ("genindex.html", "search.html", "index.html"):
            continue
        html = (book_dir / page).read_text(encoding="utf-8")
        m = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
        if m:
            text = re.sub(r"<[^>]+>|#|\\\(.*?\\\)", " ", m.group(1))
            titles.append(re.sub(r"\s+", " ", text).strip())
    return titles


def test_the_book_links_to_its_pdf(book_dir, pdf):
    linking = [p for p in book_pages(book_dir) if any(_resolve(p, h) == PDF_NAME for h in parse_page(p).hrefs)]
    assert "intro.html" in linking, f"intro.html does not link to {PDF_NAME} (pages that do: {linking})"


def test_the_pdf_has_every_page(book_dir, pdf):
    info = subprocess.run([_need("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    titles = _page_titles(book_dir)
    assert pages >= 2 * len(titles), f"{pages} pages for {len(titles)} chapters and appendices"
    text = subprocess.run([_need("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    missing = [t for t in titles if t not in flat]
    assert not missing, f"page titles missing from the PDF: {missing}"


def _version() -> tuple[str, str]:
    """The book's version and the short hash of the commit the built book should name."""
    version = re.search(r'^__version__ = "([^"]+)"$', (SOURCE / "vaelib" / "__init__.py").read_text(encoding="utf-8"),
                        re.M).group(1)
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=SOURCE, capture_output=True, text=True,
                         check=True).stdout.strip()
    return version, sha


def test_every_page_names_its_version_commit_and_date(book_dir):
    version, sha = _version()
    line = re.compile(rf'<p class="book-version">Version {re.escape(version)}, built from commit <a href="'
                      rf'{re.escape(_repository())}/commit/{sha}[0-9a-f]{{33}}"><code>{sha}</code></a> of '
                      rf'\d{{4}}-\d\d-\d\d\.</p>')
    pages = [p for p in book_pages(book_dir)
             if not p.endswith(("search.html", "genindex.html")) and not is_redirect(p)]
    missing = [p for p in pages if not line.search((book_dir / p).read_text(encoding="utf-8"))]
    assert pages and not missing, f"pages without the version line for {version} at {sha}: {missing}"


def test_the_pdf_names_its_version_and_commit(pdf):
    version, sha = _version()
    text = re.sub(r"\s+", " ", subprocess.run([_need("pdftotext"), str(pdf), "-"], capture_output=True, text=True,
                                              check=True).stdout)
    assert f"This copy of the book is version {version}, built from commit {sha} of " in text, \
        "the PDF does not say which version it is"


def test_the_pdf_has_the_figures(book_dir, pdf):
    figures = set()
    for page in book_pages(book_dir):
        html = (book_dir / page).read_text(encoding="utf-8")
        figures |= set(re.findall(r'<img[^>]+src="[^"]*_images/([^"]+\.png)"', html))
    listing = subprocess.run([_need("pdfimages"), "-list", str(pdf)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    images = [line for line in listing if line.split()[2:3] == ["image"]]
    assert figures, "the book has no figures to look for"
    assert len(images) >= len(figures), f"the PDF has {len(images)} images, the book {len(figures)} figures"


def test_the_pdf_pages_render_and_none_is_blank(pdf, tmp_path):
    from PIL import Image, ImageStat

    subprocess.run([_need("pdftoppm"), "-r", "24", "-gray", "-png", str(pdf), str(tmp_path / "p")], check=True)
    rendered = sorted(tmp_path.glob("p-*.png"))
    assert rendered, "pdftoppm rendered no page"
    blank = []
    for png in rendered:
        with Image.open(png) as im:
            # The fraction of pixels with ink: a page with only its page number has almost none.
            ink = sum(ImageStat.Stat(im.point(lambda v: 255 if v < 160 else 0)).mean) / 255
        if ink < 0.005:
            blank.append(f"{png.name} ({ink:.2%} ink)")
    assert not blank, f"blank pages in the PDF: {blank}"


# --- keyboard focus ------------------------------------------------------------------------------------

# The controls a keyboard user must be able to reach, and see when focused.
CONTROLS = {
    "search": ".search-button__button",
    "primary sidebar toggle": ".primary-toggle",
    "launch buttons": ".dropdown-launch-buttons .dropdown-toggle",
    "repository buttons": ".dropdown-source-buttons .dropdown-toggle",
    "download buttons": ".dropdown-download-buttons .dropdown-toggle",
    "theme switch": ".theme-switch-button",
}

FOCUS_STYLE = """(selectors) => {
  const e = document.activeElement;
  const name = Object.keys(selectors).find(k => e.matches(selectors[k])) || null;
  const cs = getComputedStyle(e);
  const rgba = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  let bg = [255, 255, 255], node = e;
  while (node) { const c = rgba(getComputedStyle(node).backgroundColor); if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) { bg = c; break; } node = node.parentElement; }
  const out = rgba(cs.outlineColor), l1 = lum(out), l2 = lum(bg);
  return {name, focusVisible: e.matches(':focus-visible'), style: cs.outlineStyle, width: parseFloat(cs.outlineWidth),
          alpha: out.length > 3 ? out[3] : 1, contrast: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05),
          label: e.getAttribute('aria-label') || e.title || e.tagName};
}"""


def _outline_problems(style: dict) -> list[str]:
    problems = []
    if style["style"] in ("none", "hidden") or style["width"] < 2:
        problems.append(f"outline {style['style']} {style['width']}px")
    elif style["alpha"] < 0.5 or style["contrast"] < 3:
        problems.append(f"outline barely visible (alpha {style['alpha']}, contrast {style['contrast']:.1f}:1)")
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_control_shows_its_keyboard_focus(browser, base_url, book_dir, scheme):
    page_path = _chapters(book_dir)[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme,
                                  service_workers="block")
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort())
    page = context.new_page()
    try:
        page.goto(base_url + page_path, wait_until="load")
        reached, problems = {}, []
        for _ in range(60):
            page.keyboard.press("Tab")
            style = page.evaluate(FOCUS_STYLE, CONTROLS)
            if style["name"] and style["name"] not in reached:
                reached[style["name"]] = style
                if not style["focusVisible"]:
                    problems.append(f"{style['name']}: keyboard focus does not match :focus-visible")
                problems += [f"{style['name']}: {p}" for p in _outline_problems(style)]
            if len(reached) == len(CONTROLS):
                break
        missing = sorted(set(CONTROLS) - set(reached))
        assert not missing, f"{page_path} ({scheme}): not reachable with Tab: {missing}"

        # Inside an open dropdown: Enter opens it, the arrow keys move through its items.
        page.focus(CONTROLS["launch buttons"])
        page.keyboard.press("Enter")
        page.keyboard.press("ArrowDown")
        item = page.evaluate(FOCUS_STYLE, {"dropdown item": ".dropdown-launch-buttons .dropdown-item"})
        if item["name"] is None:
            problems.append(f"the launch menu's items are not reachable with the keyboard (focus on {item['label']})")
        else:
            problems += [f"launch menu item: {p}" for p in _outline_problems(item)]
        assert not problems, f"{page_path} ({scheme}) focus problems:\n  " + "\n  ".join(problems)
    finally:
        context.close()
