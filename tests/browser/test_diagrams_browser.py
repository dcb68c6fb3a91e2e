"""The book's diagrams (vaelib.diagrams) in the built HTML: each sits in its chapter as an SVG figure with a
caption and real alt text, and reads as dark ink on a light panel at phone width in both the light and
the dark theme."""

from __future__ import annotations

import io

import pytest
from book_site import book_pages, unavailable

pytestmark = pytest.mark.browser

DIAGRAMS = {
    "chapters/01_autoencoder.html": "fig-ch1-autoencoder",
    "chapters/03_vae_encoder.html": "fig-ch3-vae",
    "chapters/05_kl_fix.html": "fig-ch5-generative-story",
    "chapters/06_reparameterization.html": "fig-ch6-graph",
}
PHONE = {"width": 390, "height": 844}


def _require(diagram_page: str) -> None:
    pages = book_pages()
    if not pages:
        unavailable("no built book: run `make book-quick` (or set BOOK_HTML)")
    if diagram_page not in pages:
        pytest.fail(f"{diagram_page} is missing from the built book")


@pytest.mark.parametrize("diagram_page", sorted(DIAGRAMS))
def test_each_diagram_is_an_svg_figure_with_caption_and_alt_text(diagram_page, visits):
    _require(diagram_page)
    v = visits(diagram_page)
    svgs = [i for i in v.images if i["output"] and i["src"].endswith(".svg")]
    assert svgs, f"{diagram_page}: no SVG diagram in a cell output"
    for image in svgs:
        assert image["complete"] and image["width"] > 0, f"{diagram_page}: {image['src']} does not load"
        assert len(image["alt"]) >= 80, f"{diagram_page}: the diagram's alt text is too short: {image['alt']!r}"
        assert image["caption"], f"{diagram_page}: the diagram has no caption"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("diagram_page", sorted(DIAGRAMS))
def test_each_diagram_reads_as_dark_ink_on_a_light_panel_at_phone_width(diagram_page, scheme, browser, base_url):
    from PIL import Image

    _require(diagram_page)
    context = browser.new_context(viewport=PHONE, color_scheme=scheme, device_scale_factor=2,
                                  service_workers="block")
    context.route("**/*", lambda r: r.continue_() if "127.0.0.1" in r.request.url else r.abort())
    try:
        page = context.new_page()
        page.goto(base_url + diagram_page, wait_until="load")
        assert page.evaluate("document.documentElement.dataset.theme") == scheme, "the theme did not switch"
        image = page.locator(f"#{DIAGRAMS[diagram_page]} img").first
        image.scroll_into_view_if_needed()
        box = image.bounding_box()
        assert box is not None, f"{diagram_page}: the diagram is not displayed"
        assert 250 <= box["width"] <= PHONE["width"], f"{diagram_page}: the diagram is {box['width']:.0f} px wide"
        pixels = Image.open(io.BytesIO(image.screenshot())).convert("L")
    finally:
        context.close()
    counts = pixels.histogram()                         # pixels per grey level, 0 (black) to 255 (white)
    light = sum(counts[191:]) / sum(counts)
    ink = sum(counts[:90]) / sum(counts)
    assert light > 0.6, f"{diagram_page} ({scheme}): only {light:.0%} of the diagram is a light panel"
    assert ink > 0.004, f"{diagram_page} ({scheme}): only {ink:.2%} of the diagram is dark ink"


@pytest.mark.parametrize("diagram_page", sorted(DIAGRAMS))
def test_figures_keep_their_shape_at_phone_width(diagram_page, browser, base_url):
    """Every output image on the page is shown at its own aspect ratio on a phone, not squashed."""
    _require(diagram_page)
    context = browser.new_context(viewport=PHONE, service_workers="block")
    context.route("**/*", lambda r: r.continue_() if "127.0.0.1" in r.request.url else r.abort())
    try:
        page = context.new_page()
        page.goto(base_url + diagram_page, wait_until="load")
        shapes = page.evaluate("""async () => {
          const imgs = [...document.querySelectorAll('.cell_output img')];
          for (const img of imgs) img.loading = 'eager';  // the book's images are lazy (tools/lean_pages.py)
          await Promise.all(imgs.map(img => img.decode().catch(() => null)));
          return imgs.map(img => ({src: img.src.split('/').pop().slice(0, 40), natural: img.naturalWidth / img.naturalHeight,
                                   shown: img.getBoundingClientRect().width / img.getBoundingClientRect().height,
                                   width: img.getBoundingClientRect().width}));
        }""")
    finally:
        context.close()
    assert shapes, f"{diagram_page}: no output images"
    squashed = [s for s in shapes if abs(s["shown"] / s["natural"] - 1) > 0.03]
    assert not squashed, f"{diagram_page}: images shown at another aspect ratio than their own: {squashed}"
    assert max(s["width"] for s in shapes) <= PHONE["width"], f"{diagram_page}: an image is wider than the screen"
