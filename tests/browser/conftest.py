"""Fixtures for the browser checks of the built HTML book.

The book (``BOOK_HTML``, default ``_build/quick/_build/html``, as ``make book-quick`` writes it) is served
from a local ``http.server`` on 127.0.0.1 and read by Debian's Chromium (``/usr/bin/chromium``, or
``$CHROMIUM``) through Playwright from PyPI. Playwright's own browser download is never used.

Every request that leaves 127.0.0.1 is blocked and recorded, so the checks show what a reader with no
network sees. Each page is loaded once per session; the tests in ``test_book_browser.py`` read the
:class:`Visit` it produced.

Without Chromium, Playwright or a built book the browser tests are skipped with the reason, except when
``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from book_site import (CHROMIUM, CHROMIUM_ARGS, MATHJAX_TIMEOUT_MS, PDF_NAME, book_pages, book_root, is_redirect,
                       unavailable)


def pytest_generate_tests(metafunc):
    if "page_path" in metafunc.fixturenames:
        pages = book_pages()
        metafunc.parametrize("page_path", pages or [None], ids=pages or ["no-built-book"])


# --- serving and browsing -------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def book_dir() -> Path:
    root = book_root()
    if not (root / "index.html").is_file() and not book_pages(root):
        unavailable(f"no built book at {root}: run `make book-quick` (or set BOOK_HTML)")
    return root


@pytest.fixture(scope="session")
def pdf(book_dir) -> Path:
    """The whole-book PDF of the built book."""
    path = book_dir / PDF_NAME
    if not path.is_file():
        pytest.fail(f"no {PDF_NAME} in the built book: `make book-quick` prints it (tools/print_pdf.py)")
    return path


@pytest.fixture(scope="session")
def base_url(book_dir):
    handler = functools.partial(_QuietHandler, directory=str(book_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed: pip install -r requirements.txt")
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM}: apt-get install chromium (never `playwright install`)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Visit:
    """What one page load showed."""

    path: str
    url: str
    console_errors: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    mathjax: dict = field(default_factory=dict)
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    widgets: dict = field(default_factory=dict)
    launch_links: list[str] = field(default_factory=list)
    text: str = ""


WAIT_FOR_MATHJAX = """async (timeout) => {
  // Called after the load event, so a deferred MathJax script has run (or failed to load) already:
  // its startup object appears at once, and typesetting finishes when startup.promise resolves.
  const hasMath = document.querySelector('.math') !== null;
  const scripts = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
  if (!hasMath && scripts.length === 0) return {hasMath, scripts, loaded: false};
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const t0 = Date.now();
  while (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
    if (Date.now() - t0 > 3000) return {hasMath, scripts, loaded: false};
    await sleep(50);
  }
  const done = await Promise.race([window.MathJax.startup.promise.then(() => true), sleep(timeout).then(() => false)]);
  return done ? {hasMath, scripts, loaded: true} : {hasMath, scripts, loaded: false, timedOut: true};
}"""

INSPECT_MATH = r"""() => {
  const mathEls = [...document.querySelectorAll('.math')];
  const untypeset = mathEls.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('[data-mjx-error], mjx-merror')]
    .map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80));
  const root = (document.querySelector('main') || document.body).cloneNode(true);
  root.querySelectorAll('pre, code, script, style, textarea, mjx-container, mjx-assistive-mml, .highlight')
      .forEach(e => e.remove());
  const text = root.textContent;
  const raw = [];
  for (const re of [/\\\(/, /\\\)/, /\\\[/, /\\\]/, /\$\$/, /\\begin\{/, /\$[^$\n]{0,200}\\[A-Za-z]+[^$\n]{0,200}\$/]) {
    const m = text.match(re);
    if (m) raw.push(text.substr(Math.max(0, m.index - 40), 120).replace(/\s+/g, ' '));
  }
  return {count: mathEls.length, containers: document.querySelectorAll('mjx-container').length, untypeset, errors, raw};
}"""

INSPECT_IMAGES = """async () => {
  const imgs = [...document.querySelectorAll('img')];
  for (const img of imgs) img.loading = 'eager';
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map(img => {
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    const r = {src: img.currentSrc || img.src, alt: img.alt, complete: img.complete,
               width: img.naturalWidth, height: img.naturalHeight, std: null, error: null,
               output: img.closest('.cell_output') !== null, caption: caption ? caption.innerText.trim() : ''};
    if (!img.complete || img.naturalWidth === 0) return r;
    try {
      const scale = Math.min(1, 256 / Math.max(img.naturalWidth, img.naturalHeight));
      const w = Math.max(1, Math.round(img.naturalWidth * scale)), h = Math.max(1, Math.round(img.naturalHeight * scale));
      const canvas = document.createElement('canvas');
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0, w, h);
      const d = ctx.getImageData(0, 0, w, h).data;
      // Standard deviation over all pixels and channels (alpha included): 0 for a blank image.
      let sum = 0, sq = 0;
      for (let i = 0; i < d.length; i++) { sum += d[i]; sq += d[i] * d[i]; }
      const mean = sum / d.length;
      r.std = Math.sqrt(Math.max(0, sq / d.length - mean * mean));
    } catch (e) { r.error = String(e); }
    return r;
  });
}"""

INSPECT_WIDGETS = r"""() => {
  const visible = el => {
    const box = el.getBoundingClientRect(), cs = getComputedStyle(el);
    return box.width > 0 && box.height > 0 && cs.visibility !== 'hidden' && cs.display !== 'none' && Number(cs.opacity) > 0;
  };
  const cells = [...document.querySelectorAll('.tag_widget-fallback')].map(cell => {
    const imgs = [...cell.querySelectorAll('.cell_output img')];
    return {
      id: cell.id || null,
      images: imgs.map(img => ({src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0,
                                visible: visible(img)})),
      widgetViews: cell.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    };
  });
  const outputs = [...document.querySelectorAll('.cell_output')].map(o => o.innerText).join('\n');
  const problems = [];
  if (document.querySelector('script[type="application/vnd.jupyter.widget-view+json"]'))
    problems.push('a live widget view (application/vnd.jupyter.widget-view+json) is in the page: it shows an empty box offline');
  const tqdm = outputs.match(/\d+%\|[^|\n]*\|\s*\d+\/\d+\s*\[[^\]\n]*\]/);
  if (tqdm) problems.push('tqdm progress-bar residue in an output: ' + JSON.stringify(tqdm[0]));
  for (const needle of ['Loading widget', 'A Jupyter widget could not be displayed', 'Error displaying widget'])
    if (document.body.innerText.includes(needle)) problems.push('widget placeholder text in the page: ' + JSON.stringify(needle));
  const repr = outputs.match(/\b(?:HBox|VBox|Box|GridBox|Tab|Accordion)\(children=\(|\b(?:FloatProgress|IntProgress|FloatSlider|IntSlider)\(value=/);
  if (repr) problems.push('a widget shown as its text repr (no image/png fallback): ' + JSON.stringify(repr[0]));
  return {cells, problems};
}"""


@pytest.fixture(scope="session")
def visits(browser, base_url):
    """page path -> Visit, each page loaded once (lazily) in a fresh, offline browser context."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    external: list[str] = []

    def route(r):
        host = urlsplit(r.request.url).hostname
        if host == "127.0.0.1":
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    cache: dict[str, Visit] = {}

    def visit(path: str) -> Visit:
        if path in cache:
            return cache[path]
        v = Visit(path=path, url=base_url + path)
        page = context.new_page()
        page.on("console", lambda m: v.console_errors.append(f"console.{m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: v.console_errors.append(f"uncaught: {e}"))
        page.on("response", lambda r: v.bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        start = len(external)
        page.goto(v.url, wait_until="load")
        if is_redirect(path):
            # index.html and the like: follow the meta refresh, and only check that the target loads.
            page.wait_for_url(lambda url: not url.endswith("/" + path), timeout=10_000)
            page.wait_for_load_state("load")
        else:
            v.mathjax = page.evaluate(WAIT_FOR_MATHJAX, MATHJAX_TIMEOUT_MS)
            v.math = page.evaluate(INSPECT_MATH)
            v.images = page.evaluate(INSPECT_IMAGES)
            v.widgets = page.evaluate(INSPECT_WIDGETS)
            v.text = page.evaluate("() => (document.querySelector('main') || document.body).innerText")
            v.launch_links = page.eval_on_selector_all(
                "a[href]", "els => els.map(e => e.href).filter(h => /mybinder\\.org|colab\\.research\\.google\\.com/.test(h))")
        page.wait_for_timeout(100)  # late console messages
        v.external_requests = external[start:]
        page.close()
        cache[path] = v
        return v

    try:
        yield visit
    finally:
        context.close()


@pytest.fixture(scope="session")
def all_visits(visits, book_dir):
    """Every page's Visit, for the book-wide checks."""
    return [visits(p) for p in book_pages(book_dir) if not is_redirect(p)]


@pytest.fixture(scope="session")
def search_page(browser, base_url):
    """Run the book's own search (search.html?q=...) and return the result links' paths."""
    context = browser.new_context(service_workers="block")
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort())

    def search(word: str) -> list[str] | None:
        """The result pages' paths, or None when the search never finishes."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = context.new_page()
        try:
            page.goto(f"{base_url}search.html?q={word}", wait_until="load")
            page.wait_for_function(
                "() => { const s = document.querySelector('#search-results .search-summary');"
                " return s && /finished|did not match/i.test(s.innerText); }", timeout=10_000)
        except PlaywrightTimeout:
            return None
        else:
            hrefs = page.eval_on_selector_all("#search-results ul.search li > a", "els => els.map(e => e.href)")
            return [urlsplit(h).path.lstrip("/") for h in hrefs]
        finally:
            page.close()

    try:
        yield search
    finally:
        context.close()
