"""The terms of the VAE objective, as pure functions on tensors.

Every function returns one value **per example, in nats** (natural-log units). Signs:

- ``recon_nll`` = -log p(x | z) >= 0, the reconstruction cost (introduced in chapter 1);
- ``kl`` = KL(q(z | x) || N(0, I)) >= 0 (chapter 5);
- ``elbo`` = -recon_nll - kl <= log p(x), the evidence lower bound, so usually negative (chapter 5).

Shapes: images ``x: [batch, 1, 28, 28]`` (any trailing shape), decoder ``logits`` of the same shape,
``mu, logvar: [batch, latent]``. The maths is derived in the appendix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vaelib.errors import ConfigError

LOG_2PI = math.log(2 * math.pi)


def _check_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    if mu.dim() != 2:
        raise ValueError(f"mu and logvar must be [batch, latent], got shape {tuple(mu.shape)}")


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is a floating batch of pixel values in [0, 1]: the values a
    Bernoulli likelihood is defined on (grey levels as its usual continuous relaxation)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}; "
                         "try x.float() / 255")
    if x.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must hold values in [0, 1] for a Bernoulli likelihood, got "
                         f"[{x.min().item():.3g}, {x.max().item():.3g}]; rescale it, e.g. x / 255")


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """-log p(x | z) under independent Bernoullis with the given logits. Returns ``[batch]`` nats.

    Computed with ``binary_cross_entropy_with_logits``, which is stable for any logit. Grey-level
    ``x`` in [0, 1] is allowed (the usual continuous relaxation). ``validate=False`` skips the range
    check, for a training loop whose data was checked once up front.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape, got {tuple(logits.shape)} "
                         f"and {tuple(x.shape)}")
    if validate:
        check_images(x)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) for each latent dimension: ``[batch, latent]``.

    Closed form 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2). ``expm1`` keeps the small-logvar case
    accurate, where ``exp(logvar) - 1`` would cancel.
    """
    _check_gaussian(mu, logvar)
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, I)) in closed form, summed over latent dimensions: ``[batch]`` nats, >= 0."""
    return gaussian_kl_per_dim(mu, logvar).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, n_samples: int | None = None) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``: a sample of q that passes gradients to
    ``mu`` and ``logvar`` (the reparameterization trick, chapter 6).

    ``n_samples`` draws that many at once: ``[n_samples, *mu.shape]``; a given ``eps`` may carry such
    leading sample dimensions too. A ``generator`` on another device than ``mu`` (a CPU one for a model
    on the GPU) is allowed.
    """
    if eps is None:
        if n_samples is not None and (not isinstance(n_samples, int) or n_samples <= 0):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
        device = generator.device if generator is not None else mu.device
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=device).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Single-sample estimates log q(z|x) - log p(z), z ~ q: ``[n_samples, batch]``.

    Their mean over dim 0 is an unbiased estimate of :func:`gaussian_kl`; their spread gives its
    standard error. This works for any q and p, which is why the VAE paper introduces it first.
    """
    _check_gaussian(mu, logvar)
    z = reparameterize(mu, logvar, generator=generator, n_samples=n_samples)
    return log_normal(z, mu, logvar) - log_standard_normal(z)


class ELBOTerms(NamedTuple):
    """The terms of the objective for each example, in nats: ``[batch]`` each, ``kl_per_dim``
    ``[batch, latent]``.

    ``loss = recon + beta * kl`` is what training minimises; ``elbo = -(recon + kl)`` is the bound on
    log p(x) whatever ``beta`` is. ``sigma`` is the encoder's mean standard deviation, a diagnostic
    (chapter 4). A point code (the autoencoder) is the case ``kl = 0``, ``sigma = 0``.
    """

    loss: torch.Tensor
    elbo: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor
    sigma: torch.Tensor


def check_beta(beta: float) -> None:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ConfigError(f"beta must be a finite number >= 0, got {beta!r}")


def objective(recon: torch.Tensor, kl_per_dim: torch.Tensor, sigma: torch.Tensor,
              beta: float = 1.0) -> ELBOTerms:
    """The one place the objective is put together from its parts: ``recon [batch]``,
    ``kl_per_dim [batch, latent]`` and ``sigma [batch]``."""
    check_beta(beta)
    kl = kl_per_dim.sum(1)
    return ELBOTerms(loss=recon + beta * kl, elbo=-(recon + kl), recon=recon, kl=kl,
                     kl_per_dim=kl_per_dim, sigma=sigma)


def elbo_terms(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
               beta: float = 1.0, validate: bool = True) -> ELBOTerms:
    """The ELBO and its parts for a Gaussian encoder. ``beta = 0`` is the "no KL" model of
    chapter 4; ``beta = 1`` the VAE."""
    return objective(bernoulli_nll(logits, x, validate=validate), gaussian_kl_per_dim(mu, logvar),
                     torch.exp(0.5 * logvar).mean(1), beta)
