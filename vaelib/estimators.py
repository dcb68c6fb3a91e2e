"""Gradient estimators for objectives of the form E_{z ~ q}[f(z)] (chapter 6).

q is the diagonal Gaussian N(mu, diag(exp(logvar))). Each ``*_surrogate`` function returns a scalar
whose gradient (by ``backward`` or ``torch.autograd.grad``) with respect to ``mu``, ``logvar`` or any
parameters upstream of them is an unbiased estimate of the gradient of E_q[f(z)]:

- :func:`reparam_surrogate`: z = mu + sigma * eps (:func:`vaelib.losses.reparameterize`), so the
  gradient flows through the sample;
- :func:`reinforce_surrogate`: the score-function (REINFORCE) estimator,
  E_q[(f(z) - b) * grad log q(z)], which needs no gradient of f at all, but is noisy.

:func:`gradient_moments` measures the mean and variance of any such estimator.
"""

from __future__ import annotations

from typing import Callable

import torch

from vaelib.losses import log_normal, reparameterize

Objective = Callable[[torch.Tensor], torch.Tensor]  # z: [n, batch, latent] -> f(z): [n, batch]


def reparam_surrogate(f: Objective, mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean of f over ``n_samples`` reparameterized samples, summed over the batch."""
    z = reparameterize(mu, logvar, generator=generator, n_samples=n_samples)
    return f(z).mean(0).sum()


def reinforce_surrogate(f: Objective, mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                        baseline: float | str | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Score-function surrogate: mean over samples of ``(f(z) - b) * log q(z)``, z held fixed.

    ``baseline`` is ``None`` (plain REINFORCE), a number, or ``"loo"``: for each sample, the mean of
    f over the *other* samples (needs ``n_samples >= 2``). Any baseline that does not depend on the
    sample itself leaves the estimator unbiased, because E_q[grad log q] = 0; a good one cuts variance.
    """
    z = reparameterize(mu, logvar, generator=generator, n_samples=n_samples).detach()
    with torch.no_grad():
        fz = f(z)
        if baseline == "loo":
            if n_samples < 2:
                raise ValueError("the leave-one-out baseline needs n_samples >= 2")
            b = (fz.sum(0, keepdim=True) - fz) / (n_samples - 1)
        elif baseline is None:
            b = 0.0
        elif isinstance(baseline, (int, float)):
            b = float(baseline)
        else:
            raise ValueError(f"baseline must be None, a number or 'loo', got {baseline!r}")
        weight = fz - b
    return (weight * log_normal(z, mu, logvar)).mean(0).sum()


def gradient_moments(surrogate: Callable[[], torch.Tensor], params: list[torch.Tensor],
                     n_repeats: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance, per coordinate, of the gradient estimate that ``surrogate()`` gives.

    ``surrogate`` is called ``n_repeats`` times, each time with fresh randomness; its gradient with
    respect to ``params`` is flattened into one vector. Returns ``(mean, var)``, each of length the
    total number of parameter entries; ``var`` uses the unbiased (n - 1) normaliser.
    """
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be at least 2 to measure a variance, got {n_repeats}")
    # Welford's running mean and sum of squared deviations, in float64: memory stays at two vectors
    # however many repeats, and no precision is lost to cancellation.
    mean = m2 = None
    for k in range(1, n_repeats + 1):
        g = torch.autograd.grad(surrogate(), params, allow_unused=True)
        flat = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                          for gi, p in zip(g, params)]).double()
        if mean is None:
            mean, m2 = torch.zeros_like(flat), torch.zeros_like(flat)
        delta = flat - mean
        mean += delta / k
        m2 += delta * (flat - mean)
    dtype = params[0].dtype
    return mean.to(dtype), (m2 / (n_repeats - 1)).to(dtype)
