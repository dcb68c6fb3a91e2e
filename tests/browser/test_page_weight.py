"""What a first visit to a chapter costs (tools/lean_pages.py, measured by benchmarks/page_weight.py).

Each chapter page, opened in a fresh Chromium context (empty cache), fetches at most ``BUDGET_BYTES`` as gzip
would send them, never the theme's Font Awesome script, which the built book no longer holds, and none of the
theme's whole icon fonts, only the book's cut-down ones.

The budget is for the quick book (``make book-quick``, what ``make browser`` checks). Measured with
benchmarks/page_weight.py, its heaviest chapter page cost 1.07 MB on a first visit, 0.88 MB of it shared by
every page with math (0.72 MB of that MathJax). Either of the things tools/lean_pages.py keeps out of a first
visit would take every chapter with a live figure over the budget: the icon script (0.54 MB gzipped) or a
live figure's weights in the page (0.35 to 0.42 MB). Before, a first visit to a chapter with math
cost 1.7 to 3.5 MB.
"""

from __future__ import annotations

import re
import sys

import pytest
from book_site import REPO, book_pages

sys.path.insert(0, str(REPO / "benchmarks"))
import page_weight  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

pytestmark = pytest.mark.browser

BUDGET_BYTES = 1_250_000
ICON_SCRIPT = "fontawesome.js"
FULL_ICON_FONTS = "/_static/vendor/fontawesome/"


def _chapters(book_dir):
    return [p for p in book_pages(book_dir) if p.startswith("chapters/")]


def test_no_page_names_the_icon_script_and_the_book_does_not_hold_it(book_dir):
    named = [p for p in book_pages(book_dir) if ICON_SCRIPT in (book_dir / p).read_text(encoding="utf-8")]
    assert not named, f"pages that still load the theme's Font Awesome script: {named}"
    assert not list(book_dir.glob(f"_static/**/{ICON_SCRIPT}*")), "the built book holds fontawesome.js again"


DRAW_ICONS = """async () => {
  const c = document.createElement('canvas');
  c.width = c.height = 48;
  const g = c.getContext('2d', {willReadFrequently: true});
  const draw = (font, ch) => {
    g.clearRect(0, 0, 48, 48);
    g.font = font; g.textBaseline = 'top'; g.fillStyle = '#000';
    g.fillText(ch, 4, 4);
    return Array.from(g.getImageData(0, 0, 48, 48).data.filter((_, k) => k % 4 === 3));
  };
  const out = [];
  for (const i of document.querySelectorAll('i[class*="fa-"]')) {
    const cs = getComputedStyle(i, '::before'), ch = cs.content.slice(1, -1);
    if (!ch || cs.content === 'none') continue;
    const font = `${cs.fontWeight} 32px ${cs.fontFamily}`;
    await document.fonts.load(font, ch).catch(() => null);
    const icon = draw(font, ch), plain = draw(`${cs.fontWeight} 32px serif`, ch);
    out.push({cls: i.className, family: cs.fontFamily, ink: icon.filter(a => a > 0).length,
              sameAsWithout: icon.every((a, k) => a === plain[k])});
  }
  return out;
}"""


def test_the_theme_still_draws_its_icons(book_dir, browser, base_url):
    """Without the script, each <i class="fa-..."> of a chapter page (launch, download, repository, theme and
    search buttons) is its ::before glyph in the stylesheet's icon font: drawn in that font, it has ink and
    differs from the same character in a font without it (so the cut-down fonts hold every icon shown)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    try:
        page = context.new_page()
        page.goto(base_url + "chapters/05_kl_fix.html", wait_until="load")
        icons = page.evaluate(DRAW_ICONS)
    finally:
        context.close()
    assert len(icons) >= 8, icons
    missing = [i for i in icons if "Font Awesome" not in i["family"] or i["ink"] < 20 or i["sameAsWithout"]]
    assert not missing, f"icons the page does not draw: {missing}"


@pytest.fixture(scope="module")
def first_visits(book_dir, browser, base_url):
    cache = {}

    def visit(path):
        if path not in cache:
            cache[path] = page_weight.first_visit(browser, base_url + path)
        return cache[path]

    return visit


def test_a_first_visit_to_each_chapter_stays_within_the_budget(book_dir, first_visits):
    over, fetched_icons = {}, []
    for path in _chapters(book_dir):
        v = first_visits(path)
        if v["bytes"] > BUDGET_BYTES:
            top = ", ".join(f"{f} {n / 1e3:.0f} kB" for f, n in list(v["files"].items())[:5])
            over[path] = f"{v['bytes'] / 1e6:.2f} MB (largest: {top})"
        # the script, or the theme's whole icon fonts: Chromium falls back to them for an icon the cut fonts lack
        fetched_icons += [f for f in v["files"] if ICON_SCRIPT in f or FULL_ICON_FONTS in f]
    assert not over and not fetched_icons, (f"first visits over the budget of {BUDGET_BYTES / 1e6:.2f} MB (gzip): "
                                            f"{over}; the theme's Font Awesome script or fonts fetched: "
                                            f"{sorted(set(fetched_icons))}")


def test_a_live_figure_loads_its_weights_only_when_it_comes_near(book_dir, browser, base_url):
    """The live figure of chapter 5 is far below the first screen: a first visit does not fetch its weights,
    and scrolling to it does, after which it runs."""
    path = "chapters/05_kl_fix.html"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    fetched = []
    try:
        page = context.new_page()
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(base_url + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        data = page.locator("script.vae-live-data").first
        assert data.get_attribute("data-src"), "the figure's weights are in the page again"
        assert not [u for u in fetched if "/vae-live/" in u], "the weights were fetched before the figure was near"
        page.locator(".vae-live").first.scroll_into_view_if_needed()
        page.wait_for_selector(".vae-live.vae-live-ready", timeout=15_000)
        assert [u for u in fetched if re.search(r"/_static/vae-live/[0-9a-f]{16}\.js$", u)], fetched
    finally:
        context.close()
