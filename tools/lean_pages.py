"""A first visit to a page fetches what the reader sees, and little else (a Sphinx extension).

- The theme's Font Awesome script (``_static/scripts/fontawesome.js``, 1.5 MB) is left out of every page and
  of the built book: it only redraws the theme's icons as SVG, and the theme's stylesheet already draws the
  same icons (``<i class="fa-solid fa-...">``, the launch and download buttons' included) with its web fonts.
- The HTML book's figures (PNG) load lazily (``loading="lazy"``): the browser fetches one when it comes near
  the screen, not all of a long chapter's figures at once. Each gets its width and height, so the page keeps
  its layout while it loads (most already have theirs; an SVG diagram without one stays eager). The
  single-page book that ``tools/print_pdf.py`` prints keeps them eager, so that every figure is on paper.
- The theme's icon fonts shrink to the icons the book shows: the stylesheet's three Font Awesome fonts (solid,
  regular and brands, 300 kB) hold some 2,000 icons; ``_static/icon-fonts.css`` points the same font families
  at subsets (a few kB) with only the glyphs that a page, a script or a stylesheet of the built book names.
- A live figure's data (its decoder's weights, several hundred kB; markup from ``vaelib/live/page.html``) leaves the page
  for a script of its own, ``_static/vae-live/<hash>.js``, which ``_static/vae-live.js`` loads only when the
  figure comes near the screen. A script, not a fetch, so that the figure still works from ``file://``.

``tests/browser/test_page_weight.py`` checks the weight of a first visit and that the icon script stays out.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ICON_SCRIPT_TAG = re.compile(r'\s*<script\b[^>]*\bsrc="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*>\s*</script>')
_IMG = re.compile(r"<img\b[^>]*>")
_PNG = b"\x89PNG\r\n\x1a\n"
_LIVE_DATA = re.compile(r'<script type="application/json" class="vae-live-data">(.*?)</script>', re.S)
LIVE_DIR = "_static/vae-live"


def without_icon_script(html) -> Markup:
    """The theme's head assets less the Font Awesome script (the template in tools/templates calls this)."""
    return Markup(_ICON_SCRIPT_TAG.sub("", str(html)))


def _live_data_to_files(app, body: str, pathto) -> str:
    def move(m: re.Match) -> str:
        text = m.group(1)
        json.loads(text)  # a figure whose data is not JSON should fail the build here, not in the reader's browser
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        out = Path(app.outdir) / LIVE_DIR / f"{key}.js"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            # The payload stays JSON text (a JS string), which vae-live.js parses as it parses an inline one.
            out.write_text(f"vaeLiveData({json.dumps(key)}, {json.dumps(text)});\n", encoding="utf-8")
        src = pathto(f"{LIVE_DIR}/{key}.js", 1)
        return (f'<script type="application/json" class="vae-live-data" data-key="{key}" '
                f'data-src="{src}"></script>')

    return _LIVE_DATA.sub(move, body)


def _png_size(path: Path) -> tuple[int, int] | None:
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError:
        return None
    return struct.unpack(">II", head[16:24]) if head[:8] == _PNG and len(head) == 24 else None


def _lazy_images(app, body: str) -> str:
    sources = {name: Path(app.srcdir) / uri for uri, name in getattr(app.builder, "images", {}).items()}

    def lazy(m: re.Match) -> str:
        tag = m.group(0)
        src = re.search(r'\ssrc="[^"]*_images/([^"/]+)"', tag)
        if not src or re.search(r"\sloading=", tag):
            return tag
        if re.search(r'\sstyle="[^"]*\bheight:', tag) or re.search(r"\sheight=", tag) and re.search(r"\swidth=", tag):
            return tag.replace("<img", '<img loading="lazy"', 1)  # sized already (the figures' retina PNGs)
        if re.search(r"\s(?:width|height|style)=", tag) or src.group(1) not in sources:
            return tag
        size = _png_size(sources[src.group(1)])
        if size is None:  # a diagram (SVG) with no size of its own: eager, so that the page does not move
            return tag
        # height:auto keeps the shape where the column is narrower than the figure (max-width: 100%)
        return tag.replace("<img", f'<img loading="lazy" width="{size[0]}" height="{size[1]}" style="height:auto"', 1)

    return _IMG.sub(lazy, body)


def lean_page(app, pagename, templatename, context, doctree):
    context["without_icon_script"] = without_icon_script
    if app.builder.name != "html" or "body" not in context:
        return
    context["body"] = _live_data_to_files(app, _lazy_images(app, context["body"]), context["pathto"])


def drop_icon_script(app, exception):
    """Remove the script (and its source map and licence) from the built book, so nothing can load it."""
    if exception is None and app.builder.format == "html":
        for path in (Path(app.outdir) / "_static" / "scripts").glob("fontawesome.js*"):
            path.unlink()


ICON_FONT_CSS = "icon-fonts.css"
_FONT_FACE = re.compile(r"@font-face\{([^}]*Font Awesome[^}]*)\}")
_ICON_RULE = re.compile(r"([^{}]+)\{content:\"\\([0-9a-f]{4})\"\}")
_ESCAPE = re.compile(r"\\([ef][0-9a-f]{3})\b")


def _icon_codepoints(outdir: Path, css: str) -> set[int]:
    """The icons the built book can show: those of the fa-* classes its pages and scripts name, and every
    icon its stylesheets draw by code point (admonitions, links, toggles)."""
    by_class = {}

    def icon_class_rule(m: re.Match) -> str:
        names = re.findall(r"\.(fa-[a-z0-9-]+):+before", m.group(1))
        by_class.update((name, int(m.group(2), 16)) for name in names)
        return "" if names else m.group(0)

    other_css = _ICON_RULE.sub(icon_class_rule, css)
    named = set()
    for path in [*outdir.rglob("*.html"), *(outdir / "_static").rglob("*.js")]:
        named.update(re.findall(r"\bfa-[a-z0-9-]+", path.read_text(encoding="utf-8", errors="replace")))
    drawn = {int(h, 16) for h in _ESCAPE.findall(other_css)} | {ord(c) for c in other_css if "\ue000" <= c <= "\uf8ff"}
    return {by_class[n] for n in named if n in by_class} | drawn


def subset_icon_fonts(app, exception):
    """Write the subsets of the theme's icon fonts and the stylesheet that uses them."""
    if exception is not None or app.builder.format != "html":
        return
    from fontTools import subset
    from fontTools.ttLib import TTFont

    static = Path(app.outdir) / "_static"
    css = "\n".join(p.read_text(encoding="utf-8") for p in sorted(static.rglob("*.css")))
    codepoints = _icon_codepoints(Path(app.outdir), css)
    faces = []
    for face in dict.fromkeys(_FONT_FACE.findall(css)):
        ttf = re.search(r"url\(([^)]+\.ttf)\)", face)
        family = re.search(r"font-family:([^;]+)", face)
        weight = re.search(r"font-weight:(\d+)", face)
        if not (ttf and family and weight):
            continue
        source = (static / "styles" / ttf.group(1)).resolve()  # the theme's url() is relative to styles/
        name = f"icon-fonts/{source.stem}.woff"
        font = TTFont(source)
        options = subset.Options()
        options.flavor = "woff"  # zlib: woff2 would need brotli, and the subsets are small anyway
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=codepoints)
        subsetter.subset(font)
        (static / "icon-fonts").mkdir(exist_ok=True)
        font.save(static / name)
        family_name = family.group(1).replace("\\ ", " ").strip().strip('"')
        faces.append(f'@font-face{{font-display:block;font-family:"{family_name}";font-style:normal;'
                     f'font-weight:{weight.group(1)};src:url({name}) format("woff")}}')
    (static / ICON_FONT_CSS).write_text(
        "/* The theme's icon fonts, cut to the icons this book shows (tools/lean_pages.py). */\n"
        + "\n".join(faces) + "\n", encoding="utf-8")


def add_templates(app, config):
    config.templates_path = [str(TEMPLATES), *config.templates_path]


def setup(app):
    app.connect("config-inited", add_templates)
    app.connect("html-page-context", lean_page)
    app.connect("build-finished", drop_icon_script)
    app.connect("build-finished", subset_icon_fonts)
    # Written when the build has finished (subset_icon_fonts); after the theme's stylesheet, so it wins.
    app.add_css_file(ICON_FONT_CSS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
