"""The diagrams (vaelib.diagrams): each draws what its chapter says, with the sizes of the book's own
models, on an opaque light panel with dark ink, with text that is large enough at phone width and that
never overlaps other text, crosses an arrow, sticks out of a box or leaves the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from vaelib import book, diagrams  # noqa: E402
from vaelib.models import ModelConfig  # noqa: E402

PHONE_PX = 390          # the narrowest screen the book is read on, in CSS pixels
MIN_TEXT_PX = 9         # the smallest text height at that width that stays legible


def _book_config(name: str) -> ModelConfig:
    return book.config(**book.BOOK_MODELS[name].recipe).model


DIAGRAMS = {
    "autoencoder": lambda: diagrams.autoencoder(_book_config("ae-20d")),
    "vae": lambda: diagrams.vae(_book_config("vae-2d-nokl")),
    "generative_story": diagrams.generative_story,
    "reparameterization": diagrams.reparameterization,
}


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _strings(fig: Figure) -> str:
    return " | ".join(t.get_text() for t in _texts(fig))


def _by_gid(fig: Figure, prefix: str) -> dict[str, object]:
    return {a.get_gid(): a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))}


def _luminance(color) -> float:
    r, g, b, _ = to_rgba(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _curve(arrow: FancyArrowPatch) -> np.ndarray:
    """Points along an arrow, shaft and head, in data units (its path's curves evaluated, not their
    control points)."""
    return np.concatenate([segment(np.linspace(0, 1, 30)).reshape(-1, 2)
                           for segment, _ in arrow.get_path().iter_bezier()])


def _arrow_points(arrow: FancyArrowPatch) -> np.ndarray:
    """Points along an arrow in display coordinates."""
    return arrow.get_transform().transform(_curve(arrow))


def layout_problems(fig: Figure) -> list[str]:
    """Every text that overlaps another text, is crossed by an arrow, sticks out of a box or node it
    touches, or leaves the figure, as readable strings (empty when the layout is clean)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    shapes = [(p.get_gid(), p.get_window_extent(renderer))
              for p in fig.findobj(lambda a: isinstance(a, (FancyBboxPatch, Circle)) and a.get_gid())]
    arrows = [(a.get_gid(), _arrow_points(a)) for a in fig.findobj(FancyArrowPatch)]
    problems = []
    for i, (text, box) in enumerate(texts):
        if not fig.bbox.padded(0.5).contains(box.x0, box.y0) or not fig.bbox.padded(0.5).contains(box.x1, box.y1):
            problems.append(f"{text!r} leaves the figure")
        for other, other_box in texts[i + 1:]:
            if box.overlaps(other_box):
                problems.append(f"{text!r} overlaps {other!r}")
        for gid, shape in shapes:
            inside = shape.x0 <= box.x0 and box.x1 <= shape.x1 and shape.y0 <= box.y0 and box.y1 <= shape.y1
            if box.overlaps(shape) and not inside:
                problems.append(f"{text!r} sticks out of {gid}")
        core = box.padded(-1)
        for gid, points in arrows:
            if any(core.contains(x, y) for x, y in points):
                problems.append(f"{text!r} is crossed by {gid}")
    return problems


@pytest.fixture(params=sorted(DIAGRAMS))
def diagram(request):
    return request.param, DIAGRAMS[request.param]()


def test_each_diagram_is_a_figure_on_an_opaque_light_panel_with_dark_ink(diagram):
    name, fig = diagram
    assert isinstance(fig, Figure), name
    face = to_rgba(fig.get_facecolor())
    assert face[3] == 1 and _luminance(face) > 0.9, (name, face)   # not transparent: dark mode shows white
    for ax in fig.axes:
        assert to_rgba(ax.get_facecolor())[3] in (0, 1)
    for t in _texts(fig):
        assert _luminance(t.get_color()) < 0.45, (name, t.get_text(), t.get_color())


def test_each_diagram_stays_legible_at_phone_width(diagram):
    name, fig = diagram
    width_in = fig.get_figwidth()
    assert width_in <= diagrams.MAX_WIDTH
    for t in _texts(fig):
        px = t.get_fontsize() / 72 * PHONE_PX / width_in   # text height when the figure is 390 px wide
        assert px >= MIN_TEXT_PX, (name, t.get_text(), t.get_fontsize())


def test_no_text_overlaps_is_crossed_sticks_out_or_leaves_the_figure(diagram):
    name, fig = diagram
    assert layout_problems(fig) == [], name


def test_the_layout_check_finds_each_kind_of_problem():
    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 3)
    ax.set_axis_off()
    ax.text(1, 2.5, "first label", fontsize=12)
    ax.text(1.2, 2.5, "second label", fontsize=12)
    ax.text(3.9, 0.3, "off the edge", fontsize=12)
    ax.add_patch(FancyBboxPatch((0.5, 1.0), 0.4, 0.3, gid="box:small"))
    ax.text(0.55, 1.1, "too long for its box", fontsize=12)
    ax.add_patch(FancyArrowPatch((2.0, 0.2), (2.0, 1.6), arrowstyle="-|>", gid="arrow:up"))
    ax.text(1.8, 0.8, "crossed", fontsize=12)
    problems = " ; ".join(layout_problems(fig))
    assert "'first label' overlaps 'second label'" in problems
    assert "'off the edge' leaves the figure" in problems
    assert "'too long for its box' sticks out of box:small" in problems
    assert "'crossed' is crossed by arrow:up" in problems
    clean = Figure(figsize=(4, 3))
    FigureCanvasAgg(clean)
    clean_ax = clean.add_axes((0, 0, 1, 1))
    clean_ax.set_axis_off()
    clean_ax.text(0.5, 0.5, "alone", fontsize=12)
    assert layout_problems(clean) == []


def _layer_sizes(fig: Figure) -> list[int]:
    layers = sorted(_by_gid(fig, "layer:"), key=lambda gid: int(gid.split(":")[1]))
    return [int(gid.split(":")[2]) for gid in layers]


def test_autoencoder_draws_the_layer_sizes_of_the_book_model():
    config = _book_config("ae-20d")
    fig = diagrams.autoencoder(config)
    c, h, w = config.image_shape
    expected = [c * h * w, *config.hidden, config.latent_dim, *reversed(config.hidden), c * h * w]
    assert _layer_sizes(fig) == expected == [784, 400, 20, 400, 784]
    shown = [t.get_text() for t in _texts(fig)]
    for size in expected:
        assert str(size) in shown
    for word in ("encoder", "decoder", "code $z$", "image $x$", "reconstruction"):
        assert word in shown, word
    # Bars grow with the layer's size: the code is the narrowest point.
    heights = {int(g.split(":")[2]): p.get_height() for g, p in _by_gid(fig, "layer:").items()}
    assert heights[20] < heights[400] < heights[784]


def test_autoencoder_follows_another_config():
    fig = diagrams.autoencoder(ModelConfig(kind="ae", latent_dim=8, hidden=(256, 64)))
    assert _layer_sizes(fig) == [784, 256, 64, 8, 64, 256, 784]
    shown = [t.get_text() for t in _texts(fig)]
    assert {"256", "64", "8"} <= set(shown) and "400" not in shown and "20" not in shown
    assert layout_problems(fig) == []


def test_architecture_diagrams_refuse_the_conv_model():
    conv = ModelConfig(kind="vae", arch="conv", latent_dim=20, hidden=(256,))
    for draw in (diagrams.autoencoder, diagrams.vae):
        with pytest.raises(ValueError, match="fully connected"):
            draw(conv)


def test_vae_diagram_shows_mu_logvar_and_the_noise_entering_the_sample():
    config = _book_config("vae-2d-nokl")
    fig = diagrams.vae(config)
    text = _strings(fig)
    for piece in ("\\mu", "\\log\\sigma^2", "\\epsilon", "\\mathcal{N}(0, I)", "q_\\phi(z \\mid x)",
                  "p_\\theta(x \\mid z)", f"code: {config.latent_dim} numbers", "784\n→ 400"):
        assert piece in text, piece
    arrows = _by_gid(fig, "arrow:")
    assert {"arrow:x-encoder", "arrow:encoder-mu", "arrow:encoder-logvar", "arrow:mu-z", "arrow:logvar-z",
            "arrow:eps-z", "arrow:z-decoder", "arrow:decoder-reconstruction"} == set(arrows)
    # The noise comes from below and ends at the bottom of the sampling box.
    (x0, y0), (x1, y1) = _ends(arrows["arrow:eps-z"])
    z_box = _by_gid(fig, "box:z")["box:z"]
    assert y1 > y0 and abs(x1 - x0) < 1e-6
    assert abs(y1 - z_box.get_y()) < 0.05 and z_box.get_x() < x1 < z_box.get_x() + z_box.get_width()
    assert "code: 20 numbers" in _strings(diagrams.vae(_book_config("vae-20d")))


def _ends(arrow: FancyArrowPatch) -> tuple[np.ndarray, np.ndarray]:
    """The start of an arrow and its tip (the point of the path farthest from the start), in data units."""
    points = _curve(arrow)
    start = points[0]
    return start, points[np.argmax(((points - start) ** 2).sum(1))]


def _direction(arrow: FancyArrowPatch) -> tuple[float, float]:
    start, tip = _ends(arrow)
    return tip[0] - start[0], tip[1] - start[1]


def test_reparameterization_gradient_stops_at_the_sample_before_and_reaches_mu_sigma_after():
    fig = diagrams.reparameterization()
    gradients = set(_by_gid(fig, "arrow:grad:"))
    before = {g for g in gradients if ":before:" in g}
    after = {g for g in gradients if ":after:" in g}
    assert before == {"arrow:grad:before:loss-decoder", "arrow:grad:before:decoder-z"}
    assert after == {"arrow:grad:after:loss-decoder", "arrow:grad:after:decoder-z", "arrow:grad:after:z-mu",
                     "arrow:grad:after:z-sigma", "arrow:grad:after:mu-encoder", "arrow:grad:after:sigma-encoder"}
    assert set(_by_gid(fig, "blocked:")) == {"blocked:before:z"}
    # The noise is an input only after the trick, and z is a random node only before it.
    assert set(_by_gid(fig, "node:")) == {"node:before:z", "node:after:eps"}
    assert "arrow:after:eps-z" in _by_gid(fig, "arrow:after:")
    # Gradients run backwards (right to left), dashed and in the gradient colour; forward arrows run
    # left to right in solid ink.
    for gid, arrow in _by_gid(fig, "arrow:").items():
        dx, _ = _direction(arrow)
        if gid.startswith("arrow:grad:"):
            assert dx < 0, gid
            assert arrow.get_linestyle() == "--" and to_rgba(arrow.get_edgecolor()) == to_rgba(diagrams.GRADIENT)
        elif not gid.endswith("eps-z"):
            assert dx > 0, gid
            assert arrow.get_linestyle() == "-" and to_rgba(arrow.get_edgecolor()) == to_rgba(diagrams.INK)
    # After the trick the gradient ends at the mu and sigma boxes.
    renderer = fig.canvas.get_renderer()
    arrows = _by_gid(fig, "arrow:grad:after:")
    for target in ("mu", "sigma"):
        box = _by_gid(fig, f"box:after:{target}")[f"box:after:{target}"].get_window_extent(renderer).padded(4)
        tip = fig.axes[0].transData.transform(_ends(arrows[f"arrow:grad:after:z-{target}"])[1])
        assert box.contains(*tip), target
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["forward", "gradient", "random"]


def test_generative_story_generates_downwards_and_infers_upwards():
    fig = diagrams.generative_story()
    text = _strings(fig)
    for piece in ("generative model", "inference model", "p(z) = \\mathcal{N}(0, I)", "p_\\theta(x \\mid z)",
                  "q_\\phi(z \\mid x)", "p_\\theta(z \\mid x)"):
        assert piece in text, piece
    arrows = _by_gid(fig, "arrow:")
    assert set(arrows) == {"arrow:gen:z-x", "arrow:inf:x-z"}
    assert _direction(arrows["arrow:gen:z-x"])[1] < 0        # from z down to x
    assert _direction(arrows["arrow:inf:x-z"])[1] > 0        # from x up to z
    assert arrows["arrow:gen:z-x"].get_linestyle() == "-" and arrows["arrow:inf:x-z"].get_linestyle() == "--"


def test_to_svg_is_self_contained_and_repeatable():
    fig = diagrams.generative_story()
    svg = diagrams.to_svg(fig)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<text" not in svg          # text drawn as outlines: no font needed
    assert "<dc:date>" not in svg and 'href="http' not in svg
    assert diagrams.to_svg(fig) == svg
