"""Chapter 4's exercises: how narrow the clouds are (``mean_sigma``, ``noise_to_spread``)."""

from __future__ import annotations

import torch

from vaelib.exercises.checking import _call, _close, _exercise, _first_match, _gen, _per_example, _tensor, _Wrong


def _mean_sigma(logvar: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * logvar).mean(1)


@_exercise("ch4_mean_sigma", "mean_sigma", _mean_sigma)
def _check_mean_sigma(fn):
    logvar = -6 + 7 * torch.rand(5, 6, generator=_gen(6))
    sigma = torch.exp(0.5 * logvar)
    out = _per_example(_call(fn, logvar.clone()), sigma, "latent dimensions", reduce="mean")
    ref = sigma.mean(1)
    if not _close(out, ref):
        _first_match(out, [
            (torch.exp(logvar).mean(1), "you averaged exp(logvar), the variances; sigma is the square "
                                        "root of the variance, exp(logvar / 2)."),
            (torch.exp(0.5 * logvar.mean(1)),
             "you averaged the log-variances first and then exponentiated: that is the geometric mean "
             "of the sigmas, smaller than their mean whenever they differ. Turn each logvar into sigma "
             "first, then average."),
            (torch.exp(logvar).mean(1).sqrt(),
             "that is the square root of the mean variance. Average the sigmas themselves: "
             "exp(logvar / 2).mean(1)."),
            (logvar.mean(1), "you averaged logvar; turn it into sigma = exp(logvar / 2) first."),
            (sigma.sum(1), "you summed over the latent dimensions; the mean sigma averages them."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g}; its mean sigma is {ref[0]:.4g}. "
                     f"sigma = exp(logvar / 2), averaged over the latent dimensions.")
    return "mean_sigma averages sigma = exp(logvar / 2) over each image's latent dimensions."


def _noise_to_spread(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * logvar).median(0).values / mu.std(0)


_MEDIAN_HINT = {
    "return_types": "tensor.median(0) returns a pair (values, indices); use tensor.median(0).values.",
}


@_exercise("ch4_noise_to_spread", "noise_to_spread", _noise_to_spread)
def _check_noise_to_spread(fn):
    g = _gen(7)
    mu = torch.randn(400, 5, generator=g) * torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]) + 3.0
    logvar = 2 * (torch.tensor([-3.0, -2.0, -1.5, -1.0, 0.0]) + torch.randn(400, 5, generator=g))
    out = _tensor(_call(fn, mu.clone(), logvar.clone(), hints=_MEDIAN_HINT))
    if out.shape != (5,):
        if out.shape == (400,):
            raise _Wrong("you returned one value per image; the ratio is per latent dimension: take the "
                         "median and the standard deviation over the images (dim 0).")
        raise _Wrong(f"expected one ratio per latent dimension, shape [5], got {list(out.shape)}.")
    sigma = torch.exp(0.5 * logvar)
    ref = sigma.median(0).values / mu.std(0)
    if not _close(out, ref, rtol=3e-3):
        _first_match(out, [
            (sigma.mean(0) / mu.std(0), "you used the mean sigma; the exercise asks for the median, "
                                        "which a few wide clouds cannot pull up: sigma.median(0).values."),
            (torch.exp(logvar).median(0).values / mu.std(0),
             "you used exp(logvar), the variance; sigma = exp(logvar / 2)."),
            (sigma.median(0).values / mu.var(0), "you divided by the variance of the centres; divide by "
                                                 "their standard deviation, mu.std(0)."),
            (sigma.median() / mu.std(0), "sigma.median() without a dimension is the median of all the "
                                         "numbers together; take it per dimension: sigma.median(0).values."),
            (mu.std(0) / sigma.median(0).values, "your ratio is upside down: the median sigma divided "
                                                 "by the spread of the centres."),
            (sigma.median(0).values / mu.mean(0).abs(), "divide by the spread of the centres, "
                                                        "mu.std(0), not by their mean."),
        ], rtol=3e-3)
        raise _Wrong(f"for the first dimension you give {out[0]:.4g}, the ratio is {ref[0]:.4g}: the "
                     f"median over images of sigma = exp(logvar / 2), divided by the standard deviation "
                     f"of mu over the images.")
    return "noise_to_spread gives each dimension's median sigma divided by the spread of its centres."

