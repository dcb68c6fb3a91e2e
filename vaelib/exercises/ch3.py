"""Chapter 3's exercises: the reparameterization trick, and splitting the encoder's output into mu and sigma."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vaelib.exercises.checking import _call, _close, _exercise, _first_match, _fmt, _gen, _tensor, _Wrong
from vaelib.losses import reparameterize


def _reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return reparameterize(mu, logvar)


@_exercise("ch3_reparameterize", "reparameterize", _reparameterize)
def _check_reparameterize(fn):
    n = 20_000
    mu_row, sigma_row = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 3.0])
    mu = mu_row.repeat(n, 1).requires_grad_()
    logvar = (2 * sigma_row.log()).repeat(n, 1).requires_grad_()
    z = _call(fn, mu, logvar, seed=3)
    values = _tensor(z, "reparameterize")
    if values.shape != (n, 3):
        raise _Wrong(f"z should have the shape of mu, [batch, latent] = [{n}, 3]; got {list(values.shape)}.")
    if not torch.isfinite(values).all():
        raise _Wrong("z contains inf or nan; sigma = exp(logvar / 2) is finite for these inputs.")
    m, s, lv = mu_row.double(), sigma_row.double(), 2 * sigma_row.double().log()
    if torch.equal(values, mu.detach().double()):
        raise _Wrong("z is exactly mu: the noise is missing. Draw eps = torch.randn_like(mu) and "
                     "return mu + sigma * eps.")
    om, os = values.mean(0), values.std(0)
    mean_ok = bool(((om - m).abs() < 6 * os / math.sqrt(n) + 1e-6).all())

    def spread_is(target):
        return bool(((os - target).abs() <= 0.03 * target + 1e-6).all())

    if mean_ok and spread_is(s):
        if not isinstance(z, torch.Tensor) or z.grad_fn is None:
            raise _Wrong("z has the right distribution, but no gradient flows from it back to mu and "
                         "logvar (.sample(), .detach(), .item() or torch.no_grad() cut the path). Build "
                         "z = mu + sigma * eps from the tensors you were given.")
        g_mu, g_lv = torch.autograd.grad(z.sum(), [mu, logvar], allow_unused=True)
        zd = z.detach()
        if g_mu is None or g_lv is None or not _close(g_mu, torch.ones_like(g_mu), 1e-3, 1e-3) \
                or not _close(g_lv, 0.5 * (zd - mu.detach()), 1e-3, 1e-3):
            raise _Wrong("z has the right distribution, but not the gradient of mu + exp(logvar / 2) * "
                         "eps: dz/dmu should be 1 and dz/dlogvar = (z - mu) / 2. A sampler such as "
                         "torch.normal(mu, sigma) does not pass these gradients; write the sum yourself, "
                         "with eps = torch.randn_like(mu).")
        return ("z = mu + exp(logvar / 2) * eps: right mean, right spread, and gradients flow to mu and "
                "logvar.")
    if bool((os < 1e-6).all()):
        raise _Wrong("z has no randomness: the noise eps is missing. Draw eps = torch.randn_like(mu) "
                     "and return mu + sigma * eps.")
    if mean_ok:
        spreads = [
            (s ** 2, "your sample has the right mean, but its spread is exp(logvar) instead of "
                     "exp(logvar / 2): exp(logvar) is the variance, and sigma is its square root."),
            (lv.abs(), "you multiplied the noise by logvar itself. It is the logarithm of the variance: "
                       "sigma = exp(logvar / 2)."),
            (torch.ones(3, dtype=torch.float64), "your spread is 1 in every dimension: multiply the "
                                                 "noise by sigma = exp(logvar / 2)."),
            (1 / s, "your spread is 1 / sigma: you divided by sigma, or used exp(-logvar / 2). "
                    "Multiply by sigma = exp(logvar / 2)."),
            (s ** 4, "your spread is exp(2 logvar); sigma = exp(logvar / 2)."),
        ]
        _first_match(os, spreads, rtol=0.03, atol=1e-6)  # what spread_is(target) tests
    elif spread_is(s / math.sqrt(12)) and bool(((om - (m + 0.5 * s)).abs() < 0.05 * s).all()):
        raise _Wrong("torch.rand_like draws uniform noise in [0, 1); the trick needs standard normal "
                     "noise, torch.randn_like.")
    elif spread_is(s):
        raise _Wrong(f"right spread, but your samples are centred at {_fmt(om)} instead of mu = "
                     f"{_fmt(m)}: add mu.")
    raise _Wrong(f"per dimension your samples have mean {_fmt(om)} and standard deviation {_fmt(os)}; "
                 f"for mu = {_fmt(m)} and logvar = {_fmt(lv)} they should have mean mu and standard "
                 f"deviation sigma = exp(logvar / 2) = {_fmt(s)}.")


def _split_encoder_output(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = h.chunk(2, dim=1)
    return mu, torch.exp(0.5 * logvar)


@_exercise("ch3_split", "split_encoder_output", _split_encoder_output)
def _check_split(fn):
    h = torch.randn(6, 8, generator=_gen(5))
    out = _call(fn, h.clone())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Wrong("return two tensors, mu and sigma: `return mu, sigma`.")
    mu, sigma = _tensor(out[0], "mu"), _tensor(out[1], "sigma")
    hd = h.double()
    first, second = hd[:, :4], hd[:, 4:]
    if mu.shape == (3, 8):
        raise _Wrong("you split along the batch (dim 0), giving half of the images to mu and half to "
                     "sigma. Split each row: h.chunk(2, dim=1).")
    if mu.shape != (6, 4) or sigma.shape != (6, 4):
        raise _Wrong(f"for h of shape [6, 8] (6 images, latent size 4), mu and sigma should each have "
                     f"shape [6, 4]; got {list(mu.shape)} and {list(sigma.shape)}.")
    if _close(mu, hd[:, ::2]) or _close(mu, hd[:, 1::2]):
        raise _Wrong("you took every other column. The encoder's first `latent` outputs are mu and the "
                     "last `latent` are the log-variance: h.chunk(2, dim=1).")
    if _close(mu, second) or _close(sigma, torch.exp(0.5 * first)):
        raise _Wrong("mu and the log-variance are swapped: the first half of each row is mu, the "
                     "second half the log-variance.")
    if not _close(mu, first):
        raise _Wrong("mu should be the first half of each row of h, h[:, :latent].")
    _first_match(sigma, [
        (torch.exp(second), "that is exp(logvar), the variance; sigma is its square root, "
                            "exp(logvar / 2)."),
        (second, "sigma is the log-variance itself: the encoder outputs log sigma^2, so "
                 "sigma = exp(logvar / 2)."),
        (0.5 * second, "that is log sigma; exponentiate it: sigma = exp(logvar / 2)."),
        (torch.exp(-0.5 * second), "that is 1 / sigma; sigma = exp(+logvar / 2)."),
        (F.softplus(second), "the book's encoder outputs the log-variance, so sigma = exp(logvar / 2), "
                             "not softplus."),
    ])
    if not _close(sigma, torch.exp(0.5 * second)):
        raise _Wrong("sigma should be exp(logvar / 2), with logvar the second half of each row of h.")
    return "mu is the first half of each row, and sigma = exp(logvar / 2) comes from the second half."

