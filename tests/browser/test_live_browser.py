"""The live figures (vaelib.live, _static/vae-live.js) in headless Chromium.

On the built book, for each page with a live figure, over http and through file://: the figure starts
(its static image is swapped for the controls), a click, a drag and the arrow keys each change the
decoded image, the JavaScript decoder matches the outputs PyTorch computed when the page was built,
the canvas shows those pixels, nothing is requested from outside the book, it fits a 390 px wide
screen, it follows the dark theme, and with JavaScript off the static image shows. One test needs no
built book: it writes a page with a figure of a fresh model and compares the JavaScript decoder with
PyTorch on codes the page has never seen.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from book_site import REPO

pytestmark = pytest.mark.browser

LIVE_PAGES = {  # page -> latent dimensions of its figure's model
    "chapters/02_why_not_generate.html": 2,
    "chapters/05_kl_fix.html": 2,
    "chapters/07_putting_together.html": 20,
}
TOLERANCE = 0.02     # per pixel, probabilities in [0, 1]
READY_TIMEOUT_MS = 15_000

PIXELS = """el => Array.from(el.querySelector('canvas.vae-live-out').getContext('2d')
                      .getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"""


class Opened:
    """A page opened in a fresh context that records what it asks for and what it logs."""

    def __init__(self, browser, url: str, **context_args):
        self.external: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(service_workers="block", **context_args)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._request)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.goto(url, wait_until="load")
        # In the built book a figure loads its data when it comes near the screen (tools/lean_pages.py).
        self.page.locator(".vae-live").first.scroll_into_view_if_needed()
        self.page.wait_for_selector(".vae-live.vae-live-ready", timeout=READY_TIMEOUT_MS)
        self.figure = self.page.query_selector(".vae-live")

    @staticmethod
    def _outside(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("file", "data", "blob", "about") and parts.hostname != "127.0.0.1"

    def _route(self, route):
        if self._outside(route.request.url):
            self.external.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def _request(self, request):
        if self._outside(request.url) and request.url not in self.external:
            self.external.append(request.url)

    def pixels(self) -> np.ndarray:
        return np.array(self.figure.evaluate(PIXELS), dtype=float)

    def pad_point(self, fx: float, fy: float) -> tuple[float, float]:
        box = self.figure.query_selector(".vae-live-pad").bounding_box()
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    def close(self):
        self.context.close()


def _url(transport, path, book_dir, base_url):
    return base_url + path if transport == "http" else (book_dir / path).resolve().as_uri()


@pytest.fixture(params=["http", "file"])
def transport(request):
    return request.param


@pytest.fixture(params=list(LIVE_PAGES), ids=[p.split("/")[-1].split("_")[0] for p in LIVE_PAGES])
def live_page(request, book_dir):
    if not (book_dir / request.param).is_file():
        pytest.fail(f"{request.param} is not in the built book at {book_dir}")
    return request.param


def _changed(before: np.ndarray, after: np.ndarray) -> bool:
    return np.abs(before - after).sum() > 255 * 2  # more than two pixels' worth of grey


def test_click_drag_and_arrow_keys_change_the_decoded_image(browser, book_dir, base_url, live_page, transport):
    o = Opened(browser, _url(transport, live_page, book_dir, base_url), viewport={"width": 1280, "height": 900})
    try:
        fig = o.figure
        assert fig.evaluate("el => el.querySelector('.vae-live-fallback').hidden"), "the static image is still shown"
        assert fig.query_selector(".vae-live-pad").is_visible() and fig.query_selector("canvas.vae-live-out").is_visible()
        p = json.loads(fig.evaluate("el => el.querySelector('script.vae-live-data').textContent"))
        assert p["latent_dim"] == LIVE_PAGES[live_page]
        fig.scroll_into_view_if_needed()
        start = o.pixels()
        assert start.std() > 5, "the decoded image is blank"

        # a click moves the code to the point clicked
        o.page.mouse.click(*o.pad_point(0.3, 0.25))
        clicked = o.pixels()
        assert _changed(start, clicked), "a click in the pad did not change the decoded image"
        a, b = fig.evaluate("el => el.vaeLive.coords()")
        cx, cy = p["centre"]
        assert abs(a - (cx - 0.4 * p["half"])) < 0.03 * p["half"] and abs(b - (cy + 0.5 * p["half"])) < 0.03 * p["half"]

        # a drag follows the pointer
        o.page.mouse.move(*o.pad_point(0.3, 0.25))
        o.page.mouse.down()
        o.page.mouse.move(*o.pad_point(0.75, 0.7), steps=6)
        o.page.mouse.up()
        dragged = o.pixels()
        assert _changed(clicked, dragged), "a drag in the pad did not change the decoded image"
        a, b = fig.evaluate("el => el.vaeLive.coords()")
        assert abs(a - (cx + 0.5 * p["half"])) < 0.03 * p["half"] and abs(b - (cy - 0.4 * p["half"])) < 0.03 * p["half"]

        # the arrow keys move it, once the pad has the focus
        o.page.focus(".vae-live-pad")
        before = o.pixels()
        for _ in range(5):
            o.page.keyboard.press("ArrowLeft")
        o.page.keyboard.press("Shift+ArrowUp")
        after = o.pixels()
        assert _changed(before, after), "the arrow keys did not change the decoded image"
        a2, b2 = fig.evaluate("el => el.vaeLive.coords()")
        assert abs((a - a2) - 5 * 0.04 * p["half"]) < 1e-6 and abs((b2 - b) - 0.2 * p["half"]) < 1e-6
        assert o.page.evaluate("document.activeElement.classList.contains('vae-live-pad')")

        assert not o.external, f"requests that left the page: {o.external}"
        assert not o.errors, f"console errors: {o.errors}"
    finally:
        o.close()


def test_the_page_decoder_matches_pytorch_and_draws_its_pixels(browser, book_dir, base_url, live_page, transport):
    o = Opened(browser, _url(transport, live_page, book_dir, base_url))
    try:
        fig = o.figure
        p = json.loads(fig.evaluate("el => el.querySelector('script.vae-live-data').textContent"))
        probs = np.frombuffer(base64.b64decode(p["check"]["probs"]), "<f4").reshape(-1, 784)
        for code, expected in zip(p["check"]["codes"], probs):
            mine = np.array(fig.evaluate("(el, z) => el.vaeLive.decode(z)", code))
            assert np.abs(mine - expected).max() < TOLERANCE, np.abs(mine - expected).max()
            fig.evaluate("(el, z) => el.vaeLive.setCode(z)", code)
            shown = o.pixels() / 255
            assert np.abs(shown - (1 - expected)).max() < TOLERANCE + 1 / 255, "the canvas does not show the decoded image"
        assert fig.evaluate("el => el.vaeLive.check()") < TOLERANCE
        assert not o.external and not o.errors, (o.external, o.errors)
    finally:
        o.close()


def test_one_decode_takes_well_under_a_frame(browser, book_dir, base_url, live_page):
    o = Opened(browser, _url("http", live_page, book_dir, base_url))
    try:
        ms = o.figure.evaluate("""el => {
            const z = el.vaeLive.code(), n = 300, t0 = performance.now();
            for (let i = 0; i < n; i++) { z[0] += 1e-3; el.vaeLive.decode(z); }
            return (performance.now() - t0) / n;
        }""")
        print(f"{live_page}: {ms:.3f} ms per decode")
        assert ms < 16 / 2, f"{ms:.2f} ms per decode"
    finally:
        o.close()


def test_the_20d_controls(browser, book_dir, base_url):
    o = Opened(browser, _url("http", "chapters/07_putting_together.html", book_dir, base_url))
    try:
        fig = o.figure
        p = json.loads(fig.evaluate("el => el.querySelector('script.vae-live-data').textContent"))
        code = lambda: np.array(fig.evaluate("el => el.vaeLive.code()"))
        # the walk: its ends are the codes of the two test images
        walk = np.frombuffer(base64.b64decode(p["walk"]["codes"]), "<f4").reshape(-1, 20)
        a, b = p["walk"]["pair"]
        np.testing.assert_allclose(code(), walk[a], atol=1e-5)
        fig.evaluate("el => { const s = el.querySelector('.vae-live-t'); s.value = '1'; s.dispatchEvent(new Event('input')); }")
        np.testing.assert_allclose(code(), walk[b], atol=1e-5)
        # a prior draw has a typical length; a move in the pad leaves the part off the plane alone
        fig.query_selector(".vae-live-prior").click()
        z = code()
        assert 1.5 < np.linalg.norm(z) < 8, np.linalg.norm(z)
        basis = np.frombuffer(base64.b64decode(p["basis"]), "<f4").reshape(-1, 20)
        off = lambda v: v - basis[:2].T @ (basis[:2] @ v)
        o.page.mouse.click(*o.pad_point(0.5, 0.5))
        np.testing.assert_allclose(off(code()), off(z), atol=1e-4)
        np.testing.assert_allclose(basis[:2] @ code(), [0, 0], atol=0.03 * p["half"])
        assert "\u2016z\u2016" in fig.query_selector(".vae-live-readout").inner_text()
        # zeroing the other directions puts the code in the plane: at the pad's middle, the origin
        fig.query_selector(".vae-live-flatten").click()
        assert np.linalg.norm(code()) < 0.03 * p["half"]
        assert "shorter than" in fig.query_selector(".vae-live-readout").inner_text()
        # another plane: the pad now moves along principal directions 3 and 4
        o.page.select_option('.vae-live-axis[data-axis="0"]', "2")
        o.page.select_option('.vae-live-axis[data-axis="1"]', "3")
        o.page.mouse.click(*o.pad_point(0.75, 0.5))
        np.testing.assert_allclose(basis[2] @ code(), 0.5 * p["half"], atol=0.03 * p["half"])
        assert abs(basis[0] @ code()) < 0.03 * p["half"]
        assert not o.errors, o.errors
    finally:
        o.close()


def test_the_figures_fit_a_phone_screen(browser, book_dir, base_url, live_page):
    o = Opened(browser, _url("http", live_page, book_dir, base_url), viewport={"width": 390, "height": 844},
               device_scale_factor=3, is_mobile=True, has_touch=True)
    try:
        report = o.figure.evaluate("""el => {
            const w = document.documentElement.clientWidth, r = el.getBoundingClientRect();
            const over = [...el.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > w + 0.5)
                .map(e => e.tagName + '.' + e.className);
            const pad = el.querySelector('.vae-live-pad').getBoundingClientRect();
            const out = el.querySelector('.vae-live-out').getBoundingClientRect();
            return {left: r.left, right: r.right, width: w, over, scroll: el.scrollWidth - el.clientWidth,
                    padWidth: pad.width, sideBySide: out.top < pad.bottom && out.left >= pad.right};
        }""")
        assert report["left"] >= 0 and report["right"] <= report["width"] + 0.5, report
        assert not report["over"] and report["scroll"] <= 0, report
        assert report["padWidth"] > 180, report
        assert report["sideBySide"], f"the decoded image is not beside the pad: {report}"
    finally:
        o.close()


def test_the_figures_follow_the_dark_theme(browser, book_dir, base_url, live_page):
    looks = {}
    for scheme in ("light", "dark"):
        o = Opened(browser, _url("http", live_page, book_dir, base_url), color_scheme=scheme)
        try:
            looks[scheme] = o.figure.evaluate("""el => {
                const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; };
                const pad = el.querySelector('.vae-live-pad'), cs = getComputedStyle(pad);
                const legend = getComputedStyle(el.querySelector('.vae-live-legend'));
                return {theme: document.documentElement.dataset.theme, background: lum(cs.backgroundColor),
                        ink: lum(cs.color), text: lum(legend.color)};
            }""")
        finally:
            o.close()
    light, dark = looks["light"], looks["dark"]
    assert dark["theme"] == "dark" and light["theme"] == "light", looks
    assert light["background"] > 0.8 and light["ink"] < 0.3, looks
    assert dark["background"] < 0.3 and dark["ink"] > 0.7 and dark["text"] > 0.5, looks


def test_the_decoder_matches_pytorch_on_codes_the_page_never_saw(browser, tmp_path, mnist_for_browser):
    """No built book needed: a page with one figure of a briefly trained model, read through file://."""
    from vaelib import live
    from vaelib.evaluation import encode_mean
    from vaelib.models import ModelConfig, build_model
    from vaelib.training import fit, seed_everything

    seed_everything(0)
    model = build_model(ModelConfig(kind="vae", latent_dim=20))
    fit(model, mnist_for_browser, epochs=1, batch_size=64, progress=False, device="cpu")
    model.eval()
    codes = encode_mean(model, mnist_for_browser)
    fig = live.figure(model, codes, torch.arange(len(codes)) % 10, prior=True)
    static = (REPO / "_static").as_uri()
    page = tmp_path / "live.html"
    page.write_text(f'<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="{static}/vae-live.css">'
                    f'<script src="{static}/vae-live.js"></script></head><body>{fig.html}</body></html>')
    z = torch.randn(8, 20, generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(z)).flatten(1).numpy()
    o = Opened(browser, page.as_uri())
    try:
        mine = np.array(o.figure.evaluate("(el, zs) => zs.map(z => el.vaeLive.decode(z))", z.tolist()))
        assert mine.shape == expected.shape
        assert np.abs(mine - expected).max() < TOLERANCE, np.abs(mine - expected).max()
        assert not o.external and not o.errors, (o.external, o.errors)
    finally:
        o.close()


@pytest.fixture(scope="module")
def mnist_for_browser(tmp_path_factory):
    """512 real digits from the offline MNIST copy (no network)."""
    from vaelib.data import load_dataset

    root = tmp_path_factory.mktemp("vaelib-data")
    return load_dataset("mnist", root=root, download=False, verbose=False).train.subset(512, seed=0).images


def test_without_javascript_the_static_image_shows(browser, book_dir, live_page):
    """JavaScript off (or a notebook front end that does not load the book's script): the image, no controls."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto((book_dir / live_page).resolve().as_uri(), wait_until="load")
        fig = page.query_selector(".vae-live")
        img = fig.query_selector(".vae-live-fallback img")
        assert img.is_visible() and img.evaluate("i => i.complete && i.naturalWidth > 300")
        assert not fig.query_selector(".vae-live-pad").is_visible()
        assert fig.query_selector(".vae-live-desc").is_visible()
    finally:
        context.close()
