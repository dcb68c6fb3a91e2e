"""Chapter 6's exercises: the score-function and the reparameterization gradient estimators."""

from __future__ import annotations

import math
from typing import Callable

import torch

from vaelib.exercises.checking import _call, _close, _exercise, _first_match, _gen, _number, _tensor, _Wrong


def _score_function_gradient(f: Callable, mu: torch.Tensor, sigma: torch.Tensor,
                             eps: torch.Tensor) -> torch.Tensor:
    z = mu + sigma * eps
    return (f(z) * (z - mu) / sigma**2).mean()


_TOY = [  # f, its derivative, the exact d/dmu and d/dsigma of E[f(z)] for z ~ N(mu, sigma^2)
    ("z ** 2", lambda z: z**2, lambda z: 2 * z,
     lambda m, s: (2 * m, 2 * s)),
    ("torch.sin(z)", torch.sin, torch.cos,
     lambda m, s: (math.cos(m) * math.exp(-s**2 / 2), -s * math.sin(m) * math.exp(-s**2 / 2))),
]
_MU, _SIGMA, _N_DRAWS = 1.5, 0.5, 100_000


_NO_GRAPH_HINT = {
    "does not require grad": "no gradient reached mu or sigma: build z = mu + sigma * eps from the tensors "
                             "you were given, and differentiate the mean of f(z) with torch.autograd.grad(..., "
                             "[mu, sigma]) (.sample(), .detach(), .item() or torch.no_grad() cut the path).",
    "not have been used in the graph": "one of mu and sigma was not used to compute f(z): z must depend on "
                                       "both, z = mu + sigma * eps.",
}

_NO_AUTOGRAD_HINT = {
    "does not require grad": "the score-function estimator needs no autograd: it only evaluates f(z). "
                             "Average f(z) * (z - mu) / sigma**2 over the draws.",
}


@_exercise("ch6_score_function", "score_function_gradient", _score_function_gradient)
def _check_score_function(fn):
    eps = torch.randn(_N_DRAWS, generator=_gen(10), dtype=torch.float64)
    mu, sigma = torch.tensor(_MU, dtype=torch.float64), torch.tensor(_SIGMA, dtype=torch.float64)
    z = mu + sigma * eps
    estimates = []
    for label, f, df, exact in _TOY:
        out = _number(_call(fn, f, mu.clone(), sigma.clone(), eps.clone(), hints=_NO_AUTOGRAD_HINT),
                      "score_function_gradient")
        terms = f(z) * (z - mu) / sigma**2
        ref, se = terms.mean().item(), terms.std().item() / math.sqrt(_N_DRAWS)
        if abs(out - ref) <= 1e-6 * (1 + abs(ref)):
            estimates.append(out)
            continue
        _first_match(torch.tensor(out), [
            ((f(z) * eps).mean(), "you weighted f(z) by eps = (z - mu) / sigma. The score of mu is "
                                  "d log q / d mu = (z - mu) / sigma^2 = eps / sigma: divide by sigma "
                                  "once more."),
            ((f(z) * (z - mu)).mean(), "you weighted f(z) by (z - mu); the score of mu is "
                                       "(z - mu) / sigma^2."),
            (df(z).mean(), "that is the reparameterization estimate: it differentiates f. The "
                           "score-function estimator only evaluates f, and weights f(z) by the score "
                           "(z - mu) / sigma^2."),
            (((z - mu) / sigma**2).mean(), "you averaged the score alone, whose mean is 0; weight each "
                                           "draw's f(z) by its score: f(z) * (z - mu) / sigma^2."),
            (f(z).mean(), "that estimates E[f(z)] itself, not its gradient: weight each f(z) by the "
                          "score (z - mu) / sigma^2."),
            (-terms.mean(), "the sign is flipped: the estimate is the mean of +f(z) (z - mu) / sigma^2."),
            (terms.sum(), f"you summed over the {_N_DRAWS:,} draws; average them."),
        ], rtol=1e-6, atol=1e-9)
        if abs(out - exact(_MU, _SIGMA)[0]) > 4 * se:
            raise _Wrong(f"for f(z) = {label}, mu = {_MU} and sigma = {_SIGMA}, your estimate from "
                         f"{_N_DRAWS:,} draws is {out:.4g}, but the exact gradient is "
                         f"{exact(_MU, _SIGMA)[0]:.4g} (the estimator gives {ref:.4g} +- {se:.2g}). "
                         f"Average f(z) * (z - mu) / sigma^2 over the draws z = mu + sigma * eps.")
        estimates.append(out)
    return (f"on f(z) = z^2 with mu = {_MU}, sigma = {_SIGMA}, your estimate from {_N_DRAWS:,} draws "
            f"is {estimates[0]:.3f}; the exact gradient is 2 mu = {2 * _MU:g}.")


def _reparam_gradient(f: Callable, mu: torch.Tensor, sigma: torch.Tensor,
                      eps: torch.Tensor) -> torch.Tensor:
    z = mu + sigma * eps
    return torch.stack(torch.autograd.grad(f(z).mean(), [mu, sigma]))


@_exercise("ch6_reparam_gradient", "reparam_gradient", _reparam_gradient)
def _check_reparam_gradient(fn):
    eps = torch.randn(_N_DRAWS, generator=_gen(11), dtype=torch.float64)
    toys = [("(z - 3) ** 2", lambda z: (z - 3) ** 2, lambda z: 2 * (z - 3),
             lambda m, s: (2 * (m - 3), 2 * s))] + _TOY[1:]
    results = []
    for label, f, df, exact in toys:
        mu = torch.tensor(_MU, dtype=torch.float64, requires_grad=True)
        sigma = torch.tensor(_SIGMA, dtype=torch.float64, requires_grad=True)
        out = _call(fn, f, mu, sigma, eps.clone(), hints=_NO_GRAPH_HINT)
        if isinstance(out, (tuple, list)) and len(out) == 2:
            out = torch.stack([torch.as_tensor(o, dtype=torch.float64).reshape(()) for o in out])
        out = _tensor(out, "reparam_gradient").reshape(-1)
        if out.shape != (2,):
            raise _Wrong(f"return two numbers, the estimates of d/dmu and d/dsigma of E[f(z)]; got shape "
                         f"{list(out.shape)}.")
        z = _MU + _SIGMA * eps
        ref = torch.stack([df(z).mean(), (df(z) * eps).mean()])
        if _close(out, ref, 1e-6, 1e-9):
            results.append(out)
            continue
        _first_match(out, [
            (_N_DRAWS * ref, f"you summed f(z) over the {_N_DRAWS:,} draws; differentiate their mean, "
                             f"f(z).mean(), the Monte Carlo estimate of E[f(z)]."),
            (torch.stack([df(torch.tensor(_MU, dtype=torch.float64)), torch.tensor(0.0, dtype=torch.float64)]),
             "your gradient with respect to sigma is 0: you evaluated f at mu, without the noise. Use "
             "z = mu + sigma * eps."),
            (torch.stack([df(z).mean(), df(z).mean()]), "dz/dsigma is eps, so the gradient with respect "
                                                        "to sigma is the mean of f'(z) * eps."),
            (-ref, "the sign is flipped: return the gradient of E[f(z)] itself."),
        ], 1e-6, 1e-9)
        se = torch.stack([df(z).std(), (df(z) * eps).std()]) / math.sqrt(_N_DRAWS)
        target = torch.tensor(exact(_MU, _SIGMA), dtype=torch.float64)
        if ((out - target).abs() > 4 * se).any():
            raise _Wrong(f"for f(z) = {label}, mu = {_MU} and sigma = {_SIGMA}, you give "
                         f"({out[0]:.4g}, {out[1]:.4g}); the exact gradient is ({target[0]:.4g}, "
                         f"{target[1]:.4g}). Differentiate the mean of f(mu + sigma * eps) with respect "
                         f"to mu and sigma.")
        results.append(out)
    return (f"on f(z) = (z - 3)^2 with mu = {_MU}, sigma = {_SIGMA}, your estimate is "
            f"({results[0][0]:.3f}, {results[0][1]:.3f}); the exact gradient of "
            f"E[f(z)] = (mu - 3)^2 + sigma^2 is (2 (mu - 3), 2 sigma) = (-3, 1).")

