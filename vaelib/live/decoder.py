"""The decoder, exported for the page: small layers as float32, larger ones as int8 with one scale per row,
rounded with error feedback (GPTQ), and the page's own arithmetic in NumPy to measure what it shows."""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import nn

from vaelib.models import Model

FLOAT_LAYER_MAX = 16_384     # layers with at most this many weights stay float32


def b64(array: np.ndarray, dtype: str) -> str:
    """``array`` as ``dtype`` bytes (``"<f4"``: little-endian float32, as the page reads them), in base64."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def decoder_layers(model: Model) -> list[nn.Linear]:
    """The decoder's linear layers, in order, of a model whose decoder the page can run (else an error)."""
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
    layers = decoder_layers(model)
    x = calibration.detach().cpu().float()
    if x.dim() != 2 or x.shape[1] != model.config.latent_dim:
        raise ValueError(f"expected calibration codes [n, {model.config.latent_dim}], got {tuple(x.shape)}")
    out = []
    for i, layer in enumerate(layers):
        w, b = layer.weight.detach().cpu().float(), layer.bias.detach().cpu().float()
        entry = {"rows": w.shape[0], "cols": w.shape[1], "bias": b64(b.numpy(), "<f4")}
        if w.numel() <= FLOAT_LAYER_MAX:
            entry.update(dtype="float32", weight=b64(w.numpy(), "<f4"))
        else:
            q, scale = quantize_rows(w, x)
            entry.update(dtype="int8", weight=b64(q, "i1"), scale=b64(scale, "<f4"))
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

