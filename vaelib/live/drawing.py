"""The live figure's static image, for where the page's script does not run (Jupyter, no JavaScript): the
codes on the pad's plane with a grid of points, and the images the decoder makes of those points."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch

from vaelib.evaluation import decode
from vaelib.live.plane import Plane
from vaelib.models import Model
from vaelib.plots import png_bytes as figure_png, tile_images

# matplotlib's tab10, the colours of vaelib.plots.latent_scatter and of the page's script
TAB10 = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]


def static_png(model: Model, plane: Plane, points: torch.Tensor, labels: np.ndarray,
                class_names: list[str], circle: float | None, n: int = 7) -> bytes:
    """The fallback image: the codes on the pad's plane with an ``n x n`` grid of points, and the
    images the decoder makes of those points, laid out as on the plane."""
    from matplotlib.figure import Figure  # not pyplot: the notebook must not show this figure itself
    from matplotlib.patches import Circle

    cx, cy = plane.centre
    steps = torch.linspace(-1, 1, n) * plane.half * (n - 1) / n
    ab = torch.stack([(cx + steps).repeat(n), (cy + steps.flip(0)).repeat_interleave(n)], 1)  # top row first
    with torch.no_grad():
        tiles = tile_images(decode(model, plane.codes(ab)), n)  # the first channel, as the page shows it

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax, ax_img = fig.subplots(1, 2)
    for k in np.unique(labels):
        sel = labels == k
        ax.scatter(points[sel, 0], points[sel, 1], s=5, color=TAB10[k % 10], linewidths=0,
                   label=class_names[k] if k < len(class_names) else str(k))
    ax.scatter(ab[:, 0], ab[:, 1], marker="+", c="black", s=30, linewidths=1)
    if circle:
        ax.add_patch(Circle((0, 0), circle, fill=False, color="black", lw=1.5, ls="--"))
    ax.set_xlim(cx - plane.half, cx + plane.half)
    ax.set_ylim(cy - plane.half, cy + plane.half)
    ax.set_aspect("equal")
    ax.set_xlabel(plane.axis_names[0])
    ax.set_ylabel(plane.axis_names[1])
    ax.set_title("Training codes and a grid of points (+)")
    ax_img.imshow(tiles, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title("The image decoded at each point")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=9,
               markerscale=3, frameon=False, handletextpad=0.1, columnspacing=1.0)
    return figure_png(fig, palette=True)


def png_bytes(fallback) -> bytes:
    """A caller's own static image, a matplotlib figure or PNG bytes, as PNG bytes."""
    if isinstance(fallback, (bytes, bytearray)):
        if not bytes(fallback[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError("fallback bytes are not a PNG image; pass a matplotlib figure or PNG bytes")
        return bytes(fallback)
    if hasattr(fallback, "savefig"):
        import matplotlib.pyplot as plt

        png = figure_png(fallback, palette=True)
        plt.close(fallback)  # shown inside the live figure, not again at the end of the cell
        return png
    raise TypeError(f"fallback must be a matplotlib figure or PNG bytes, got {type(fallback).__name__}")
