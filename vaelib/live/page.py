"""A live figure for the page: its payload (the exported decoder, the plane, the codes as dots), the checks
that the page's decoder draws what PyTorch's does, and the display bundle whose HTML comes from page.html."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib.resources import files
from string import Template

import numpy as np
import torch

from vaelib.evaluation import decode, encode_mean, prior_radius
from vaelib.live.decoder import b64, decode_exported, decoder_layers, export_decoder, weight_chars
from vaelib.live.drawing import TAB10, png_bytes, static_png
from vaelib.live.plane import fit_plane, shown_codes
from vaelib.models import Model

MAX_PIXEL_ERROR = 0.02       # largest allowed |p_page - p_pytorch| of any pixel
MAX_WEIGHT_CHARS = 600_000   # the decoder's weights, as base64 text in the page


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


def _parts(template: str) -> dict[str, Template]:
    """The parts of page.html by name, each on one line (the file's first comment says how it is laid out)."""
    chunks = re.split(r"^<!-- part: ([\w-]+) -->\n", template, flags=re.M)
    return {name: Template("".join(line.strip() for line in body.splitlines()))
            for name, body in zip(chunks[1::2], chunks[2::2])}


_PART = _parts(files("vaelib.live").joinpath("page.html").read_text(encoding="utf-8"))


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
        p, e = self.payload, html.escape
        d, wide = p["latent_dim"], p["latent_dim"] > 2
        data = json.dumps(p, separators=(",", ":"))
        data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

        def options(names: list[str], chosen: int) -> str:
            return "".join(_PART["option"].substitute(value=i, selected=" selected" if i == chosen else "",
                                                      name=e(name)) for i, name in enumerate(names))

        if wide:
            axes = _PART["axis-menus"].substitute(across=options(p["axis_names"], p["plane"][0]),
                                                  up=options(p["axis_names"], p["plane"][1]))
        else:
            axes = _PART["axes"].substitute(across=e(p["axis_names"][0]), up=e(p["axis_names"][1]))
        buttons = (_PART["prior"].substitute() if p["prior"] else "") + \
            (_PART["flatten"].substitute(n=d - 2) if wide else "")
        walk = ""
        if p["walk"]:
            names, (a, b) = p["walk"]["names"], p["walk"]["pair"]
            walk = _PART["walk"].substitute(start=options(names, a), end=options(names, b))
        legend = "".join(_PART["legend-item"].substitute(color=TAB10[k % 10], name=e(name))
                         for k, name in enumerate(p["class_names"]))
        if p["circle"]:
            legend += _PART["legend-circle"].substitute()
        return _PART["figure"].substitute(png=base64.b64encode(self.png).decode("ascii"), alt=e(self.alt),
                                          axes=axes, buttons=buttons, walk=walk, legend=legend,
                                          description=e(self.description), data=data)

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
    layers = decoder_layers(model)
    labels, names = _check_inputs(model, codes, labels, class_names, walk_images, walk_labels)
    if not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    if circle is not None and not (isinstance(circle, (int, float)) and math.isfinite(circle) and circle > 0):
        raise ValueError(f"circle must be a positive radius, got {circle!r}")
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ValueError("the model holds NaN or infinite weights, so its decoder draws nothing; retrain it")
    model = model.eval()
    d = model.config.latent_dim
    codes = codes.detach().cpu().float()
    plane = fit_plane(codes, circle)

    decoder = export_decoder(model, shown_codes(plane, codes, 3000, seed))
    chars = weight_chars(decoder)
    if chars > MAX_WEIGHT_CHARS:
        raise ValueError(f"the decoder's weights take {chars:,} characters in the page, more than "
                         f"{MAX_WEIGHT_CHARS:,}; live figures suit decoders of about 0.4 M weights "
                         f"(this one has {sum(l.weight.numel() for l in layers):,})")
    check = shown_codes(plane, codes, 2000, seed + 1)   # fresh codes, not the ones the rounding saw
    reference = decode(model, check).flatten(1).double().numpy()
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
        walk = {"codes": b64(walk_codes.numpy(), "<f4"), "images": b64(pixels, "u1"),
                "names": walk_names, "pair": [int(a), int(b)]}
        start = walk_codes[a]

    if d > 2:
        check_codes = torch.stack([torch.zeros(d), torch.randn(d, generator=gen), start])
    else:
        corner = torch.tensor(plane.centre) + plane.half * torch.tensor([0.9, -0.9])
        check_codes = torch.stack([start, corner, plane.codes(plane.uniform(1, gen))[0]])
    check_probs = decode(model, check_codes).flatten(1)

    payload = {
        "version": 1,
        "latent_dim": d,
        "image_shape": list(model.config.image_shape[1:]),
        "decoder": decoder,
        "basis": b64(plane.basis.numpy(), "<f4"),
        "n_directions": len(plane.basis),
        "axis_names": plane.axis_names,
        "plane": [0, 1],
        "centre": list(plane.centre),
        "half": plane.half,
        "points": b64(points.numpy(), "<f4"),
        "point_labels": b64(point_labels, "u1"),
        "class_names": names,
        "colors": TAB10,
        "circle": float(circle) if circle else None,
        "prior": bool(prior),
        # 95% of N(0, I) draws have a length in this range: the readout compares the code with it
        "norm_range": [prior_radius(d, 0.025), prior_radius(d, 0.975)],
        "start": start.tolist(),
        "walk": walk,
        "check": {"codes": check_codes.tolist(), "probs": b64(check_probs.numpy(), "<f4")},
        "max_error": max_error,
    }
    png = png_bytes(fallback) if fallback is not None else \
        static_png(model, plane, points[:, :2].numpy(), point_labels, names, circle)
    alt = alt or (f"Static view of the live figure: the training codes on the {plane.axis_names[0]}, "
                  f"{plane.axis_names[1]} plane, coloured by class, and the images decoded at a grid of "
                  "points over it.")
    return LiveFigure(payload, png, description, alt, max_error, check)
