"""Figures for the book. Every function returns a matplotlib ``Figure`` with a title and labelled axes,
and only draws what it is given: the numbers behind a figure (decoded images, codes, the radius of the
prior's ball) come from :mod:`vaelib.evaluation`, so a chapter can also measure what its figure shows.

Images are ``[N, 1, H, W]`` tensors with values in [0, 1] (pixel probabilities or data).
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from vaelib.evaluation import project_2d
from vaelib.recipe import History


def tile_images(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """The first channel of ``[N, C, H, W]`` images tiled into one 2-D array, ``nrow`` images per row
    (fewer if there are fewer images), with ``pad`` pixels of value 1 between and around them."""
    from torchvision.utils import make_grid  # here, not at the top: torchvision takes seconds to import

    grid = make_grid(images.detach().cpu().float()[:, :1], nrow=nrow, padding=pad, pad_value=1.0)
    return grid[0].numpy()  # make_grid repeats a single channel three times


def png_bytes(fig: Figure, dpi: int = 100, palette: bool = False) -> bytes:
    """The figure as PNG bytes. ``palette=True`` stores it with 256 colours: a fraction of the bytes
    and no visible change, for an image embedded in a page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if not palette:
        return buffer.getvalue()
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _finish(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig


def plain_log_ticks(axis) -> None:
    """Label a log-scaled ``axis`` (``ax.xaxis`` or ``ax.yaxis``) with plain numbers (0.01, 0.02, 0.05,
    ...) instead of powers of ten, and leave its minor ticks unlabelled, so that the labels never crowd
    each other. Call it after the data are drawn: how many ticks get a label depends on the range."""
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else math.inf
    subs = tuple(range(1, 10)) if decades < 0.7 else (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def image_grid(images: torch.Tensor, nrow: int = 8, title: str = "Images",
               ax: plt.Axes | None = None) -> Figure:
    """Show a batch of images as one grid."""
    if images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    nrow = min(nrow, len(images))
    grid = tile_images(images, nrow)
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.55 * nrow + 1.2, 0.55 * grid.shape[0] / 29 + 0.8))
    else:
        fig = ax.figure
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return _finish(fig)


def reconstructions(originals: torch.Tensor, recons: torch.Tensor, n: int = 10,
                    title: str = "Originals (top) and reconstructions (bottom)") -> Figure:
    """Originals in the top row, their reconstructions below."""
    n = min(n, len(originals))
    both = torch.cat([originals[:n].cpu(), recons[:n].cpu()])
    fig = image_grid(both, nrow=n, title=title)
    ax = fig.axes[0]
    ax.set_yticks([15, 44])
    ax.set_yticklabels(["original", "decoded"])
    return fig


def latent_scatter(codes: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None,
                   title: str = "Codes of test images", ax: plt.Axes | None = None,
                   circle: float | None = None,
                   circle_label: str = "99% of N(0, I) draws fall inside") -> Figure:
    """Scatter codes coloured by class; codes of more than 2 dimensions are projected by PCA
    (:func:`vaelib.evaluation.project_2d`). ``circle``: also draw a dashed circle of that radius
    around 0 (e.g. :func:`vaelib.evaluation.prior_radius`), with equal axis scales."""
    xy, (xl, yl) = project_2d(codes)
    xy = xy.numpy()
    labels = labels.cpu().numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7, vmin=-0.5, vmax=9.5)
    cbar = fig.colorbar(sc, ax=ax, ticks=range(10))
    if class_names is not None:
        cbar.ax.set_yticklabels(class_names)
    cbar.set_label("class")
    if circle is not None:
        ax.add_patch(plt.Circle((0, 0), circle, fill=False, color="black", lw=2, ls="--",
                                label=circle_label))
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    return _finish(fig)


def _offset_ticks(axis, low: float, high: float) -> None:
    """Ticks at the centre of ``[low, high]`` and at round steps on either side, labelled with their
    offset from the centre (0, +0.01, -0.02, ...), which stays short at any magnification."""
    centre, half = (low + high) / 2, (high - low) / 2
    step = 10 ** math.floor(math.log10(half))
    step *= 5 if half / step > 5 else 2 if half / step > 2.5 else 1
    k = int(half / step + 1e-9)
    offsets = step * np.arange(-k, k + 1)
    axis.set_ticks(centre + offsets, [f"{v:+.2g}" if i != k else "0" for i, v in enumerate(offsets)])


def gaussian_ellipses(mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, n: int = 60,
                      title: str = "Each input's Gaussian q(z | x): 2-sigma ellipses",
                      ax: plt.Axes | None = None, filled: bool = True,
                      window: tuple[float, float, float, float] | None = None,
                      mark: tuple[float, float, float, float] | None = None) -> Figure:
    """Draw the 2-sigma ellipse of q(z | x) for ``n`` inputs of a 2-D latent space, coloured by class,
    with a small dot at each centre.

    ``filled=False`` draws outlines only, so that ellipses piled on top of each other stay apart.
    ``window=(x0, x1, y0, y1)`` shows only that part of the plane (a zoom, at the true scale of the
    ellipses), with ticks that give the offset from the window's centre; ``mark`` outlines such a window,
    and rings it, to show where a zoom was taken.
    """
    if mu.shape[1] != 2:
        raise ValueError(f"gaussian_ellipses needs a 2-D latent space, got {mu.shape[1]} dimensions")
    mu, sigma = mu[:n].cpu().numpy(), torch.exp(0.5 * logvar[:n]).cpu().numpy()
    colors = plt.get_cmap("tab10")(labels[:n].cpu().numpy() % 10)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    for m, s, c in zip(mu, sigma, colors):
        ax.add_patch(Ellipse(m, 4 * s[0], 4 * s[1], fill=filled, facecolor=c, edgecolor=c, lw=1,
                             alpha=0.35 if filled else 0.8))
    ax.scatter(mu[:, 0], mu[:, 1], c=colors, s=3, zorder=3)
    if window is None:
        pad = 2 * sigma.max(0) + 0.5
        ax.set_xlim(mu[:, 0].min() - pad[0], mu[:, 0].max() + pad[0])
        ax.set_ylim(mu[:, 1].min() - pad[1], mu[:, 1].max() + pad[1])
    else:  # a zoom: the ticks give the offset from the window's centre, readable at any magnification
        ax.set_xlim(window[0], window[1])
        ax.set_ylim(window[2], window[3])
        _offset_ticks(ax.xaxis, window[0], window[1])
        _offset_ticks(ax.yaxis, window[2], window[3])
    if mark is not None:  # the window's outline, and a ring around it that shows even when it is tiny
        ax.add_patch(Rectangle((mark[0], mark[2]), mark[1] - mark[0], mark[3] - mark[2], fill=False,
                               edgecolor="black", lw=1.5, zorder=4))
        ax.plot((mark[0] + mark[1]) / 2, (mark[2] + mark[3]) / 2, marker="o", ms=14, mfc="none",
                mec="black", mew=1.5, zorder=4)
    where = "" if window is None else " (from the window's centre)"
    ax.set_xlabel("$z_1$" + where)
    ax.set_ylabel("$z_2$" + where)
    ax.set_title(title)
    return _finish(fig)


def manifold(images: torch.Tensor, quantiles: torch.Tensor,
             title: str = "Decoded latent grid (Gaussian quantiles)") -> Figure:
    """Draw the ``n x n`` decoded grid of :func:`vaelib.evaluation.manifold_codes`: ``images``
    ``[n * n, C, H, W]`` in its row-major order, ``quantiles [n]`` along each axis."""
    n = len(quantiles)
    if images.dim() != 4 or len(images) != n * n:
        raise ValueError(f"expected {n * n} images [N, C, H, W] for {n} quantiles, got {tuple(images.shape)}")
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(tile_images(images, n, pad=0), cmap="gray_r", vmin=0, vmax=1)
    side = images.shape[-1]
    ticks = np.arange(n) * side + side / 2
    ax.set_xticks(ticks[::2])
    ax.set_xticklabels([f"{v:.1f}" for v in quantiles[::2].tolist()])
    ax.set_yticks(ticks[::2])
    ax.set_yticklabels([f"{v:.1f}" for v in quantiles.flip(0)[::2].tolist()])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return _finish(fig)


def interpolation(images: torch.Tensor, t: torch.Tensor,
                  title: str = "Walking in latent space from one image to another",
                  max_labels: int = 5) -> Figure:
    """Draw the decoded codes of :func:`vaelib.evaluation.interpolation_codes` in a row. At most
    ``max_labels`` evenly spaced ones, the first and the last included, are labelled with their weight
    ``t``, in a font large enough to read when the row is shrunk to a phone's width."""
    if images.dim() != 4 or len(images) != len(t):
        raise ValueError(f"expected one image per weight ({len(t)}), got images {tuple(images.shape)}")
    steps = len(t)
    fig = image_grid(images, nrow=steps, title=title)
    ax = fig.axes[0]
    side = images.shape[-1] + 1
    # Evenly spaced labels, the first and the last included: the most that fit in max_labels.
    k = max((k for k in range(2, min(steps, max_labels) + 1) if (steps - 1) % (k - 1) == 0), default=1)
    shown = np.arange(steps)[::(steps - 1) // (k - 1)] if k > 1 else np.arange(steps)
    ax.set_xticks(shown * side + side / 2)
    ax.set_xticklabels([f"{t[i].item():.2g}" for i in shown], fontsize=12)
    ax.set_xlabel("interpolation weight t (0 = first image, 1 = second)", fontsize=12)
    ax.title.set_fontsize(13)
    return _finish(fig)


CURVE_LABELS = {"recon": "reconstruction NLL (nats per image)", "kl": "KL (nats per image)",
                "elbo": "ELBO (nats per image)", "loss": "loss (nats per image)", "mean_sigma": "mean sigma"}


def training_curves(histories: History | dict[str, History], keys: Sequence[str] = ("recon", "kl"),
                    title: str = "Training curves", logy: Sequence[str] = ()) -> Figure:
    """One panel per history key against epoch; one line per run when given ``{name: history}``.
    Keys named in ``logy`` get a log-scaled y axis labelled with plain numbers. Each panel has a title
    of its own only when there are several; one panel is named by ``title`` alone."""
    runs = {"": histories} if "loss" in histories else histories
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in runs.items():
            values = history[key]
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name or None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel(CURVE_LABELS.get(key, key))
        if len(keys) > 1:
            ax.set_title(CURVE_LABELS.get(key, key).split(" (")[0])
        if key in logy:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _finish(fig)


def sigma_histogram(sigmas: dict[str, torch.Tensor], bins: int = 60,
                    title: str = "Encoder standard deviations sigma",
                    colors: dict[str, str] | None = None, floor: float | None = None) -> Figure:
    """Histogram of sigma values (log-scaled x axis), one series per named model: light bars with a
    solid outline in the series' colour (``colors[name]``, else matplotlib's cycle), so that
    overlapping series stay readable. ``floor`` (the smallest sigma the model allows,
    :data:`vaelib.models.SIGMA_RANGE`) is marked by a dotted line."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    all_vals = torch.cat([s.flatten().cpu() for s in sigmas.values()]).clamp_min(1e-6)
    # Edges a little outside the extremes, so rounding in logspace never drops the smallest value.
    edges = np.logspace(np.log10(all_vals.min().item() * 0.99), np.log10(max(all_vals.max().item(), 1.5)),
                        bins)
    for i, (name, s) in enumerate(sigmas.items()):
        values = s.flatten().cpu().clamp_min(1e-6).numpy()
        color = (colors or {}).get(name, f"C{i}")
        ax.hist(values, bins=edges, alpha=0.3, color=color, label=name)
        ax.hist(values, bins=edges, histtype="step", lw=1.5, color=color)
    if floor is not None:
        ax.axvline(floor, color="black", ls=":", lw=1.2, label=f"clamp floor, sigma = {floor:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("sigma (log scale)")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    return _finish(fig)
