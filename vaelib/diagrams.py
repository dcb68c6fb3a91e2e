"""The book's diagrams, drawn from code: the autoencoder (chapter 1), the VAE (chapter 3), the generative
story beside the inference model (chapter 5) and the computation graph before and after the
reparameterization trick (chapter 6).

Every function returns a matplotlib ``Figure`` made without pyplot, so drawing one changes no global
state. The diagrams use dark ink on an opaque white panel, so they read the same in the book's light and
dark themes, and keep their text at 11.5 points or more on a figure at most 6.4 inches wide, so it stays
legible on a 390-pixel phone screen. The architecture diagrams read their layer sizes from the model's
:class:`~vaelib.models.ModelConfig`, so they always show the network the book trains. :func:`to_svg` gives
the SVG text the chapters display.

Every box, node and arrow has a ``gid`` (``"box:encoder"``, ``"arrow:grad:z-mu"``), so tests can ask what
a diagram shows.
"""

from __future__ import annotations

import io

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Polygon

from vaelib.models import ModelConfig

INK = "#1a1a1a"          # text and forward arrows
PANEL = "#ffffff"        # the opaque background
GRADIENT = "#c0392b"     # gradient arrows (also dashed, so colour is not the only cue)
MUTED = "#5f5f5f"        # secondary text
FILLS = {"data": "#e8e8e8", "encoder": "#d6e6f5", "code": "#dcefd6", "decoder": "#fbe1cc",
         "random": "#f6d5e3", "loss": "#ece0f5"}
FONT = 11.5              # points, the smallest text in any diagram
MAX_WIDTH = 6.4          # inches


def _canvas(width: float, height: float) -> tuple[Figure, "mpl.axes.Axes"]:
    """A figure whose one axes fills it, in inch units: (0, 0) is the bottom left corner."""
    fig = Figure(figsize=(width, height), facecolor=PANEL)
    FigureCanvasAgg(fig)  # a canvas that can measure text, for layout checks
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    ax.set_facecolor(PANEL)
    return fig, ax


def _text(ax, x: float, y: float, text: str, size: float = FONT, color: str = INK, **kwargs):
    return ax.text(x, y, text, ha=kwargs.pop("ha", "center"), va=kwargs.pop("va", "center"),
                   fontsize=size, color=color, **kwargs)


def _box(ax, x: float, y: float, w: float, h: float, text: str, kind: str, gid: str, **text_kwargs):
    """A rounded box centred at (x, y) with its text inside."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                           fc=FILLS[kind], ec=INK, lw=1.2, gid=gid)
    ax.add_patch(patch)
    _text(ax, x, y, text, **text_kwargs)
    return patch


def _circle(ax, x: float, y: float, r: float, text: str, kind: str, gid: str, **text_kwargs):
    """A round node (a random variable) centred at (x, y)."""
    patch = Circle((x, y), r, fc=FILLS[kind], ec=INK, lw=1.2, gid=gid)
    ax.add_patch(patch)
    _text(ax, x, y, text, **text_kwargs)
    return patch


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], gid: str, kind: str = "forward",
           rad: float = 0.0):
    """An arrow from ``start`` to ``end``: ``forward`` (solid ink), ``gradient`` (dashed red) or
    ``inference`` (dashed ink)."""
    style = dict(forward=dict(color=INK, ls="-", lw=1.4), gradient=dict(color=GRADIENT, ls="--", lw=1.8),
                 inference=dict(color=INK, ls="--", lw=1.4))[kind]
    patch = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, shrinkA=0, shrinkB=0,
                            connectionstyle=f"arc3,rad={rad}", gid=f"arrow:{gid}", **style)
    ax.add_patch(patch)
    return patch


def _layer_sizes(config: ModelConfig) -> list[int]:
    if config.arch != "mlp":
        raise ValueError(f"the architecture diagrams draw the fully connected model (arch='mlp'), got "
                         f"arch={config.arch!r}")
    c, h, w = config.image_shape
    return [c * h * w, *config.hidden]


def _size_label(n: int) -> str:
    return f"{n:,}"


def autoencoder(config: ModelConfig) -> Figure:
    """The autoencoder of ``config`` (chapter 1) as a bow tie: one bar per layer, as tall as the
    square root of its size, from the image through the encoder's layers to the code z and back through
    the decoder's to the reconstruction."""
    encoder = _layer_sizes(config)
    sizes = [*encoder, config.latent_dim, *reversed(encoder)]
    n_hidden = len(config.hidden)
    names = (["image $x$"] + ["hidden"] * n_hidden + ["code $z$"] + ["hidden"] * n_hidden
             + ["reconstruction"])
    width = MAX_WIDTH
    height = 3.3
    fig, ax = _canvas(width, height)
    step = (width - 1.3) / (len(sizes) - 1)
    xs = [0.65 + i * step for i in range(len(sizes))]
    mid, tallest, shortest = 1.75, 1.7, 0.16
    heights = [shortest + (tallest - shortest) * (s / max(sizes)) ** 0.5 for s in sizes]
    bar_w = 0.26
    for i in range(len(sizes) - 1):   # the full connections between neighbouring layers
        x0, x1 = xs[i] + bar_w / 2, xs[i + 1] - bar_w / 2
        h0, h1 = heights[i] / 2, heights[i + 1] / 2
        ax.add_patch(Polygon([(x0, mid - h0), (x1, mid - h1), (x1, mid + h1), (x0, mid + h0)],
                             closed=True, fc="#f1f1f1", ec="#b5b5b5", lw=0.8, gid=f"link:{i}"))
    code_index = n_hidden + 1
    for i, (x, s, h, name) in enumerate(zip(xs, sizes, heights, names)):
        kind = "data" if i in (0, len(sizes) - 1) else "code" if i == code_index else \
            "encoder" if i < code_index else "decoder"
        ax.add_patch(FancyBboxPatch((x - bar_w / 2, mid - h / 2), bar_w, h,
                                    boxstyle="round,pad=0,rounding_size=0.05", fc=FILLS[kind], ec=INK,
                                    lw=1.2, gid=f"layer:{i}:{s}"))
        _text(ax, x, mid + tallest / 2 + 0.3, name)
        _text(ax, x, mid - h / 2 - 0.22, _size_label(s))
    # Brackets under the two halves, which meet at the code.
    y = 0.38
    for label, x0, x1 in (("encoder", xs[0] - 0.1, xs[code_index] - 0.12),
                          ("decoder", xs[code_index] + 0.12, xs[-1] + 0.1)):
        ax.add_line(Line2D([x0, x0, x1, x1], [y + 0.12, y, y, y + 0.12], color=MUTED, lw=1.2))
        _text(ax, (x0 + x1) / 2, y - 0.2, label, color=MUTED)
    return fig


def vae(config: ModelConfig) -> Figure:
    """The VAE of ``config`` (chapter 3): the encoder outputs mu and log sigma^2, a code is drawn as
    z = mu + sigma * eps with eps ~ N(0, I) coming in from below, and the decoder rebuilds the image."""
    encoder = _layer_sizes(config)
    d, image = config.latent_dim, encoder[0]
    hidden = " → ".join(_size_label(h) for h in config.hidden)
    width, height = MAX_WIDTH, 3.5
    fig, ax = _canvas(width, height)
    y = 2.2
    xs = dict(x=0.36, enc=1.3, par=2.36, z=3.5, dec=4.78, out=5.93)
    _text(ax, xs["x"], y, f"image\n$x$\n{_size_label(image)}", gid="label:x")
    _box(ax, xs["enc"], y, 0.98, 1.25, f"encoder\n{_size_label(image)}\n→ {hidden}", "encoder", "box:encoder")
    _box(ax, xs["par"], y + 0.42, 0.7, 0.56, "$\\mu$", "encoder", "box:mu", size=13)
    _box(ax, xs["par"], y - 0.42, 0.7, 0.56, "$\\log\\sigma^2$", "encoder", "box:logvar")
    _box(ax, xs["z"], y, 1.0, 0.95, "$z = \\mu$\n$+\\,\\sigma\\odot\\epsilon$", "code", "box:z")
    _circle(ax, xs["z"], 0.72, 0.34, "$\\epsilon$", "random", "node:eps", size=13)
    _text(ax, xs["z"] - 0.42, 0.72, "$\\mathcal{N}(0, I)$", ha="right")
    _box(ax, xs["dec"], y, 0.98, 1.25, f"decoder\n{d} → {hidden}\n→ {_size_label(image)}", "decoder",
         "box:decoder")
    _text(ax, xs["out"], y, f"rebuilt\nimage\n{_size_label(image)}", gid="label:reconstruction")
    _arrow(ax, (xs["x"] + 0.3, y), (xs["enc"] - 0.49, y), "x-encoder")
    _arrow(ax, (xs["enc"] + 0.49, y + 0.3), (xs["par"] - 0.35, y + 0.42), "encoder-mu")
    _arrow(ax, (xs["enc"] + 0.49, y - 0.3), (xs["par"] - 0.35, y - 0.42), "encoder-logvar")
    _arrow(ax, (xs["par"] + 0.35, y + 0.42), (xs["z"] - 0.5, y + 0.22), "mu-z")
    _arrow(ax, (xs["par"] + 0.35, y - 0.42), (xs["z"] - 0.5, y - 0.22), "logvar-z")
    _arrow(ax, (xs["z"], 1.06), (xs["z"], y - 0.475), "eps-z")
    _arrow(ax, (xs["z"] + 0.5, y), (xs["dec"] - 0.49, y), "z-decoder")
    _arrow(ax, (xs["dec"] + 0.49, y), (xs["out"] - 0.33, y), "decoder-reconstruction")
    _text(ax, xs["par"], y + 0.9, "$q_\\phi(z \\mid x)$", color=MUTED)
    _text(ax, xs["par"], y - 0.95, f"{d} numbers\neach", color=MUTED, va="top")
    _text(ax, xs["z"] + 0.05, y + 0.9, f"code: {d} numbers", color=MUTED)
    _text(ax, xs["dec"], y + 0.9, "$p_\\theta(x \\mid z)$", color=MUTED)
    return fig


def generative_story() -> Figure:
    """The generative model p(z) p_theta(x | z) beside the inference model q_phi(z | x) (chapter 5).
    The solid arrow generates, the dashed arrow infers; the line below says how the two meet: q_phi(z | x)
    approximates the true posterior p_theta(z | x), given by Bayes' rule."""
    width, height = MAX_WIDTH, 4.4
    fig, ax = _canvas(width, height)
    top, bottom, r = 3.25, 1.65, 0.34
    left, right = 1.6, 4.8
    _text(ax, left, height - 0.25, "generative model", weight="bold")
    _text(ax, right, height - 0.25, "inference model", weight="bold")
    # Left: draw z from the prior, then x from the decoder.
    _circle(ax, left, top, r, "$z$", "code", "node:gen:z", size=13)
    _circle(ax, left, bottom, r, "$x$", "data", "node:gen:x", size=13)
    _arrow(ax, (left, top - r), (left, bottom + r), "gen:z-x")
    _text(ax, left - r - 0.12, top, "$p(z) = \\mathcal{N}(0, I)$", ha="right")
    _text(ax, left + 0.15, (top + bottom) / 2, "decoder\n$p_\\theta(x \\mid z)$", ha="left")
    _text(ax, left, bottom - r - 0.12, "1. draw a code\n2. decode it to an image", color=MUTED, va="top")
    # Right: from an observed image x, the encoder gives a distribution over codes.
    _circle(ax, right, top, r, "$z$", "code", "node:inf:z", size=13)
    _circle(ax, right, bottom, r, "$x$", "data", "node:inf:x", size=13)
    _arrow(ax, (right, bottom + r), (right, top - r), "inf:x-z", kind="inference")
    _text(ax, right - 0.15, (top + bottom) / 2, "encoder\n$q_\\phi(z \\mid x)$", ha="right")
    _text(ax, right, bottom - r - 0.12, "given an image,\nwhich codes could\nhave made it?", color=MUTED,
          va="top")
    ax.add_line(Line2D([width / 2, width / 2], [0.75, height - 0.1], color="#c8c8c8", lw=1))
    _text(ax, width / 2, 0.3, "$q_\\phi(z \\mid x)\\ \\approx\\ p_\\theta(z \\mid x) = p(z)\\, p_\\theta(x \\mid z)\\,/\\,p_\\theta(x)$",
          gid="label:bayes")
    return fig


def reparameterization() -> Figure:
    """The computation graph of one training step, before (top) and after (bottom) the reparameterization
    trick (chapter 6). Before, z is drawn from N(mu, sigma^2): the gradient of the loss L reaches z and
    stops there. After, z = mu + sigma * eps, with the noise eps an input from below: the gradient flows on
    through mu and sigma into the encoder."""
    width, height = MAX_WIDTH, 6.5
    fig, ax = _canvas(width, height)
    xs = dict(x=0.42, enc=1.35, par=2.5, z=3.72, dec=5.05, loss=6.0)

    def row(y: float, p: str, after: bool) -> None:
        _box(ax, xs["x"], y, 0.56, 0.56, "$x$", "data", f"box:{p}:x", size=13)
        _box(ax, xs["enc"], y, 0.95, 0.82, "encoder\n$\\phi$", "encoder", f"box:{p}:encoder")
        _box(ax, xs["par"], y + 0.4, 0.6, 0.5, "$\\mu$", "encoder", f"box:{p}:mu", size=13)
        _box(ax, xs["par"], y - 0.4, 0.6, 0.5, "$\\sigma$", "encoder", f"box:{p}:sigma", size=13)
        if after:
            half = 0.56
            _box(ax, xs["z"], y, 2 * half, 0.7, "$z = \\mu + \\sigma\\epsilon$", "code", f"box:{p}:z")
            _circle(ax, xs["z"], y - 1.05, 0.3, "$\\epsilon$", "random", f"node:{p}:eps", size=13)
            _text(ax, xs["z"] + 0.38, y - 1.05, "$\\sim \\mathcal{N}(0, I)$", ha="left")
            _arrow(ax, (xs["z"], y - 0.75), (xs["z"], y - 0.35), f"{p}:eps-z")
        else:
            half = 0.5
            _circle(ax, xs["z"], y, half, "$z \\sim$\n$\\mathcal{N}(\\mu, \\sigma^2)$", "random", f"node:{p}:z")
        _box(ax, xs["dec"], y, 0.9, 0.82, "decoder\n$\\theta$", "decoder", f"box:{p}:decoder")
        _box(ax, xs["loss"], y, 0.5, 0.56, "$L$", "loss", f"box:{p}:loss", size=13)
        # The forward pass, left to right.
        _arrow(ax, (xs["x"] + 0.28, y), (xs["enc"] - 0.475, y), f"{p}:x-encoder")
        _arrow(ax, (xs["enc"] + 0.475, y + 0.2), (xs["par"] - 0.3, y + 0.4), f"{p}:encoder-mu")
        _arrow(ax, (xs["enc"] + 0.475, y - 0.2), (xs["par"] - 0.3, y - 0.4), f"{p}:encoder-sigma")
        _arrow(ax, (xs["par"] + 0.3, y + 0.4), (xs["z"] - half + 0.06, y + 0.16), f"{p}:mu-z")
        _arrow(ax, (xs["par"] + 0.3, y - 0.4), (xs["z"] - half + 0.06, y - 0.16), f"{p}:sigma-z")
        _arrow(ax, (xs["z"] + half, y), (xs["dec"] - 0.45, y), f"{p}:z-decoder")
        _arrow(ax, (xs["dec"] + 0.45, y), (xs["loss"] - 0.25, y), f"{p}:decoder-loss")
        # The backward pass, right to left, arcing above the forward arrows.
        _arrow(ax, (xs["loss"], y + 0.28), (xs["dec"] + 0.2, y + 0.41), f"grad:{p}:loss-decoder",
               kind="gradient", rad=0.35)
        _arrow(ax, (xs["dec"] - 0.2, y + 0.41), (xs["z"] + 0.2, y + (0.35 if after else 0.46)),
               f"grad:{p}:decoder-z", kind="gradient", rad=0.3)
        if after:
            _arrow(ax, (xs["z"] - 0.35, y + 0.35), (xs["par"] + 0.1, y + 0.65), f"grad:{p}:z-mu",
                   kind="gradient", rad=0.3)
            _arrow(ax, (xs["z"] - 0.42, y - 0.35), (xs["par"] + 0.1, y - 0.65), f"grad:{p}:z-sigma",
                   kind="gradient", rad=-0.3)
            _arrow(ax, (xs["par"] - 0.1, y + 0.65), (xs["enc"] + 0.1, y + 0.41), f"grad:{p}:mu-encoder",
                   kind="gradient", rad=0.3)
            _arrow(ax, (xs["par"] - 0.1, y - 0.65), (xs["enc"] + 0.1, y - 0.41), f"grad:{p}:sigma-encoder",
                   kind="gradient", rad=-0.3)
            _text(ax, xs["par"] + 0.6, y + 1.05, "the gradient reaches $\\mu$ and $\\sigma$", color=GRADIENT)
        else:
            # The gradient arrives at z and has nowhere to go: a stub that ends in a cross.
            stub = (xs["z"] - 0.55, y + 0.62)
            ax.add_line(Line2D([xs["z"] - 0.28, stub[0]], [y + 0.43, stub[1]], color=GRADIENT, ls="--",
                               lw=1.8, gid=f"stub:{p}:z"))
            _text(ax, stub[0] - 0.1, stub[1] + 0.06, "✕", color=GRADIENT, size=16, weight="bold",
                  gid=f"blocked:{p}:z")
            _text(ax, xs["par"] + 0.6, y + 1.05, "the gradient stops at the sample", color=GRADIENT)

    _text(ax, 0.12, height - 0.25, "Before: $z$ is drawn at random", ha="left", weight="bold")
    row(height - 1.75, "before", after=False)
    ax.add_line(Line2D([0.1, width - 0.1], [3.55] * 2, color="#c8c8c8", lw=1))
    _text(ax, 0.12, 3.3, "After: $z = \\mu + \\sigma\\epsilon$, with the noise $\\epsilon$ as an input",
          ha="left", weight="bold")
    row(1.85, "after", after=True)
    handles = [Line2D([], [], color=INK, lw=1.4, label="forward"),
               Line2D([], [], color=GRADIENT, lw=1.8, ls="--", label="gradient"),
               Line2D([], [], marker="o", ls="none", ms=11, mfc=FILLS["random"], mec=INK, label="random")]
    ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=FONT, frameon=False,
              bbox_to_anchor=(0.5, 0.0), handlelength=1.6, columnspacing=1.2)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as SVG text, with text drawn as outlines (no fonts needed) and no timestamp."""
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "path", "svg.hashsalt": "vaelib"}):
        fig.savefig(buffer, format="svg", facecolor=fig.get_facecolor(), metadata={"Date": None})
    return buffer.getvalue()
