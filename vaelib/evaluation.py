"""Evaluation on held-out data (chapters 5 and 7).

All values are means **per example, in nats**. ``elbo <= iw_loglik <= log p(x)``: the importance-
weighted estimate with K samples (the IWAE bound of Burda et al.) tightens as K grows.
"""

from __future__ import annotations

import math

import torch

from vaelib.losses import (bernoulli_nll, check_images, gaussian_kl, log_normal,
                           log_standard_normal)
from vaelib.models import VAE, Model


def _device(model: Model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_mean(model: Model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The code of each image: ``mu`` for a VAE, ``z`` for an autoencoder. ``[N, latent]`` on the CPU."""
    model.eval()
    dev, out = _device(model), []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        out.append((model.encode(x)[0] if isinstance(model, VAE) else model.encode(x)).cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_distribution(model: VAE, images: torch.Tensor,
                        batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu, logvar: [N, latent]`` of q(z | x) for every image, on the CPU."""
    model.eval()
    dev, mus, logvars = _device(model), [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(images[i:i + batch_size].to(dev))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def iw_log_likelihood(model: VAE, x: torch.Tensor, k: int = 100,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) with ``k`` samples: ``[batch]`` nats.

    log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x). With k = 1 its expectation is the
    ELBO; it grows with k towards log p(x).
    """
    if k <= 0:
        raise ValueError(f"the number of importance samples must be positive, got {k}")
    mu, logvar = model.encode(x)
    chunk = max(1, 20_000 // max(1, len(x)))
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        eps = torch.randn((n, *mu.shape), generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps                            # [n, batch, latent]
        logits = model.decode(z.reshape(-1, z.shape[-1]))
        log_px_z = -bernoulli_nll(logits, x.repeat(n, *([1] * (x.dim() - 1))), validate=False)
        log_w.append(log_px_z.view(n, -1) + log_standard_normal(z) - log_normal(z, mu, logvar))
    return torch.logsumexp(torch.cat(log_w), 0) - math.log(k)


@torch.no_grad()
def active_units(model: VAE, images: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Active units (Burda et al. 2015): dimension u is active if Cov_x(E_q[z_u]) > ``threshold``.

    Returns ``(count, variance_per_dim)``. A dimension whose posterior mean ignores the input has
    collapsed to the prior and carries no information.
    """
    mu, _ = encode_distribution(model, images)
    var = mu.var(0)
    return int((var > threshold).sum()), var


@torch.no_grad()
def evaluate(model: Model, images: torch.Tensor, *, iw_samples: int = 0, batch_size: int = 500,
             seed: int = 0) -> dict[str, float]:
    """Per-example test metrics in nats.

    For a VAE: ``elbo`` (negative), ``recon`` and ``kl`` (non-negative, ``-elbo = recon + kl``),
    ``iw_loglik`` when ``iw_samples > 0``, ``active_units`` and ``latent_dim``. For an autoencoder:
    ``recon`` (its reconstruction NLL from the code) and ``latent_dim``.
    """
    check_images(images, "images")
    model.eval()
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    sums = {"recon": 0.0, "kl": 0.0, "iw_loglik": 0.0}
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        if isinstance(model, VAE):
            mu, logvar = model.encode(x)
            eps = torch.randn(mu.shape, generator=gen).to(dev)
            logits = model.decode(mu + torch.exp(0.5 * logvar) * eps)
            sums["recon"] += bernoulli_nll(logits, x, validate=False).sum().item()
            sums["kl"] += gaussian_kl(mu, logvar).sum().item()
            if iw_samples > 0:
                sums["iw_loglik"] += iw_log_likelihood(model, x, iw_samples, gen).sum().item()
        else:
            sums["recon"] += bernoulli_nll(model(x), x, validate=False).sum().item()
    n = len(images)
    result = {"recon": sums["recon"] / n, "latent_dim": model.config.latent_dim, "n": n}
    if isinstance(model, VAE):
        result["kl"] = sums["kl"] / n
        result["elbo"] = -(result["recon"] + result["kl"])
        if iw_samples > 0:
            result["iw_loglik"] = sums["iw_loglik"] / n
            result["iw_samples"] = iw_samples
        result["active_units"] = active_units(model, images)[0]
    return result


def bits_per_dim(nats_per_example: float, n_dims: int = 784) -> float:
    """Convert a per-example log-likelihood in nats to bits per dimension (positive = cost)."""
    return -nats_per_example / (n_dims * math.log(2))
