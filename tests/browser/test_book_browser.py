"""The built HTML book, as a reader with no network sees it in Chromium.

Per page: it loads with no console errors, failed requests or requests leaving the machine; every image
loads and is not blank; every internal link and #anchor resolves. Book-wide: math is typeset by the
book's own MathJax; the search finds each page; the Binder/Colab launch links point at the page's
notebook on branch main; widget cells (tag ``widget-fallback``) show their static image; no live widget
view, widget placeholder text or tqdm residue is left in an output.

The book-wide checks adapt to the pages that exist: a check whose feature no page has yet is skipped,
and one whose feature is present and broken fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from book_site import SOURCE, book_pages, is_redirect, parse_page, unavailable

pytestmark = pytest.mark.browser

# A drawn image's pixels (all channels, 0-255) vary by more than this; a blank one's do not.
BLANK_STD = 1.0
SPECIAL_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
STOPWORDS = {"about", "after", "their", "there", "these", "those", "which", "while", "with", "from", "into",
             "step", "steps", "your", "what", "when", "where", "this", "that", "than", "then", "them"}


def _require_page(page_path):
    if page_path is None:
        unavailable("no built book: run `make book-quick` (or set BOOK_HTML)")


def _fmt(items, limit=15):
    items = list(items)
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  " + "\n  ".join(map(str, items[:limit])) + more


# --- every page ------------------------------------------------------------------------------------


def test_page_loads_cleanly(page_path, visits):
    """No console error or uncaught exception, no 4xx/5xx, nothing fetched from outside the book."""
    _require_page(page_path)
    v = visits(page_path)
    assert not v.external_requests, f"{page_path} requests resources from the network:{_fmt(v.external_requests)}"
    assert not v.bad_responses, f"{page_path} has failed requests:{_fmt(v.bad_responses)}"
    assert not v.console_errors, f"{page_path} logs errors:{_fmt(v.console_errors)}"


def test_images_load_and_are_not_blank(page_path, visits):
    _require_page(page_path)
    v = visits(page_path)  # a redirect page (index.html) has no images of its own
    broken = [i["src"] for i in v.images if not i["complete"] or i["width"] == 0]
    assert not broken, f"{page_path}: images that do not load:{_fmt(broken)}"
    unreadable = [f'{i["src"]}: {i["error"]}' for i in v.images if i["error"]]
    assert not unreadable, f"{page_path}: images whose pixels cannot be read:{_fmt(unreadable)}"
    blank = [f'{i["src"]} (pixel std {i["std"]:.3f})' for i in v.images if i["std"] is not None and i["std"] < BLANK_STD]
    assert not blank, f"{page_path}: blank images:{_fmt(blank)}"


def test_every_output_figure_has_a_caption_and_alt_text(page_path, visits):
    """A chapter's figures are figures: a caption to say what to look at, alt text to say what they show."""
    _require_page(page_path)
    if not page_path.startswith("chapters/0"):
        pytest.skip("not a chapter of the story")
    v = visits(page_path)
    bad = [f'{i["src"].rsplit("/", 1)[-1]}: alt {i["alt"]!r}, caption {i["caption"][:40]!r}'
           for i in v.images if i["output"] and (len(i["alt"]) < 15 or re.search(r"\.(png|jpe?g|svg)$", i["alt"])
                                                 or not i["caption"])]
    assert not bad, f"{page_path}: figures without a real caption and alt text:{_fmt(bad)}"


def test_the_machinery_is_out_of_sight(page_path, visits):
    """The Colab install cell and the test markers are for notebooks, not for the reader of the page."""
    _require_page(page_path)
    v = visits(page_path)
    for needle in ("NBVAL", "google.colab", "%pip install", "# claim:"):
        assert needle not in v.text, f"{page_path} shows {needle!r}"


def _local_target(page_path: str, href: str):
    """(target page path, fragment) for a link inside the book, or None for an outside link."""
    base = "http://book.invalid/"
    url = urljoin(base + page_path, href)
    if not url.startswith(base):
        return None  # another scheme or host (https://github.com/..., mailto:, javascript:)
    parts = urlsplit(url)
    path = unquote(parts.path[len("/"):])
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, unquote(parts.fragment)


def test_internal_links_and_anchors_resolve(page_path, book_dir):
    _require_page(page_path)
    page = parse_page(page_path)
    hrefs = list(page.hrefs) + ([page.refresh] if page.refresh else [])
    broken = []
    for href in hrefs:
        target = _local_target(page_path, href.strip())
        if target is None:
            continue
        path, fragment = target
        file = book_dir / path
        if not file.is_file():
            broken.append(f"{href!r}: no file {path}")
        elif fragment and path.endswith(".html") and fragment not in parse_page(path).ids:
            broken.append(f"{href!r}: no id {fragment!r} in {path}")
    assert not broken, f"{page_path}: broken internal links:{_fmt(broken)}"


# --- math --------------------------------------------------------------------------------------------


def test_math_is_typeset_by_the_books_own_mathjax(all_visits):
    with_math = [v for v in all_visits if v.math.get("count") or v.mathjax.get("hasMath")]
    if not with_math:
        pytest.skip("no page has math yet")
    problems = []
    for v in with_math:
        scripts = v.mathjax.get("scripts", [])
        if not scripts:
            problems.append(f"{v.path}: has math but loads no MathJax")
        for src in scripts:
            if urlsplit(src).hostname != "127.0.0.1":
                problems.append(f"{v.path}: MathJax comes from outside the book: {src}")
        if not v.mathjax.get("loaded"):
            problems.append(f"{v.path}: MathJax did not start" + (" (timed out)" if v.mathjax.get("timedOut") else ""))
            continue
        if v.math["untypeset"]:
            problems.append(f"{v.path}: {len(v.math['untypeset'])} math element(s) not typeset, e.g. {v.math['untypeset'][0]!r}")
        if v.math["count"] and not v.math["containers"]:
            problems.append(f"{v.path}: no MathJax output (mjx-container) at all")
        for err in v.math["errors"]:
            problems.append(f"{v.path}: TeX error {err!r}")
        for raw in v.math["raw"]:
            problems.append(f"{v.path}: raw TeX left in the text: ...{raw}...")
    assert not problems, "math problems:" + _fmt(problems, 30)


# --- search ------------------------------------------------------------------------------------------


def _title_word(path: str, book_dir: Path) -> str | None:
    """A distinctive word from the page's first heading, to search for."""
    html = (book_dir / path).read_text(encoding="utf-8", errors="replace")
    m = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    if not m:
        return None
    text = re.sub(r"<[^>]+>", " ", m.group(1))
    text = re.sub(r"\\\(.*?\\\)", " ", text)  # inline math
    words = [w for w in re.findall(r"[A-Za-z]{4,}", text) if w.lower() not in STOPWORDS]
    return max(words, key=len) if words else None


def test_search_finds_each_page_by_a_word_of_its_title(book_dir, search_page):
    content = [p for p in book_pages(book_dir) if p not in SPECIAL_PAGES and not is_redirect(p)]
    if not (book_dir / "search.html").is_file():
        pytest.fail("the book has no search.html")
    missing, searched = [], 0
    for path in content:
        word = _title_word(path, book_dir)
        if word is None:
            continue
        searched += 1
        found = search_page(word)
        if found is None:
            missing.append(f"search.html?q={word} never finished (is searchindex.js there?)")
        elif path not in found:
            missing.append(f"search.html?q={word} does not list {path} (found {found[:5]})")
    if not searched:
        pytest.skip("no page has a title word to search for")
    assert not missing, "search misses pages:" + _fmt(missing)


# --- launch buttons -----------------------------------------------------------------------------------


def _repository():
    cfg = yaml.safe_load((SOURCE / "_config.yml").read_text(encoding="utf-8"))
    repo = cfg.get("repository", {})
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", repo.get("url", ""))
    assert m, f"_config.yml repository.url is not a GitHub repository: {repo.get('url')!r}"
    book_path = (repo.get("path_to_book") or "").strip("/")
    return m.group(1), m.group(2), repo.get("branch"), (book_path + "/" if book_path else ""), cfg


def test_launch_links_open_the_pages_notebook_on_main(all_visits, book_dir):
    org, name, branch, book_prefix, cfg = _repository()
    assert branch == "main", f"repository.branch in _config.yml is {branch!r}, the launch links need 'main'"
    notebook_pages = [v for v in all_visits if (book_dir / "_sources" / v.path).with_suffix(".ipynb").is_file()]
    stray = [f"{v.path}: {link}" for v in all_visits if v not in notebook_pages for link in v.launch_links]
    assert not stray, "launch links on pages that are not notebooks:" + _fmt(stray)
    if not notebook_pages:
        pytest.skip("no notebook page yet")
    reader_branch = yaml.safe_load((SOURCE / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"][
        "reader_notebooks_branch"]
    launch = cfg.get("launch_buttons", {})
    ui = {"jupyterlab": "lab/tree", "classic": "tree"}[launch.get("notebook_interface", "classic")]
    problems = []
    for v in notebook_pages:
        notebook = book_prefix + str(Path(v.path).with_suffix(".ipynb").as_posix())
        if not (SOURCE / notebook).is_file():
            problems.append(f"{v.path}: its notebook {notebook} is not in the repository")
        expected = {
            "Binder": f"https://mybinder.org/v2/gh/{org}/{name}/{branch}?urlpath={ui}/{notebook}",
            # Colab opens the reader notebook (plain Markdown), published on its own branch
            "Colab": f"https://colab.research.google.com/github/{org}/{name}/blob/{reader_branch}/{notebook}",
        }
        for kind, url in expected.items():
            if url not in v.launch_links:
                problems.append(f"{v.path}: no {kind} link {url} (has {v.launch_links})")
    assert not problems, "launch link problems:" + _fmt(problems)


# --- widgets -----------------------------------------------------------------------------------------


def test_widget_cells_show_their_static_image(all_visits):
    cells = [(v.path, c) for v in all_visits for c in v.widgets.get("cells", [])]
    if not cells:
        pytest.skip("no cell is tagged widget-fallback yet")
    problems = []
    for path, cell in cells:
        where = f"{path} (cell {cell['id'] or 'tagged widget-fallback'})"
        if not cell["images"]:
            problems.append(f"{where}: no image in its output (the widget's bundle needs an image/png)")
        for img in cell["images"]:
            if not img["loaded"]:
                problems.append(f"{where}: its image does not load: {img['src']}")
            elif not img["visible"]:
                problems.append(f"{where}: its image is not visible: {img['src']}")
        if cell["widgetViews"]:
            problems.append(f"{where}: a live widget view is rendered instead of the image")
    assert not problems, "widget fallback problems:" + _fmt(problems)
    # Blank fallback images are caught by test_images_load_and_are_not_blank.


def test_no_broken_widget_or_progress_bar_output(all_visits):
    problems = [f"{v.path}: {p}" for v in all_visits for p in v.widgets.get("problems", [])]
    assert not problems, "widget output problems:" + _fmt(problems)
