"""An interactive latent explorer (chapter 7).

``latent_explorer(model)`` returns an object that displays, in a live notebook, one slider per latent
dimension and the image decoded from the current code, updated as the sliders move. Its display bundle
also carries a static PNG (each row sweeps one slider from -2.5 to 2.5), which is what a reader of the
HTML book, or a notebook with no kernel attached, sees instead of an empty widget box.
"""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import torch

from vaelib.models import Model
from vaelib.evaluation import decode
from vaelib.plots import png_bytes, tile_images

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _png(image: np.ndarray, scale: int = 6) -> bytes:
    """A grey-level image in [0, 1] (dark digits on white) as PNG bytes, upscaled ``scale`` times."""
    from PIL import Image

    pixels = ((1.0 - np.clip(image, 0, 1)) * 255).astype(np.uint8)
    img = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                         Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class LatentExplorer:
    """Sliders over the first ``n_sliders`` latent dimensions, with a static fallback image."""

    def __init__(self, model: Model, n_sliders: int = 4, span: float = 2.5, steps: int = 9) -> None:
        if n_sliders <= 0:
            raise ValueError(f"n_sliders must be positive, got {n_sliders}")
        self.model = model.eval()
        self.n_sliders = min(n_sliders, model.config.latent_dim)
        self.span, self.steps = span, steps
        self.z = torch.zeros(1, model.config.latent_dim)
        self._widget = None

    def static_figure(self):
        """One row per slider: the image as that slider sweeps -span..span, the others at 0."""
        values = torch.linspace(-self.span, self.span, self.steps)
        z = torch.zeros(self.n_sliders * self.steps, self.model.config.latent_dim)
        for d in range(self.n_sliders):
            z[d * self.steps:(d + 1) * self.steps, d] = values
        grid = tile_images(decode(self.model, z), self.steps)
        fig, ax = plt.subplots(figsize=(0.6 * self.steps + 1.2, 0.6 * self.n_sliders + 1.0))
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
        side = grid.shape[1] / self.steps
        ax.set_xticks(np.arange(self.steps) * side + side / 2)
        ax.set_xticklabels([f"{v:.1f}" for v in values.tolist()])
        ax.set_yticks(np.arange(self.n_sliders) * (grid.shape[0] / self.n_sliders) + grid.shape[0] / self.n_sliders / 2)
        ax.set_yticklabels([f"$z_{d + 1}$" for d in range(self.n_sliders)])
        ax.set_xlabel("slider value (other dimensions held at 0)")
        ax.set_ylabel("slider")
        ax.set_title("Latent explorer, static view: each row moves one slider")
        fig.tight_layout()
        return fig

    def static_png(self) -> bytes:
        fig = self.static_figure()
        png = png_bytes(fig, dpi=160)  # sharp on high-DPI screens and phones
        plt.close(fig)
        return png

    def widget(self):
        """The live ipywidgets explorer (built once)."""
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        sliders = [w.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.05, description=f"z{d + 1}",
                                 continuous_update=True) for d in range(self.n_sliders)]
        image = w.Image(format="png", width=168, height=168)

        def redraw(_=None) -> None:
            for d, s in enumerate(sliders):
                self.z[0, d] = s.value
            image.value = _png(decode(self.model, self.z)[0, 0].numpy())

        for s in sliders:
            s.observe(redraw, names="value")
        redraw()
        self._widget = w.HBox([w.VBox(sliders), image])
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = {"image/png": base64.b64encode(self.static_png()).decode("ascii"),
                  "text/plain": f"<LatentExplorer: {self.n_sliders} sliders>"}
        try:
            view = self.widget()._repr_mimebundle_()
        except Exception:  # no ipywidgets, or no kernel to talk to: the static image is all there is
            view = None
        if view and WIDGET_MIME in view:
            bundle[WIDGET_MIME] = view[WIDGET_MIME]
        return bundle


def latent_explorer(model: Model, n_sliders: int = 4) -> LatentExplorer:
    """Display this in a notebook: live sliders with a kernel, a static figure without one."""
    return LatentExplorer(model, n_sliders=n_sliders)
