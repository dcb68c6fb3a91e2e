"""The book on a phone and on paper.

On a 390-px phone (an iPhone 12-15 in portrait): no page scrolls sideways; a display equation wider than
the column scrolls inside its own box; a figure shown smaller than its own size opens alone when tapped, so
the reader can zoom into its text; every page's header links the whole-book PDF.

On paper (the whole-book PDF, and the single page it is printed from, laid out for print at the PDF's
column width): no display equation, table or code block is wider than the column; the bookmarks are the
table of contents, one per page and section, titled as the pages' headings; the math is text that
pdftotext finds; no sentence points at the website's buttons; no link points at the temporary server the
PDF was printed from.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from book_site import PDF_NAME, SOURCE, book_pages, is_redirect, unavailable

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# A4 less the PDF's 14-mm side margins (tools/print_pdf.py), in CSS pixels (96 per inch): 182 mm.
PRINT_COLUMN_PX = 688


def _fmt(items, limit=15):
    items = list(items)
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  " + "\n  ".join(map(str, items[:limit])) + more


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} not found: apt-get install poppler-utils")
    return path


# --- the phone -----------------------------------------------------------------------------------------

PHONE_LAYOUT = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const width = document.documentElement.clientWidth;
  const clipped = e => { for (let x = e.parentElement; x && x !== document.body; x = x.parentElement)
                           if (getComputedStyle(x).overflowX !== 'visible') return true; return false; };
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 1 && !clipped(e) && getComputedStyle(e).position !== 'fixed')
    .slice(0, 5).map(e => `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]} to `
                          + `${Math.round(e.getBoundingClientRect().right)} px: `
                          + JSON.stringify((e.textContent || '').trim().slice(0, 50)));
  const equations = [...document.querySelectorAll('mjx-container[display="true"]')].map(c => {
    const inner = c.firstElementChild.getBoundingClientRect().width, box = c.getBoundingClientRect();
    return {wider: inner > box.width + 1, scrolls: ['auto', 'scroll'].includes(getComputedStyle(c).overflowX),
            right: box.right, text: c.textContent.slice(0, 40)};
  });
  const images = [...document.querySelectorAll('article.bd-article img')].filter(i => i.naturalWidth > 0).map(i => {
    const link = i.closest('a[href]');
    return {src: i.currentSrc || i.src, shown: i.getBoundingClientRect().width, natural: i.naturalWidth,
            link: link ? link.href : null};
  });
  const headerPdf = [...document.querySelectorAll('.bd-header-article a[href], .bd-header a[href]')]
    .some(a => new URL(a.href).pathname.endsWith('/book.pdf'));
  return {width, scrollWidth: document.documentElement.scrollWidth, wide, equations, images, headerPdf};
}"""


@pytest.fixture(scope="module")
def phone_pages(browser, base_url, book_dir):
    """page path -> what a 390-px phone shows of it, for every page of the book."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, service_workers="block")
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort())
    seen = {}
    try:
        for path in book_pages(book_dir):
            if is_redirect(path):
                continue
            page = context.new_page()
            page.goto(base_url + path, wait_until="load")
            seen[path] = page.evaluate(PHONE_LAYOUT)
            page.close()
    finally:
        context.close()
    if not seen:
        unavailable("no built book: run `make book-quick` (or set BOOK_HTML)")
    return seen


def test_no_page_scrolls_sideways_on_a_phone(phone_pages):
    wide = [f"{p}: {v['scrollWidth']} px wide, e.g.{_fmt(v['wide'], 3)}" for p, v in phone_pages.items()
            if v["scrollWidth"] > v["width"]]
    assert not wide, f"pages wider than a {PHONE['width']}-px phone:" + _fmt(wide)


def test_a_long_equation_scrolls_in_its_own_box_on_a_phone(phone_pages):
    equations = [(p, e) for p, v in phone_pages.items() for e in v["equations"]]
    if not any(e["wider"] for _, e in equations):
        pytest.skip("no display equation is wider than a phone's column")
    bad = [f"{p}: {e['text']!r}" for p, e in equations
           if e["wider"] and not e["scrolls"] or e["right"] > PHONE["width"] + 1]
    assert not bad, "display equations that neither fit nor scroll in their own box:" + _fmt(bad)


def test_a_shrunk_figure_opens_alone_when_tapped(phone_pages):
    """A figure narrower on the phone than its own pixels has text too small to read: tapping it must open
    the image file itself, which the browser zooms."""
    shrunk = [(p, i) for p, v in phone_pages.items() for i in v["images"] if 0 < i["shown"] < 0.9 * i["natural"]]
    if not shrunk:
        pytest.skip("no figure is shrunk on a phone")
    bad = [f"{p}: {i['src'].rsplit('/', 1)[-1]} ({i['natural']} px shown at {i['shown']:.0f})"
           for p, i in shrunk if i["link"] != i["src"]]
    assert not bad, "shrunk figures that do not open at full size when tapped:" + _fmt(bad)


def test_every_page_header_links_the_whole_book_pdf(phone_pages, book_dir):
    if not (book_dir / PDF_NAME).is_file():
        pytest.fail(f"no {PDF_NAME} in the built book: `make book-quick` prints it (tools/print_pdf.py)")
    missing = [p for p, v in phone_pages.items() if not v["headerPdf"]]
    assert not missing, f"pages whose header does not link {PDF_NAME}:" + _fmt(missing)


# --- the page the PDF is printed from, laid out for print ----------------------------------------------

PRINT_LAYOUT = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const article = document.querySelector('article.bd-article');
  const right = article.getBoundingClientRect().right;
  const where = e => (e.closest('section[id]') || {}).id;
  const cut = [];
  for (const c of article.querySelectorAll('mjx-container[display="true"]')) {
    const inner = c.firstElementChild.getBoundingClientRect(), box = c.getBoundingClientRect();
    if (inner.width > box.width + 1 || inner.right > right + 1)
      cut.push(`equation in #${where(c)}: ${Math.round(inner.width)} px in a ${Math.round(box.width)}-px column`);
  }
  for (const t of article.querySelectorAll('table, pre')) {
    const box = t.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > right + 1 || t.scrollWidth > t.clientWidth + 1)
      cut.push(`${t.tagName.toLowerCase()} in #${where(t)}: ${Math.max(t.scrollWidth, Math.round(box.width))} px, `
               + `the column ends at ${Math.round(right)}`);
    for (let x = t.parentElement; x && x !== article; x = x.parentElement)
      if (getComputedStyle(x).overflowX !== 'visible' && x.scrollWidth > x.clientWidth + 1) {
        cut.push(`${t.tagName.toLowerCase()} in #${where(t)}: cut by a ${x.clientWidth}-px box`); break; }
  }
  return cut;
}"""


@pytest.fixture(scope="module")
def single_page(book_dir):
    page = book_dir.parent / "singlehtml" / "intro.html"
    if not page.is_file():
        pytest.fail(f"no single-page book at {page}: `make book-quick` builds it before printing the PDF")
    return page


def test_nothing_is_wider_than_the_printed_column(browser, single_page):
    """Laid out for print with the website's MathJax (SVG); the PDF's CHTML output has the same TeX metrics
    (the six equations this test first caught measured the same width, to a pixel, in both)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(single_page.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context(viewport={"width": PRINT_COLUMN_PX, "height": 1000}, service_workers="block")
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort())
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/{single_page.name}", wait_until="load", timeout=60_000)
        page.emulate_media(media="print")
        cut = page.evaluate(PRINT_LAYOUT)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    assert not cut, "cut off on paper:" + _fmt(cut, 30)


# --- the PDF -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_text(pdf):
    return subprocess.run([_need("pdftotext"), str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((SOURCE / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    return [re.sub(r"\.(md|ipynb)$", "", f) + ".html" for f in files]


def _headings(html: str) -> list[tuple[int, str]]:
    """(depth, text) of the page's h1-h4 in its article: the title is depth 0, its sections 1, and so on."""
    article = html[html.index('<article class="bd-article">'):]
    out = []
    for m in re.finditer(r"<h([1-4])[^>]*>(.*?)</h\1>", article, re.S):
        text = re.sub(r'<a class="headerlink".*?</a>', "", m.group(2), flags=re.S)
        out.append((int(m.group(1)) - 1, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip()))
    return out


def _letters(text: str) -> str:
    """Only the ASCII letters and digits, TeX commands dropped: how a title with math compares across routes
    (\\(\\mathcal{N}(0, I)\\) in the HTML, N(0,I) in the PDF; \\sigma and σ both vanish)."""
    return re.sub(r"[^A-Za-z0-9]", "", re.sub(r"\\[A-Za-z]+", "", text))


def _pdf_outline(pdf: Path) -> list[tuple[int, str]]:
    xml = subprocess.run([_need("pdftohtml"), "-xml", "-i", "-q", "-f", "1", "-l", "1", "-stdout", str(pdf)],
                         capture_output=True, text=True, check=True).stdout
    import html as html_lib

    out, depth = [], -1
    for m in re.finditer(r"<outline>|</outline>|<item[^>]*>(.*?)</item>", xml, re.S):
        if m.group(0) == "<outline>":
            depth += 1
        elif m.group(0) == "</outline>":
            depth -= 1
        else:
            out.append((depth, html_lib.unescape(m.group(1)).strip()))
    return out


def test_the_pdf_bookmarks_are_the_table_of_contents(pdf, book_dir):
    expected = []
    for page in _toc_pages():
        path = book_dir / page
        assert path.is_file(), f"{page} of _toc.yml is not in the built book"
        expected += _headings(path.read_text(encoding="utf-8"))
    actual = _pdf_outline(pdf)
    problems = []
    for i in range(max(len(expected), len(actual))):
        want = expected[i] if i < len(expected) else None
        got = actual[i] if i < len(actual) else None
        if want is None or got is None:
            problems.append(f"bookmark {i + 1}: expected {want}, the PDF has {got}")
            continue
        same = got[1] == want[1] if "\\(" not in want[1] else (_letters(got[1]) == _letters(want[1])
                                                              and "\\" not in got[1])
        if got[0] != want[0] or not same:
            problems.append(f"bookmark {i + 1}: expected {want}, the PDF has {got}")
    assert not problems, f"{len(actual)} bookmarks for {len(expected)} headings:" + _fmt(problems, 20)


def test_the_pdf_math_is_text(pdf_text):
    """The intro's inline formulas are text in the PDF, between the words around them in the source (drawn
    as paths they leave the words side by side; untypeset they print as TeX)."""
    source = (SOURCE / "intro.md").read_text(encoding="utf-8")
    formulas = {(m.group(1), m.group(2), m.group(3).strip())
                for m in re.finditer(r"(\w+) \$([^$\n]+)\$([,.;:]|\s+\w+)", source)}
    assert formulas, "intro.md has no inline formula between two words"
    flat = re.sub(r"\s+", "", pdf_text)
    missing = [f"{before} ${tex}$ {after}" for before, tex, after in formulas
               if before + re.sub(r"\\[A-Za-z]+|[{}\s]", "", tex) + after not in flat]
    assert not missing, "formulas that are not text in the PDF:" + _fmt(missing)
    for letter in "μσ":
        assert letter in pdf_text, f"no {letter!r} in the PDF's text: its math is not searchable"


def test_no_sentence_on_paper_points_at_buttons(pdf_text):
    """Paper has no buttons: the text names them as the website's, or not at all."""
    flat = re.sub(r"\s+", " ", pdf_text)
    hits = re.findall(r"[^.]{0,60}\bbuttons? (?:above|below)[^.]{0,40}|(?<!website, )\bthe rocket icon[^.]{0,40}",
                      flat, re.I)
    assert not hits, "sentences about buttons that paper does not have:" + _fmt(hits)


def test_no_pdf_link_points_at_the_print_server(pdf):
    data = pdf.read_bytes()
    local = sorted(set(re.findall(rb"/URI \((https?://(?:127\.0\.0\.1|localhost)[^)]*)\)", data)))
    assert not local, "links to the temporary server the PDF was printed from:" + _fmt(u.decode() for u in local)
