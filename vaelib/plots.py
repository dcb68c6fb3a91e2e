"""Figures for the book. Every function returns a matplotlib ``Figure`` with a title and labelled axes.

Images are ``[N, 1, H, W]`` tensors with values in [0, 1] (pixel probabilities or data).
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from vaelib.models import VAE, Model

History = dict[str, list]


def _grid(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """Tile ``[N, 1, H, W]`` images into one 2-D array, ``nrow`` images per row."""
    images = images.detach().cpu().float()
    n, _, h, w = images.shape
    rows = math.ceil(n / nrow)
    out = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + c * (w + pad):pad + c * (w + pad) + w] = images[i, 0].numpy()
    return out


def _finish(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, title: str = "Images",
               ax: plt.Axes | None = None) -> Figure:
    """Show a batch of images as one grid."""
    if images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    nrow = min(nrow, len(images))
    grid = _grid(images, nrow)
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


def _project(codes: torch.Tensor) -> tuple[np.ndarray, tuple[str, str]]:
    codes = codes.detach().cpu().float()
    if codes.shape[1] == 1:
        return torch.cat([codes, torch.zeros_like(codes)], 1).numpy(), ("$z_1$", "(none)")
    if codes.shape[1] == 2:
        return codes.numpy(), ("$z_1$", "$z_2$")
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).numpy(), ("principal component 1", "principal component 2")


def latent_scatter(codes: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None,
                   title: str = "Codes of test images", ax: plt.Axes | None = None) -> Figure:
    """Scatter codes coloured by class; codes of more than 2 dimensions are projected by PCA."""
    xy, (xl, yl) = _project(codes)
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
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    return _finish(fig)


def gaussian_ellipses(mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, n: int = 60,
                      title: str = "Each input's Gaussian q(z | x): 2-sigma ellipses",
                      ax: plt.Axes | None = None) -> Figure:
    """Draw the 2-sigma ellipse of q(z | x) for ``n`` inputs of a 2-D latent space."""
    if mu.shape[1] != 2:
        raise ValueError(f"gaussian_ellipses needs a 2-D latent space, got {mu.shape[1]} dimensions")
    mu, sigma = mu[:n].cpu().numpy(), torch.exp(0.5 * logvar[:n]).cpu().numpy()
    colors = plt.get_cmap("tab10")(labels[:n].cpu().numpy() % 10)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    for m, s, c in zip(mu, sigma, colors):
        ax.add_patch(Ellipse(m, 4 * s[0], 4 * s[1], facecolor=c, alpha=0.25, edgecolor=c))
    ax.scatter(mu[:, 0], mu[:, 1], c=colors, s=8)
    pad = 2 * sigma.max(0) + 0.5
    ax.set_xlim(mu[:, 0].min() - pad[0], mu[:, 0].max() + pad[0])
    ax.set_ylim(mu[:, 1].min() - pad[1], mu[:, 1].max() + pad[1])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return _finish(fig)


@torch.no_grad()
def manifold(model: Model, n: int = 15, dims: tuple[int, int] = (0, 1),
             title: str = "Decoded latent grid (Gaussian quantiles)") -> Figure:
    """Decode an ``n x n`` grid of codes placed at the Gaussian quantiles 5%..95% of two dimensions
    (the others held at 0), so equal areas of the prior get equal space."""
    device = next(model.parameters()).device
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z = torch.zeros(n * n, model.config.latent_dim)
    z[:, dims[0]] = q.repeat(n)
    z[:, dims[1]] = q.flip(0).repeat_interleave(n)
    images = torch.sigmoid(model.decode(z.to(device))).cpu()
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(_grid(images, n, pad=0), cmap="gray_r", vmin=0, vmax=1)
    side = images.shape[-1]
    ticks = np.arange(n) * side + side / 2
    ax.set_xticks(ticks[::2])
    ax.set_xticklabels([f"{v:.1f}" for v in q[::2].tolist()])
    ax.set_yticks(ticks[::2])
    ax.set_yticklabels([f"{v:.1f}" for v in q.flip(0)[::2].tolist()])
    ax.set_xlabel(f"$z_{dims[0] + 1}$")
    ax.set_ylabel(f"$z_{dims[1] + 1}$")
    ax.set_title(title)
    return _finish(fig)


@torch.no_grad()
def interpolation(model: Model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10,
                  title: str = "Walking in latent space from one image to another") -> Figure:
    """Decode codes on the straight line between the codes of two images ``[1, C, H, W]`` each."""
    device = next(model.parameters()).device
    code = (lambda x: model.encode(x.to(device))[0]) if isinstance(model, VAE) else \
        (lambda x: model.encode(x.to(device)))
    za, zb = code(x_a), code(x_b)
    t = torch.linspace(0, 1, steps, device=device)[:, None]
    images = torch.sigmoid(model.decode((1 - t) * za + t * zb)).cpu()
    fig = image_grid(images, nrow=steps, title=title)
    ax = fig.axes[0]
    side = images.shape[-1] + 1
    ax.set_xticks(np.arange(steps) * side + side / 2)
    ax.set_xticklabels([f"{v:.1f}" for v in t.squeeze(1).tolist()])
    ax.set_xlabel("interpolation weight t (0 = first image, 1 = second)")
    return fig


def prior_samples(model: Model, n: int = 64, nrow: int = 8, generator: torch.Generator | None = None,
                  title: str = "Decoded codes drawn from N(0, I)") -> Figure:
    """Decode ``n`` codes drawn from the standard normal prior."""
    return image_grid(model.sample(n, generator=generator), nrow=nrow, title=title)


def training_curves(history: History, keys: Sequence[str] = ("recon", "kl"),
                    title: str = "Training curves") -> Figure:
    """One panel per history key, against epoch."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    labels = {"recon": "reconstruction NLL (nats)", "kl": "KL (nats)", "elbo": "ELBO (nats)",
              "loss": "loss (nats)", "mean_sigma": "mean sigma"}
    for ax, key in zip(axes[0], keys):
        values = history[key]
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels.get(key, key))
        ax.set_title(labels.get(key, key).split(" (")[0])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _finish(fig)


def sigma_histogram(sigmas: dict[str, torch.Tensor], bins: int = 60,
                    title: str = "Encoder standard deviations sigma") -> Figure:
    """Histogram of sigma values (log-scaled x axis), one series per named model."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    all_vals = torch.cat([s.flatten().cpu() for s in sigmas.values()]).clamp_min(1e-6)
    edges = np.logspace(np.log10(all_vals.min().item()), np.log10(max(all_vals.max().item(), 1.5)), bins)
    for name, s in sigmas.items():
        ax.hist(s.flatten().cpu().clamp_min(1e-6).numpy(), bins=edges, alpha=0.6, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("sigma (log scale)")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    return _finish(fig)
