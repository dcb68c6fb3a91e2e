"""Chapter 5's exercises: the KL term in closed form, and the beta-weighted loss."""

from __future__ import annotations

import torch

from vaelib.exercises.checking import _call, _close, _exercise, _first_match, _gen, _per_example, _tensor, _Wrong
from vaelib.losses import bernoulli_nll, gaussian_kl


def _kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return gaussian_kl(mu, logvar)


@_exercise("ch5_kl", "kl_to_standard_normal", _kl_to_standard_normal)
def _check_kl(fn):
    g = _gen(8)
    mu = 1.5 * torch.randn(5, 4, generator=g)
    logvar = -3 + 4.5 * torch.rand(5, 4, generator=g)
    var = torch.exp(logvar)
    terms = 0.5 * (mu.pow(2) + var - 1 - logvar)
    out = _per_example(_call(fn, mu.clone(), logvar.clone()), terms, "latent dimensions")
    ref = terms.sum(1)
    if not _close(out, ref):
        d = mu.shape[1]
        sigma = torch.exp(0.5 * logvar)
        _first_match(out, [
            (2 * ref, "your KL is twice too large: the closed form has a factor 1/2, "
                      "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
            (ref / d, "you averaged over the latent dimensions. The KL of independent dimensions adds "
                      "up: sum the per-dimension terms."),
            (-ref, "your KL is negative; a KL divergence is never below 0. Check the sign: "
                   "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
            (0.5 * (mu.pow(2) + sigma - 1 - logvar).sum(1),
             "you used sigma where the formula has the variance sigma^2 = exp(logvar)."),
            (0.5 * (mu.pow(2) + var - 1 - 0.5 * logvar).sum(1),
             "you used log sigma where the formula has log sigma^2, which is logvar itself."),
            (0.5 * (mu.pow(2) + var - logvar).sum(1),
             "the -1 is missing: without it a cloud equal to N(0, 1) would cost 1/2 nat per dimension "
             "instead of 0."),
            (0.5 * (var - 1 - logvar).sum(1), "the mu^2 term is missing: a cloud centred away from 0 "
                                              "must cost more."),
            (0.5 * (mu.pow(2) + var - 1 + logvar).sum(1), "the sign of the log sigma^2 term is wrong: "
                                                          "it is - logvar."),
            (0.5 * ((1 + mu.pow(2)) / var - 1 + logvar).sum(1),
             "that is KL(N(0, I) || q), the other direction. The VAE uses KL(q || N(0, I)) = "
             "0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g} nats, the KL is {ref[0]:.4g}: "
                     f"0.5 * (mu^2 + sigma^2 - 1 - log sigma^2), summed over the latent dimensions.")
    return "kl_to_standard_normal gives KL(q || N(0, I)) in nats per image."


def _beta_vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   beta: float) -> torch.Tensor:
    return bernoulli_nll(logits, x) + beta * _kl_to_standard_normal(mu, logvar)


@_exercise("ch5_beta_loss", "beta_vae_loss", _beta_vae_loss)
def _check_beta_loss(fn):
    g = _gen(9)
    logits = (2 * torch.randn(6, 1, 28, 28, generator=g)).clamp(-6, 6)
    x = torch.rand(6, 1, 28, 28, generator=g)
    mu, logvar = 2 * torch.randn(6, 3, generator=g), -2 + 2 * torch.rand(6, 3, generator=g)
    recon, kl = bernoulli_nll(logits, x), _kl_to_standard_normal(mu, logvar)
    for beta in (4.0, 0.25, 0.0):
        out = _tensor(_call(fn, logits.clone(), x.clone(), mu.clone(), logvar.clone(), beta))
        ref = recon + beta * kl
        if out.dim() == 0:
            raise _Wrong("you returned one number for the batch; return one loss per image, shape [6] "
                         "(training takes the mean later).")
        if out.shape != (6,):
            raise _Wrong(f"expected one loss per image, shape [6], got {list(out.shape)}.")
        if not _close(out, ref, 1e-4, 1e-3):
            _first_match(out, [
                (beta * recon + kl, "beta weights the KL term, not the reconstruction: recon + beta * kl."),
                (beta * (recon + kl), "you scaled the whole loss by beta; only the KL term is weighted: "
                                      "recon + beta * kl."),
                (recon + kl, "your loss ignores beta: with beta = 4 the KL term counts four times."),
                (recon - beta * kl, "the KL term is added, not subtracted: the loss to minimise is "
                                    "recon + beta * kl."),
                (-(recon + beta * kl), "that is the (beta-weighted) ELBO, which training maximises; the "
                                       "loss to minimise is its negative, recon + beta * kl."),
                (recon + kl / beta if beta else recon, "you divided the KL term by beta; multiply it: "
                                                       "recon + beta * kl."),
            ], 1e-4, 1e-3)
            raise _Wrong(f"with beta = {beta} you give {out[0]:.2f} nats for the first image, the loss is "
                         f"{ref[0]:.2f}: recon + beta * kl, with the Bernoulli NLL and the closed-form KL "
                         f"per image.")
    return "beta_vae_loss = recon + beta * kl, per image, for beta = 4, 0.25 and 0."

