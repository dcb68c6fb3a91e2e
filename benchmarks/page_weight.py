"""What a first visit to a page of the built book costs: bytes (as gzip would send them) and main-thread time.

    python benchmarks/page_weight.py [BOOK_HTML] [--pages chapters/05_kl_fix.html ...] [--throttle 4] [--json]

BOOK_HTML defaults to _build/quick/_build/html. The book is served from a local ``http.server`` and each
page is opened in a fresh Chromium context (empty cache, nothing outside 127.0.0.1 reachable), through
Playwright, with Debian's Chromium as the browser checks use it (tests/browser/book_site.py). A visit ends
when the page has loaded, MathJax has typeset it and the network has been idle for half a second.

- ``bytes``: every response of the visit, each counted as ``gzip -6`` would send it (or as it is, where
  that is smaller: images and fonts are compressed already). ``http.server`` sends no gzip itself.
- ``shared_bytes``: the part under ``_static/`` (what the next page of the book finds in the cache).
- ``task_s`` / ``script_s``: Chromium's main-thread task and script time for the visit (the ``TaskDuration``
  and ``ScriptDuration`` of the DevTools ``Performance`` domain), with the CPU slowed ``--throttle`` times
  (``Emulation.setCPUThrottlingRate``).
- ``long_tasks_s``: the time of the tasks longer than 50 ms, during which the page cannot answer a reader.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import json
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "browser"), str(REPO / "tools")]
from book_site import CHROMIUM, CHROMIUM_ARGS, MATHJAX_TIMEOUT_MS  # noqa: E402
from print_pdf import WAIT_FOR_MATH  # noqa: E402  (the same wait the PDF's printer uses)

LONG_TASKS = """(() => {
  window.__longTasks = [];
  try {
    new PerformanceObserver(list => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
      .observe({type: 'longtask', buffered: true});
  } catch (e) {}
})();"""


def sent_size(body: bytes) -> int:
    """Bytes on the wire with gzip, or as they are where gzip would not help."""
    return min(len(body), len(gzip.compress(body, compresslevel=6)))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def served(root: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def first_visit(browser, url: str, throttle: float = 1.0) -> dict:
    """One visit to ``url`` in a fresh context: what it fetched, and its main-thread time."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort())
    context.add_init_script(LONG_TASKS)
    page = context.new_page()
    responses = []
    page.on("response", lambda r: responses.append(r))
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
    try:
        page.goto(url, wait_until="load", timeout=120_000)
        typeset = page.evaluate(WAIT_FOR_MATH, MATHJAX_TIMEOUT_MS * throttle)
        page.wait_for_load_state("networkidle", timeout=60_000)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        long_tasks = page.evaluate("() => window.__longTasks")
        files = {}
        for r in responses:
            if r.status >= 300 or not r.url.startswith("http"):
                continue
            path = urlsplit(r.url).path
            try:
                files[path] = sent_size(r.body())
            except Exception:  # a response with no body to read (aborted, redirected)
                continue
        return {
            "url": url,
            "throttle": throttle,
            "typeset": typeset,
            "bytes": sum(files.values()),
            "shared_bytes": sum(n for p, n in files.items() if "/_static/" in p),
            "files": dict(sorted(files.items(), key=lambda kv: -kv[1])),
            "task_s": round(metrics.get("TaskDuration", 0.0), 2),
            "script_s": round(metrics.get("ScriptDuration", 0.0), 2),
            "long_tasks_s": round(sum(long_tasks) / 1000, 2),
            "longest_task_s": round(max(long_tasks, default=0) / 1000, 2),
        }
    finally:
        context.close()


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("book", nargs="?", default=str(REPO / "_build/quick/_build/html"))
    ap.add_argument("--pages", nargs="*", help="pages relative to the book's root (default: every chapter)")
    ap.add_argument("--throttle", type=float, default=1.0, help="slow the CPU this many times")
    ap.add_argument("--json", action="store_true", help="print every visit as JSON, with its files")
    args = ap.parse_args(argv)
    root = Path(args.book)
    pages = args.pages or sorted(p.relative_to(root).as_posix() for p in (root / "chapters").glob("*.html"))
    rows = []
    with served(root) as base, chromium() as browser:
        for page in pages:
            row = first_visit(browser, base + page, args.throttle)
            row["page"] = page
            rows.append(row)
            if not args.json:
                print(f"{page:40s} {row['bytes'] / 1e6:6.2f} MB (shared {row['shared_bytes'] / 1e6:4.2f}) "
                      f"task {row['task_s']:5.2f} s  script {row['script_s']:5.2f} s  "
                      f"long tasks {row['long_tasks_s']:5.2f} s (longest {row['longest_task_s']:.2f} s)", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
