"""Print the book's single-page HTML to one PDF with Debian's Chromium: no TeX needed.

    python tools/print_pdf.py _build/singlehtml/intro.html _build/html/book.pdf
    python tools/print_pdf.py --optional ...   # no Chromium: say so and print nothing, instead of failing

``make pdf`` runs it after ``jupyter-book build --builder singlehtml``, which reuses the execution cache
of the HTML build, so no notebook runs again. The page is served from 127.0.0.1 and every request that
would leave the machine is refused, as for a reader with no network. Before printing, the script waits
until the book's own MathJax has typeset every formula and every image has loaded: a PDF printed earlier
would show raw TeX or empty frames. Chromium is ``/usr/bin/chromium`` or ``$CHROMIUM``; Playwright (from
PyPI) drives it, and its own browser download is never used.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 60_000

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

FOOTER = ('<div style="font-size: 8px; width: 100%; text-align: center; color: #555;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def print_pdf(html: Path, pdf: Path) -> None:
    """Write ``pdf`` from the page ``html`` (a file inside a built single-page book)."""
    from playwright.sync_api import sync_playwright

    if not html.is_file():
        raise SystemExit(f"print_pdf: no page at {html}: build it first (make pdf)")
    if not CHROMIUM.exists():
        raise SystemExit(f"print_pdf: Chromium not found at {CHROMIUM}: apt-get install chromium "
                         "(or set CHROMIUM)")
    handler = functools.partial(_QuietHandler, directory=str(html.parent))
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
            pdf.parent.mkdir(parents=True, exist_ok=True)
            tmp = pdf.with_name(pdf.name + ".tmp")
            page.pdf(path=str(tmp), format="A4", print_background=True, outline=True, tagged=True,
                     display_header_footer=True, header_template="<span></span>", footer_template=FOOTER,
                     margin={"top": "15mm", "bottom": "18mm", "left": "14mm", "right": "14mm"})
            tmp.replace(pdf)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the single-page book (…/_build/singlehtml/intro.html)")
    parser.add_argument("pdf", type=Path, help="where to write the PDF")
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
    print_pdf(args.html.resolve(), args.pdf)
    print(f"wrote {args.pdf} ({args.pdf.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
