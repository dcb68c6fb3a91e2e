"""tools/lean_pages.py on one page, with no book build: the icon script leaves the head, images become lazy
in the HTML book only, a live figure's data moves to a script of its own that gives back the same JSON,
and the icon fonts are cut to the icons a built book names. (tests/browser/test_page_weight.py checks the
built book in Chromium.)"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import lean_pages  # noqa: E402  (tools/ is a folder of scripts, not a package)

HEAD = ('<link href="../_static/styles/theme.css?digest=1" rel="stylesheet" />\n'
        '  <script defer src="../_static/scripts/fontawesome.js?digest=55c2"></script>\n'
        '  <link rel="preload" as="script" href="../_static/scripts/bootstrap.js?digest=1" />')
PAYLOAD = {"latent_dim": 2, "decoder": {"layers": [{"weight": "AAAA", "note": "</b> \u2028 \"q\""}]}}


def _app(tmp_path, builder="html", images=None):
    return types.SimpleNamespace(outdir=str(tmp_path / "html"), srcdir=str(tmp_path), images=images or {},
                                 builder=types.SimpleNamespace(name=builder, format="html", images=images or {}))


def _page(app, body):
    context = {"body": body, "pathto": lambda name, resource=0: "../" + name}
    lean_pages.lean_page(app, "chapters/x", "page.html", context, None)
    return context


def test_the_icon_script_leaves_the_head_and_the_rest_stays():
    out = str(lean_pages.without_icon_script(HEAD))
    assert "fontawesome" not in out
    assert "theme.css" in out and "bootstrap.js" in out


def _png(path: Path, width: int, height: int) -> str:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(height * (width + 1)))) + chunk(b"IEND", b""))
    return path.name


def test_figures_load_lazily_with_their_size_in_the_html_book_only(tmp_path):
    (tmp_path / "out").mkdir()
    images = {"out/fig.png": _png(tmp_path / "out" / "fig.png", 640, 480), "out/d.svg": "d.svg",
              "out/own.png": _png(tmp_path / "out" / "own.png", 10, 10)}
    body = ('<img alt="a" src="../_images/fig.png"><img src="../_images/own.png" style="width: 5px; height: 5px;">'
            '<img src="../_images/d.svg"><img src="data:image/png;base64,AA"><img src="../_images/own.png" width="5">'
            '<p>img</p>')
    html = _page(_app(tmp_path, images=images), body)["body"]
    assert html.count('loading="lazy"') == 2
    assert '<img loading="lazy" width="640" height="480" style="height:auto" alt="a" src="../_images/fig.png">' in html
    assert '<img loading="lazy" src="../_images/own.png" style="width: 5px; height: 5px;">' in html
    # a diagram (SVG) with no size, an inline image and an image with half a size stay as they are
    assert html.endswith(body[body.index('<img src="../_images/d.svg">'):])
    # the single-page book, which tools/print_pdf.py prints, is left as it is
    assert _page(_app(tmp_path, "singlehtml", images=images), body)["body"] == body


def test_a_live_figures_data_moves_to_a_script_that_gives_back_the_same_json(tmp_path):
    text = json.dumps(PAYLOAD).replace("</", "<\\/")
    body = f'<div class="vae-live"><script type="application/json" class="vae-live-data">{text}</script></div>'
    html = _page(_app(tmp_path), body)["body"]
    assert text not in html and 'data-src="../_static/vae-live/' in html
    (script,) = (tmp_path / "html" / "_static" / "vae-live").glob("*.js")
    key = script.stem
    assert f'data-key="{key}"' in html
    # One call, vaeLiveData(key, "json text"): the text is a JSON string literal, which JavaScript reads alike.
    call = script.read_text(encoding="utf-8").strip()
    assert call.startswith(f'vaeLiveData("{key}", ') and call.endswith(");"), call[:80]
    assert call.isascii()  # no raw U+2028 or other character that a JavaScript string could trip on
    assert json.loads(json.loads(call[len(f'vaeLiveData("{key}", '):-2])) == PAYLOAD


def test_a_live_figure_whose_data_is_not_json_fails_the_build(tmp_path):
    body = '<script type="application/json" class="vae-live-data">{"weights": </script>'
    with pytest.raises(json.JSONDecodeError):
        _page(_app(tmp_path), body)


def test_the_icon_fonts_keep_the_icons_the_book_names(tmp_path):
    css = ('.fa-rocket:before{content:"\\f135"}.fa-ghost:before{content:"\\f6e2"}'
           ':root{--pst-icon-info-circle:"\uf05a"}.x:after{content:"\\f062"}')
    (tmp_path / "page.html").write_text('<i class="fas fa-rocket"></i>')
    found = lean_pages._icon_codepoints(tmp_path, css)
    assert found == {0xF135, 0xF05A, 0xF062}, sorted(map(hex, found))  # no ghost: no page names it

