"""Live figures for the HTML book: a chapter's own decoder, run in the reader's browser (chapters 2, 5, 7).

:func:`figure` returns an object that a notebook displays. Its ``text/html`` is a
``<div class="vae-live">`` that carries the decoder's weights and the latent plane; the book's
``_static/vae-live.js`` finds it when the page loads and decodes the code under the reader's pointer in
plain JavaScript, with no kernel and no network (it works from ``file://`` too). Where that script is
not loaded (Jupyter, or JavaScript turned off) a static image shows instead: a grid of codes over the
plane and the images they decode to. The display bundle's ``image/png`` is the same image.

The export (:func:`export_decoder`) keeps the page small. The decoder's first layer (code to hidden
units, a few thousand weights) stays float32; each larger layer is stored as int8 with one float32
scale per output row, about a quarter of its float32 size. The rounding uses error feedback (the GPTQ
method of Frantar et al., 2022): the rounding error of each weight is passed on to the weights of the
same row not yet rounded, weighted by how the layer's inputs vary over the codes the figure can show,
so that the errors of a row cancel where the figure decodes. The inputs with the most signal are
rounded first. :func:`figure` then measures the int8
decoder against PyTorch's on fresh codes spread over the plane and refuses to build a figure that
differs by more than :data:`MAX_PIXEL_ERROR` in any pixel.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vaelib.evaluation import encode_mean, prior_radius
from vaelib.models import Model

MAX_PIXEL_ERROR = 0.02       # largest allowed |p_page - p_pytorch| of any pixel
MAX_WEIGHT_CHARS = 600_000   # the decoder's weights, as base64 text in the page
FLOAT_LAYER_MAX = 16_384     # layers with at most this many weights stay float32
N_DIRECTIONS = 6             # principal directions a wide code's plane can be chosen from
# matplotlib's tab10, the colours of vaelib.plots.latent_scatter
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


# --- the decoder, exported -------------------------------------------------------------------------


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _decoder_layers(model: Model) -> list[nn.Linear]:
    if not isinstance(model, nn.Module) or not hasattr(getattr(model, "config", None), "arch"):
        raise TypeError(f"a live figure needs a vaelib model (Autoencoder or VAE), got {type(model).__name__}")
    if model.config.arch != "mlp":
        raise ValueError(f"a live figure runs MLP decoders only, and this model has arch={model.config.arch!r}; "
                         "use a model built with arch='mlp'")
    if model.config.image_shape[0] != 1:
        raise ValueError(f"a live figure shows grey-level images (1 channel); this model makes "
                         f"{model.config.image_shape[0]}-channel images")
    if model.config.latent_dim < 2:
        raise ValueError(f"a live figure shows a plane of codes, so it needs a latent space of at least 2 "
                         f"dimensions; this model has {model.config.latent_dim}")
    return [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]


def quantize_rows(weight: torch.Tensor, inputs: torch.Tensor, damp: float = 0.01
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Round ``weight: [out, in]`` to int8 with one scale per row, so that ``q * scale[:, None]``
    approximates it, passing each rounding error on to the row's weights not yet rounded (GPTQ).

    ``inputs: [n, in]`` are inputs of the layer where its output matters. Returns ``q: [out, in]`` int8
    and ``scale: [out]`` float32."""
    if weight.dim() != 2 or inputs.dim() != 2 or inputs.shape[1] != weight.shape[1] or len(inputs) == 0:
        raise ValueError(f"expected weight [out, in] and inputs [n, in] with n > 0, got "
                         f"{tuple(weight.shape)} and {tuple(inputs.shape)}")
    w = weight.detach().cpu().double().clone()
    scale = (w.abs().amax(1) / 127).clamp_min(1e-12).float().double()  # what the page will multiply by
    x = inputs.detach().cpu().double()
    h = x.T @ x / len(x)
    dead = h.diagonal() == 0            # an input that is always 0 here: its weight cannot matter
    h[dead, dead] = 1.0
    h += damp * h.diagonal().mean() * torch.eye(len(h), dtype=h.dtype)
    # Round the inputs that carry the most signal first, while the others can still absorb their errors.
    order = h.diagonal().argsort(descending=True)
    w, h = w[:, order], h[order][:, order]
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = (w[:, i] / scale).round().clamp(-127, 127)
        err = (w[:, i] - q[:, i] * scale) / u[i, i]
        w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
    q = q[:, order.argsort()]
    return q.numpy().astype(np.int8), scale.numpy().astype(np.float32)


@torch.no_grad()
def export_decoder(model: Model, calibration: torch.Tensor) -> dict:
    """The decoder's layers for the page (base64, little-endian): small layers as float32, larger ones
    as int8 rounded by :func:`quantize_rows` on the layer inputs that ``calibration: [n, latent]``
    codes produce."""
    layers = _decoder_layers(model)
    x = calibration.detach().cpu().float()
    if x.dim() != 2 or x.shape[1] != model.config.latent_dim:
        raise ValueError(f"expected calibration codes [n, {model.config.latent_dim}], got {tuple(x.shape)}")
    out = []
    for i, layer in enumerate(layers):
        w, b = layer.weight.detach().cpu().float(), layer.bias.detach().cpu().float()
        entry = {"rows": w.shape[0], "cols": w.shape[1], "bias": _b64(b.numpy(), "<f4")}
        if w.numel() <= FLOAT_LAYER_MAX:
            entry.update(dtype="float32", weight=_b64(w.numpy(), "<f4"))
        else:
            q, scale = quantize_rows(w, x)
            entry.update(dtype="int8", weight=_b64(q, "i1"), scale=_b64(scale, "<f4"))
        out.append(entry)
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = x.relu()
    return {"layers": out}


def decode_exported(decoder: dict, z: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pixel probabilities ``[n, pixels]`` for codes ``z: [n, latent]``, with the arithmetic of the
    page's JavaScript (float32 weights, float64 sums): what the reader's browser shows."""
    x = np.asarray(z, dtype=np.float64)
    layers = decoder["layers"]
    for i, layer in enumerate(layers):
        shape = (layer["rows"], layer["cols"])
        if layer["dtype"] == "int8":
            scale = _unb64(layer["scale"], "<f4")
            w = (_unb64(layer["weight"], "i1").reshape(shape).astype(np.float32) * scale[:, None]).astype(np.float32)
        else:
            w = _unb64(layer["weight"], "<f4").reshape(shape)
        x = x @ w.astype(np.float64).T + _unb64(layer["bias"], "<f4")
        x = np.maximum(x, 0.0) if i < len(layers) - 1 else 1.0 / (1.0 + np.exp(-x))
    return x


def weight_chars(decoder: dict) -> int:
    """How many characters of base64 text the decoder's weights take in the page."""
    return sum(len(layer[k]) for layer in decoder["layers"] for k in ("weight", "scale", "bias") if k in layer)


# --- the figure ------------------------------------------------------------------------------------


@dataclass
class _Plane:
    """Where the pad sits in the latent space: ``basis [k, latent]`` orthonormal directions, the pair of
    them the pad starts on, and the square of plane coordinates it shows."""

    basis: torch.Tensor
    axis_names: list[str]
    centre: tuple[float, float]
    half: float

    def codes(self, ab: torch.Tensor, plane: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Codes ``[n, latent]`` at plane coordinates ``ab: [n, 2]`` (no component off the plane)."""
        return ab @ self.basis[list(plane)]

    def uniform(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``[n, 2]`` plane coordinates spread uniformly over the pad."""
        return torch.tensor(self.centre) + self.half * (2 * torch.rand(n, 2, generator=gen) - 1)


def _plane(codes: torch.Tensor, circle: float | None) -> _Plane:
    d = codes.shape[1]
    if d == 2:
        basis, names = torch.eye(2), ["z\u2081", "z\u2082"]
        lo, hi = codes.min(0).values, codes.max(0).values
        if circle:
            lo, hi = lo.clamp(max=-circle), hi.clamp(min=circle)
        centre = ((lo + hi) / 2).tolist()
        half = 1.08 * ((hi - lo).max().item() / 2)
    else:
        # The top principal directions of the codes, as a plane through the origin: a point of the pad
        # is a code, and the middle of the pad with nothing off the plane is the origin.
        _, _, v = torch.linalg.svd(codes - codes.mean(0), full_matrices=False)
        basis = v[:min(N_DIRECTIONS, d)]
        names = [f"principal direction {i + 1}" for i in range(len(basis))]
        reach = (codes @ basis.T).abs().quantile(0.995).item()
        centre, half = [0.0, 0.0], 1.1 * max(reach, circle or 0.0, 3.0)
    return _Plane(basis.float(), names, (float(centre[0]), float(centre[1])), float(half))


def _domain(plane: _Plane, codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Codes the figure can show: training codes, points of the pad, and prior draws (also with their
    in-plane part moved over the pad, as the pad does after "sample from the prior")."""
    gen = torch.Generator().manual_seed(seed)
    d = codes.shape[1]
    parts = [codes[torch.randperm(len(codes), generator=gen)[:n]]]
    pairs = list(itertools.combinations(range(len(plane.basis)), 2)) if d > 2 else [(0, 1)]
    for pair in pairs:
        parts.append(plane.codes(plane.uniform(n // len(pairs) + 1, gen), pair))
    prior = torch.randn(n, d, generator=gen)
    parts.append(prior)
    if d > 2:
        u = plane.basis[:2]
        parts.append(prior - (prior @ u.T) @ u + plane.codes(plane.uniform(n, gen)))
    return torch.cat(parts)


def _static_png(model: Model, plane: _Plane, points: torch.Tensor, labels: np.ndarray,
                class_names: list[str], circle: float | None, n: int = 7) -> bytes:
    """The fallback image: the codes on the pad's plane with an ``n x n`` grid of points, and the
    images the decoder makes of those points, laid out as on the plane."""
    from matplotlib.figure import Figure  # not pyplot: the notebook must not show this figure itself
    from matplotlib.patches import Circle

    cx, cy = plane.centre
    steps = torch.linspace(-1, 1, n) * plane.half * (n - 1) / n
    ab = torch.stack([(cx + steps).repeat(n), (cy + steps.flip(0)).repeat_interleave(n)], 1)  # top row first
    device = next(model.parameters()).device
    with torch.no_grad():
        images = torch.sigmoid(model.decode(plane.codes(ab).to(device))).cpu()
    h, w = images.shape[-2:]
    images = images[:, 0].reshape(n, n, h, w)  # the first channel, as the page shows it
    tiles = np.ones((n * (h + 1) + 1, n * (w + 1) + 1), dtype=np.float32)
    for r in range(n):
        for c in range(n):
            tiles[1 + (h + 1) * r:(h + 1) * (r + 1), 1 + (w + 1) * c:(w + 1) * (c + 1)] = images[r, c].numpy()

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
    return _small_png(fig)


def _small_png(fig) -> bytes:
    """The figure as a PNG with a 256-colour palette: a fraction of the bytes, no visible change."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _png_bytes(fallback) -> bytes:
    if isinstance(fallback, (bytes, bytearray)):
        if not bytes(fallback[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError("fallback bytes are not a PNG image; pass a matplotlib figure or PNG bytes")
        return bytes(fallback)
    if hasattr(fallback, "savefig"):
        import matplotlib.pyplot as plt

        png = _small_png(fallback)
        plt.close(fallback)  # shown inside the live figure, not again at the end of the cell
        return png
    raise TypeError(f"fallback must be a matplotlib figure or PNG bytes, got {type(fallback).__name__}")


def _check_inputs(model: Model, codes, labels, class_names, walk_images, walk_labels):
    d = model.config.latent_dim
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.shape[1] != d or len(codes) < 2:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"codes must be a tensor [n, {d}] of this model's codes (n >= 2), got {shape}; "
                         "get them with vaelib.evaluation.encode_mean(model, images)")
    if not torch.isfinite(codes).all():
        raise ValueError("codes contain NaN or infinite values")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or len(labels) != len(codes):
        raise ValueError(f"labels must be one class index per code: expected {len(codes)}, got shape "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must be class indices between 0 and 255")
    n_classes = int(labels.max()) + 1
    names = [str(c) for c in range(n_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) < n_classes:
        raise ValueError(f"class_names has {len(names)} names but the labels go up to {n_classes - 1}")
    if (walk_images is None) != (walk_labels is None):
        raise ValueError("pass walk_images and walk_labels together (or neither)")
    if walk_images is not None:
        if walk_images.dim() != 4 or tuple(walk_images.shape[1:]) != model.config.image_shape or len(walk_images) < 2:
            raise ValueError(f"walk_images must be at least 2 images [n, {', '.join(map(str, model.config.image_shape))}], "
                             f"got {tuple(walk_images.shape)}")
        if len(torch.as_tensor(walk_labels)) != len(walk_images):
            raise ValueError(f"walk_labels must have one label per walk image ({len(walk_images)})")
    return labels.long(), names


class LiveFigure:
    """A live figure: ``text/html`` for the book (a ``div.vae-live``), ``image/png`` as the fallback.

    Attributes: ``payload`` (what the page's script reads), ``png`` (the static image), ``max_error``
    (the largest pixel difference between the page's decoder and PyTorch's on the codes
    ``checked_codes: [n_checked, latent]``, spread over what the figure shows) and ``weight_chars``
    (the weights' size in the page)."""

    def __init__(self, payload: dict, png: bytes, description: str, alt: str, max_error: float,
                 checked_codes: torch.Tensor) -> None:
        self.payload, self.png, self.description, self.alt = payload, png, description, alt
        self.max_error, self.checked_codes = max_error, checked_codes
        self.n_checked = len(checked_codes)
        self.weight_chars = weight_chars(payload["decoder"])

    @property
    def html(self) -> str:
        p = self.payload
        d, wide = p["latent_dim"], p["latent_dim"] > 2
        data = json.dumps(p, separators=(",", ":"))
        data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        e = html.escape
        axis = (f'<div class="vae-live-axes">across: {e(p["axis_names"][0])}, '
                f'up: {e(p["axis_names"][1])}</div>')
        if wide:
            def menu(which, chosen):
                options = "".join(f'<option value="{i}"{" selected" if i == chosen else ""}>{e(name)}</option>'
                                  for i, name in enumerate(p["axis_names"]))
                return f'<select class="vae-live-axis" data-axis="{which}">{options}</select>'
            axis = (f'<div class="vae-live-axes"><label>across {menu(0, p["plane"][0])}</label>'
                    f'<label>up {menu(1, p["plane"][1])}</label></div>')
        buttons = []
        if p["prior"]:
            buttons.append('<button type="button" class="vae-live-prior">Sample from the prior</button>')
        if wide:
            buttons.append(f'<button type="button" class="vae-live-flatten">Zero the other {d - 2} '
                           'directions</button>')
        walk = ""
        if p["walk"]:
            names = p["walk"]["names"]
            def pick(cls, chosen):
                options = "".join(f'<option value="{i}"{" selected" if i == chosen else ""}>{e(n)}</option>'
                                  for i, n in enumerate(names))
                return f'<select class="{cls}">{options}</select>'
            a, b = p["walk"]["pair"]
            walk = ('<div class="vae-live-walk">'
                    f'<label>walk from {pick("vae-live-walk-a", a)}</label>'
                    '<canvas class="vae-live-thumb" data-end="a" width="28" height="28" role="img" '
                    'aria-label="The test image the walk starts from"></canvas>'
                    '<input type="range" class="vae-live-t" min="0" max="1" step="0.01" value="0" '
                    'aria-label="Position on the walk, from the first test image (0) to the second (1)">'
                    '<canvas class="vae-live-thumb" data-end="b" width="28" height="28" role="img" '
                    'aria-label="The test image the walk ends at"></canvas>'
                    f'<label>to {pick("vae-live-walk-b", b)}</label></div>')
        legend = "".join(f'<li><span class="vae-live-swatch" style="background:{TAB10[k % 10]}"></span>'
                         f'{e(name)}</li>' for k, name in enumerate(p["class_names"]))
        if p["circle"]:
            legend += ('<li><span class="vae-live-swatch vae-live-swatch-circle"></span>'
                       '99% of N(0, I) draws fall inside the dashed circle</li>')
        pad_label = ("The latent plane, with the training codes as coloured dots. Click, drag, or use the "
                     "arrow keys to move the code; the image decoded from it is shown next to the plane.")
        return (
            '<div class="vae-live">'
            '<div class="vae-live-fallback">'
            f'<img src="data:image/png;base64,{base64.b64encode(self.png).decode("ascii")}" alt="{e(self.alt)}">'
            '<p class="vae-live-note">Static view: a grid of codes over the plane and the images decoded from '
            'them. In the HTML book this figure runs the decoder live.</p></div>'
            '<div class="vae-live-body" hidden>'
            '<div class="vae-live-main"><div class="vae-live-padbox">'
            f'<canvas class="vae-live-pad" tabindex="0" role="application" aria-roledescription="2-D pad" '
            f'aria-label="{e(pad_label)}"></canvas>{axis}</div>'
            '<div class="vae-live-side">'
            '<canvas class="vae-live-out" width="28" height="28" role="img" '
            'aria-label="The image decoded from the current code"></canvas></div></div>'
            '<p class="vae-live-readout" aria-live="polite"></p>'
            f'<div class="vae-live-buttons">{"".join(buttons)}</div>{walk}'
            f'<ul class="vae-live-legend">{legend}</ul>'
            '<p class="vae-live-help">Click or drag in the plane, or select it with Tab and use the arrow '
            'keys (with Shift for bigger steps).</p></div>'
            f'<p class="vae-live-desc">{e(self.description)}</p>'
            f'<script type="application/json" class="vae-live-data">{data}</script>'
            '</div>')

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self.html,
                "image/png": base64.b64encode(self.png).decode("ascii"),
                "text/plain": f"<LiveFigure: {self.payload['latent_dim']}-D decoder, "
                              f"{self.weight_chars:,} characters of weights>"}


@torch.no_grad()
def figure(model: Model, codes: torch.Tensor, labels: torch.Tensor, class_names=None, *,
           prior: bool = False, circle: float | None = None, walk_images: torch.Tensor | None = None,
           walk_labels: torch.Tensor | None = None, walk_pair: tuple[int, int] = (0, 1),
           description: str = "", alt: str = "", fallback=None, max_points: int = 2000,
           seed: int = 0) -> LiveFigure:
    """A live figure of ``model``'s decoder over the plane of its codes (introduced in chapter 2).

    ``codes: [n, latent]`` (e.g. the training codes, :func:`vaelib.evaluation.encode_mean`) are drawn as
    dots coloured by ``labels: [n]``, named by ``class_names``. A 2-D model's pad is its latent plane;
    a wider model's pad is a plane through the origin spanned by two of the codes' top principal
    directions (the reader picks which), and the readout gives the code's length. ``prior`` adds a
    "Sample from the prior" button; ``circle`` draws a dashed circle of that radius around 0;
    ``walk_images``/``walk_labels`` (test images) add a walk between two of them, starting with the pair
    ``walk_pair``. ``fallback`` (a matplotlib figure or PNG bytes) replaces the default static image,
    described by ``alt``."""
    layers = _decoder_layers(model)
    labels, names = _check_inputs(model, codes, labels, class_names, walk_images, walk_labels)
    if not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    if circle is not None and not (isinstance(circle, (int, float)) and math.isfinite(circle) and circle > 0):
        raise ValueError(f"circle must be a positive radius, got {circle!r}")
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ValueError("the model holds NaN or infinite weights, so its decoder draws nothing; retrain it")
    model = model.eval()
    device = next(model.parameters()).device
    d = model.config.latent_dim
    codes = codes.detach().cpu().float()
    plane = _plane(codes, circle)

    decoder = export_decoder(model, _domain(plane, codes, 3000, seed))
    chars = weight_chars(decoder)
    if chars > MAX_WEIGHT_CHARS:
        raise ValueError(f"the decoder's weights take {chars:,} characters in the page, more than "
                         f"{MAX_WEIGHT_CHARS:,}; live figures suit decoders of about 0.4 M weights "
                         f"(this one has {sum(l.weight.numel() for l in layers):,})")
    check = _domain(plane, codes, 2000, seed + 1)   # fresh codes, not the ones the rounding saw
    reference = torch.sigmoid(model.decode(check.to(device))).cpu().flatten(1).double().numpy()
    max_error = float(np.abs(decode_exported(decoder, check.numpy()) - reference).max())
    if not max_error <= MAX_PIXEL_ERROR:  # so that a NaN fails the check too
        raise ValueError(f"the page's 8-bit decoder differs from PyTorch's by up to {max_error:.3f} per pixel, "
                         f"more than {MAX_PIXEL_ERROR}; this decoder does not survive 8-bit rounding")

    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(codes), generator=gen)[:max_points]
    points = codes[keep] @ plane.basis.T
    point_labels = labels[keep].numpy().astype(np.uint8)

    walk = None
    start = codes[keep[0]]
    if walk_images is not None:
        a, b = walk_pair
        if not (0 <= a < len(walk_images) and 0 <= b < len(walk_images)):
            raise ValueError(f"walk_pair {walk_pair} must index the {len(walk_images)} walk images")
        walk_codes = encode_mean(model, walk_images).float()
        walk_names = [names[int(k)] for k in torch.as_tensor(walk_labels)]
        walk_names = [f"{n} ({walk_names[:i].count(n) + 1})" if walk_names.count(n) > 1 else n
                      for i, n in enumerate(walk_names)]
        pixels = (walk_images.detach().cpu().float().clamp(0, 1).flatten(1) * 255).round().numpy()
        walk = {"codes": _b64(walk_codes.numpy(), "<f4"), "images": _b64(pixels, "u1"),
                "names": walk_names, "pair": [int(a), int(b)]}
        start = walk_codes[a]

    if d > 2:
        check_codes = torch.stack([torch.zeros(d), torch.randn(d, generator=gen), start])
    else:
        corner = torch.tensor(plane.centre) + plane.half * torch.tensor([0.9, -0.9])
        check_codes = torch.stack([start, corner, plane.codes(plane.uniform(1, gen))[0]])
    check_probs = torch.sigmoid(model.decode(check_codes.to(device))).cpu().flatten(1)

    payload = {
        "version": 1,
        "latent_dim": d,
        "image_shape": list(model.config.image_shape[1:]),
        "decoder": decoder,
        "basis": _b64(plane.basis.numpy(), "<f4"),
        "n_directions": len(plane.basis),
        "axis_names": plane.axis_names,
        "plane": [0, 1],
        "centre": list(plane.centre),
        "half": plane.half,
        "points": _b64(points.numpy(), "<f4"),
        "point_labels": _b64(point_labels, "u1"),
        "class_names": names,
        "colors": TAB10,
        "circle": float(circle) if circle else None,
        "prior": bool(prior),
        # 95% of N(0, I) draws have a length in this range: the readout compares the code with it
        "norm_range": [prior_radius(d, 0.025), prior_radius(d, 0.975)],
        "start": start.tolist(),
        "walk": walk,
        "check": {"codes": check_codes.tolist(), "probs": _b64(check_probs.numpy(), "<f4")},
        "max_error": max_error,
    }
    png = _png_bytes(fallback) if fallback is not None else \
        _static_png(model, plane, points[:, :2].numpy(), point_labels, names, circle)
    alt = alt or (f"Static view of the live figure: the training codes on the {plane.axis_names[0]}, "
                  f"{plane.axis_names[1]} plane, coloured by class, and the images decoded at a grid of "
                  "points over it.")
    return LiveFigure(payload, png, description, alt, max_error, check)
