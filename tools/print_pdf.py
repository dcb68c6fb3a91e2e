"""Print the book's single-page HTML to one PDF with Debian's Chromium: no TeX needed.

    python tools/print_pdf.py _build/singlehtml/intro.html _build/html/book.pdf
    python tools/print_pdf.py --optional ...   # no Chromium: say so and print nothing, instead of failing

``make pdf`` runs it after ``jupyter-book build --builder singlehtml``, which reuses the execution cache
of the HTML build, so no notebook runs again. The page is served from 127.0.0.1 and every request that
would leave the machine is refused, as for a reader with no network. Before printing, the script waits
until the book's own MathJax has typeset every formula and every image has loaded: a PDF printed earlier
would show raw TeX or empty frames. Chromium is ``/usr/bin/chromium`` or ``$CHROMIUM``; Playwright (from
PyPI) drives it, and its own browser download is never used.

Paper differs from the screen in three ways this script takes care of:

- **Searchable math.** The website draws math as SVG paths (one self-contained script, no fonts to load),
  which a PDF cannot search or copy. For print, the page's MathJax request gets MathJax's CHTML build instead
  (same version, from ``--mathjax``, which the Makefile fills from the same checked npm tarball), which sets
  the math in MathJax's web fonts: the PDF holds the formulas as text. Measured on the quick book: the SVG
  route gives 0 "μ" in ``pdftotext``'s output and 14.9 MB; CHTML 115 and 13.1 MB, same page count; SVG
  with MathJax's hidden MathML made printable gives searchable text too, but 16.7 MB and text that does not
  sit on the drawn glyphs.
- **Bookmarks.** Chromium names each bookmark after the text it paints inside the heading, so a heading
  drawn at the top of a page came out twice ("1. 1. The plain autoencoderThe plain autoencoder"), inline code
  and math went missing, and the print-only contents block added its own. The page is given one heading per
  chapter and section (the others lose their heading role), and after printing the bookmarks are rewritten
  with each heading's text and the book's structure: one top-level entry per page of the table of contents,
  with its sections under it.
- **Links.** A link to a file of the website (an image, ``book.pdf`` itself) would point at this script's
  temporary server; on paper it is plain text.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 60_000
ROOT = Path(__file__).resolve().parents[1]
# MathJax's CHTML build and its fonts (the Makefile extracts them next to the website's SVG build).
MATHJAX_PRINT = ROOT / "_build" / "vendor" / "mathjax-print"
# The page asks for the website's MathJax here (mathjax_path in _config.yml, under _static/).
MATHJAX_URL = "/_static/mathjax/"
MATHJAX_SCRIPT = "tex-svg-full.js"

# Resolves once MathJax has typeset the page (or at once when the page has no math); true when done.
WAIT_FOR_MATH = """async (timeout) => {
  if (!document.querySelector('.math')) return true;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const t0 = Date.now();
  while (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
    if (Date.now() - t0 > timeout) return false;
    await sleep(50);
  }
  return Promise.race([window.MathJax.startup.promise.then(() => true), sleep(timeout).then(() => false)]);
}"""

# Lazy images load only when scrolled into view, which printing does not do: load them all first.
LOAD_IMAGES = """async () => {
  const imgs = [...document.images];
  for (const img of imgs) img.loading = 'eager';
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src);
}"""

# The page as paper needs it, once typeset (see the module's docstring): links into the temporary server
# become plain text, headings outside the book's text lose their heading role, and each remaining heading
# is returned as [depth, title] in document order. A chapter's title is depth 0 like the introduction's, as
# in the table of contents: the single page nests every chapter inside the introduction (.toctree-wrapper).
PREPARE_FOR_PAPER = r"""() => {
  for (const a of document.querySelectorAll('a[href]')) {
    const url = new URL(a.href, location.href);
    if (url.origin === location.origin && !(url.pathname === location.pathname && url.hash)) a.removeAttribute('href');
  }
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  // The book's title: the theme's print-only title block stands in for the introduction's own, hidden in print.
  const title = document.querySelector('#jb-print-docs-body > h1');
  const article = document.querySelector('article.bd-article');
  const headings = [];
  for (const e of document.querySelectorAll('h1, h2, h3, h4, h5, h6, [role="heading"]')) {
    const text = e === title || (article.contains(e) && /^H[1-6]$/.test(e.tagName));
    if (text && shown(e)) { headings.push(e); continue; }
    e.setAttribute('role', 'none');
  }
  return headings.map(h => {
    const copy = h.cloneNode(true);
    copy.querySelectorAll('.headerlink').forEach(e => e.remove());
    copy.querySelectorAll('mjx-container').forEach(m => {
      const mml = m.querySelector('mjx-assistive-mml, math');
      m.replaceWith(mml ? mml.textContent : '');
    });
    let depth = Number(h.tagName[1]) - 1;
    for (let e = h.parentElement; e; e = e.parentElement) if (e.classList.contains('toctree-wrapper')) depth -= 1;
    return [Math.max(0, depth), copy.textContent.replace(/\s+/g, ' ').trim()];
  });
}"""

FOOTER = ('<div style="font-size: 8px; width: 100%; text-align: center; color: #555;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _PrintHandler(_QuietHandler):
    """Serves the built page, except that MathJax comes from ``mathjax`` (the CHTML build, with its fonts)."""

    def __init__(self, *args, mathjax: Path, **kwargs):
        self.mathjax = mathjax
        super().__init__(*args, **kwargs)

    def translate_path(self, path):
        path = urlsplit(path).path
        if path.startswith(MATHJAX_URL):
            name = path[len(MATHJAX_URL):]
            return str(self.mathjax / ("tex-chtml-full.js" if name == MATHJAX_SCRIPT else name))
        return super().translate_path(path)


# --- the bookmarks ---------------------------------------------------------------------------------------
# Chromium writes a classic PDF (one cross-reference table, no object streams), so the outline can be
# replaced by an incremental update: new outline objects and a new catalog appended after the file's end.


def _pdf_objects(data: bytes) -> tuple[dict[int, int], dict[str, bytes], int]:
    """(object number -> offset, trailer entries, offset of the cross-reference table) of a classic PDF."""
    start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    table = re.match(rb"xref\s+(.*?)trailer\s*<<(.*?)>>", data[start:], re.S)
    if table is None:
        raise SystemExit("print_pdf: the PDF has no classic cross-reference table, so its bookmarks cannot be set")
    offsets, lines, i = {}, table.group(1).split(b"\n"), 0
    while i < len(lines):
        head = lines[i].split()
        i += 1
        if len(head) != 2:
            continue
        first, count = int(head[0]), int(head[1])
        for k in range(count):
            offset, _gen, kind = lines[i + k].split()[:3]
            if kind == b"n":
                offsets[first + k] = int(offset)
        i += count
    trailer = dict(re.findall(rb"/(\w+)\s+(\d+)(?: 0 R)?", table.group(2)))
    return offsets, {k.decode(): v for k, v in trailer.items()}, start


def _pdf_object(data: bytes, offsets: dict[int, int], number: int) -> bytes:
    start = offsets[number]
    return data[start:data.index(b"endobj", start)]


def _chromium_outline(data: bytes, offsets: dict[int, int], catalog: bytes) -> list[bytes]:
    """The destinations of Chromium's bookmarks, in document order (depth first)."""
    root = re.search(rb"/Outlines (\d+) 0 R", catalog)
    dests: list[bytes] = []

    def walk(number: int | None):
        while number is not None:
            item = _pdf_object(data, offsets, number)
            dest = re.search(rb"/Dest (\[[^\]]*\])", item)
            if dest is None:
                raise SystemExit(f"print_pdf: bookmark object {number} has no /Dest")
            dests.append(dest.group(1))
            child = re.search(rb"/First (\d+) 0 R", item)
            walk(int(child.group(1)) if child else None)
            nxt = re.search(rb"/Next (\d+) 0 R", item)
            number = int(nxt.group(1)) if nxt else None

    if root:
        first = re.search(rb"/First (\d+) 0 R", _pdf_object(data, offsets, int(root.group(1))))
        walk(int(first.group(1)) if first else None)
    return dests


def _pdf_text(text: str) -> bytes:
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def set_outline(data: bytes, headings: list[tuple[int, str]]) -> bytes:
    """``data`` (Chromium's PDF, printed with outline=True) with its bookmarks replaced: one per heading,
    ``(depth, title)`` in document order, at the place of Chromium's bookmark for the same heading."""
    if not headings:
        return data
    offsets, trailer, xref = _pdf_objects(data)
    root_number = int(trailer["Root"])
    catalog = _pdf_object(data, offsets, root_number)
    dests = _chromium_outline(data, offsets, catalog)
    if len(dests) != len(headings):
        raise SystemExit(f"print_pdf: Chromium made {len(dests)} bookmarks for {len(headings)} headings, so they "
                         "cannot be matched; is a heading hidden in print?")
    first_new = int(trailer["Size"])
    outline = first_new
    number = {i: first_new + 1 + i for i in range(len(headings))}
    parent: dict[int, int | None] = {}
    children: dict[int | None, list[int]] = {None: []}
    stack: list[int] = []
    for i, (depth, _title) in enumerate(headings):
        del stack[depth:]
        parent[i] = stack[-1] if stack else None
        children.setdefault(parent[i], []).append(i)
        children[i] = []
        stack.append(i)

    def descendants(i: int) -> int:
        return sum(1 + descendants(c) for c in children[i])

    objects = {outline: b"<</Type /Outlines /First %d 0 R /Last %d 0 R /Count %d>>" % (
        number[children[None][0]], number[children[None][-1]], len(children[None]))}
    for i, (_depth, title) in enumerate(headings):
        siblings = children[parent[i]]
        k = siblings.index(i)
        entry = [b"/Title " + _pdf_text(title), b"/Parent %d 0 R" % (number[parent[i]] if parent[i] is not None
                                                                    else outline), b"/Dest " + dests[i]]
        if k > 0:
            entry.append(b"/Prev %d 0 R" % number[siblings[k - 1]])
        if k + 1 < len(siblings):
            entry.append(b"/Next %d 0 R" % number[siblings[k + 1]])
        if children[i]:  # closed: a chapter's sections show when the reader opens it
            entry.append(b"/First %d 0 R /Last %d 0 R /Count -%d" % (
                number[children[i][0]], number[children[i][-1]], descendants(i)))
        objects[number[i]] = b"<<" + b"\n".join(entry) + b">>"
    body = catalog[catalog.index(b"<<"):catalog.rindex(b">>") + 2]
    body = re.sub(rb"/Outlines \d+ 0 R", b"/Outlines %d 0 R" % outline, body)
    objects[root_number] = body[:-2] + b"\n/PageMode /UseOutlines>>"

    out = bytearray(data if data.endswith(b"\n") else data + b"\n")
    where = {}
    for n in sorted(objects):
        where[n] = len(out)
        out += b"%d 0 obj\n" % n + objects[n] + b"\nendobj\n"
    table = len(out)
    out += b"xref\n%d 1\n%010d 00000 n \n" % (root_number, where[root_number])
    new = sorted(n for n in objects if n != root_number)
    out += b"%d %d\n" % (new[0], len(new)) + b"".join(b"%010d 00000 n \n" % where[n] for n in new)
    info = b" /Info %s 0 R" % trailer["Info"] if "Info" in trailer else b""
    out += b"trailer\n<</Size %d /Root %d 0 R%s /Prev %d>>\nstartxref\n%d\n%%%%EOF\n" % (
        new[-1] + 1, root_number, info, xref, table)
    return bytes(out)


def print_pdf(html: Path, pdf: Path, mathjax: Path = MATHJAX_PRINT) -> None:
    """Write ``pdf`` from the page ``html`` (a file inside a built single-page book), its math set by the
    MathJax CHTML build in ``mathjax``."""
    from playwright.sync_api import sync_playwright

    if not html.is_file():
        raise SystemExit(f"print_pdf: no page at {html}: build it first (make pdf)")
    if not CHROMIUM.exists():
        raise SystemExit(f"print_pdf: Chromium not found at {CHROMIUM}: apt-get install chromium "
                         "(or set CHROMIUM)")
    if not (mathjax / "tex-chtml-full.js").is_file():
        raise SystemExit(f"print_pdf: no MathJax CHTML build in {mathjax}: `make book` fetches it")
    handler = functools.partial(_PrintHandler, directory=str(html.parent), mathjax=mathjax)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{html.name}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            context = browser.new_context(color_scheme="light", service_workers="block")
            context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1"
                          else r.abort())
            page = context.new_page()
            page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
            if not page.evaluate(WAIT_FOR_MATH, TIMEOUT_MS):
                raise SystemExit(f"print_pdf: MathJax did not finish typesetting {html} "
                                 f"within {TIMEOUT_MS // 1000} s")
            broken = page.evaluate(LOAD_IMAGES)
            if broken:
                raise SystemExit(f"print_pdf: {len(broken)} image(s) did not load, e.g. {broken[0]}")
            page.emulate_media(media="print")
            headings = page.evaluate(PREPARE_FOR_PAPER)
            data = page.pdf(format="A4", print_background=True, outline=True, tagged=True,
                            display_header_footer=True, header_template="<span></span>", footer_template=FOOTER,
                            margin={"top": "15mm", "bottom": "18mm", "left": "14mm", "right": "14mm"})
            browser.close()
        pdf.parent.mkdir(parents=True, exist_ok=True)
        tmp = pdf.with_name(pdf.name + ".tmp")
        tmp.write_bytes(set_outline(data, [tuple(h) for h in headings]))
        tmp.replace(pdf)
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the single-page book (…/_build/singlehtml/intro.html)")
    parser.add_argument("pdf", type=Path, help="where to write the PDF")
    parser.add_argument("--mathjax", type=Path, default=MATHJAX_PRINT,
                        help=f"MathJax's CHTML build and fonts (default {MATHJAX_PRINT.relative_to(ROOT)})")
    parser.add_argument("--optional", action="store_true",
                        help="without Chromium or Playwright, print a notice and exit 0 instead of failing")
    args = parser.parse_args()
    if args.optional:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            print("print_pdf: Playwright is not installed, so the book has no PDF (pip install -r requirements.txt)")
            return 0
        if not CHROMIUM.exists():
            print(f"print_pdf: no Chromium at {CHROMIUM}, so the book has no PDF (apt-get install chromium, "
                  "then make pdf)")
            return 0
    print_pdf(args.html.resolve(), args.pdf, args.mathjax.resolve())
    print(f"wrote {args.pdf} ({args.pdf.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
