"""Chapter 1's exercises: the reconstruction loss (``recon_nll``) and its floor (``nll_floor``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vaelib.exercises.checking import LN2, _call, _close, _exercise, _first_match, _gen, _per_example, _Wrong
from vaelib.losses import bernoulli_nll


def _recon_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bernoulli_nll(logits, x)


_PROBABILITIES_HINT = {
    "between 0 and 1": "F.binary_cross_entropy expects probabilities, but the decoder gives logits (any "
                       "real number). Use F.binary_cross_entropy_with_logits, which takes the logits directly.",
}


@_exercise("ch1_recon_nll", "recon_nll", _recon_nll)
def _check_recon_nll(fn):
    g = _gen(1)
    logits = (2 * torch.randn(6, 1, 28, 28, generator=g)).clamp(-6, 6)
    x = torch.rand(6, 1, 28, 28, generator=g)
    pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    out = _per_example(_call(fn, logits.clone(), x.clone(), hints=_PROBABILITIES_HINT), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if not _close(out, ref):
        p = torch.sigmoid(logits)
        _first_match(out, [
            (ref / 784, "you averaged over the 784 pixels. The NLL of an image is the sum of its "
                        "pixels' costs, in nats per image: sum over the pixels instead of taking the mean."),
            (ref / LN2, "your values are in bits (logarithm base 2). The book measures in nats, with "
                        "the natural logarithm: torch.log, or F.binary_cross_entropy_with_logits."),
            (-ref, "your values are negative: that is log p(x | z). The NLL is its negative, "
                   "-log p(x | z), which is never below 0."),
            (_recon_nll(p, x), "you passed probabilities, torch.sigmoid(logits), to a function that "
                               "expects logits: binary_cross_entropy_with_logits applies the sigmoid "
                               "itself, so pass the logits unchanged."),
            (-(x * F.logsigmoid(logits)).flatten(1).sum(1),
             "you only counted x log p. A pixel costs -[x log p + (1 - x) log(1 - p)]: add the "
             "(1 - x) log(1 - p) term, which scores the background."),
            (((p - x) ** 2).flatten(1).sum(1), "that is the squared error between sigmoid(logits) and x. "
                                               "The Bernoulli NLL is -[x log p + (1 - x) log(1 - p)], "
                                               "summed over the pixels."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.2f} nats; its Bernoulli NLL is "
                     f"{ref[0]:.2f}. A pixel costs -[x log p + (1 - x) log(1 - p)] with "
                     f"p = sigmoid(logit), summed over the image's 784 pixels.")
    # A confident decoder: logits of +-40, right on some pixels and wrong on others.
    logits[:, 0, 0, :10], x[:, 0, 0, :10] = 40.0, 1.0
    logits[:, 0, 1, :10], x[:, 0, 1, :10] = -40.0, 0.0
    logits[:, 0, 2, :5], x[:, 0, 2, :5] = 40.0, 0.0
    pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    out = _per_example(_call(fn, logits.clone(), x.clone(), hints=_PROBABILITIES_HINT), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if not torch.isfinite(out).all():
        raise _Wrong("right for ordinary logits, but infinite or nan when the decoder is confident (a "
                     "logit of 40): in float32, sigmoid(40) is exactly 1, so log(1 - p) = log 0. Work "
                     "from the logits: F.binary_cross_entropy_with_logits, or F.logsigmoid(logits) for "
                     "log p and F.logsigmoid(-logits) for log(1 - p).")
    if not _close(out, ref, rtol=1e-3, atol=1e-2):
        raise _Wrong(f"right for ordinary logits, but off for confident ones (a logit of 40): "
                     f"{out[0]:.2f} instead of {ref[0]:.2f} nats for the first image. Clamping p, adding a "
                     f"small number inside the log, or F.binary_cross_entropy on sigmoid(logits) (which "
                     f"clamps its logarithms at -100) distorts the cost of a confident mistake; compute "
                     f"from the logits with F.binary_cross_entropy_with_logits.")
    return "recon_nll gives the Bernoulli NLL in nats per image, also for confident logits."


def _nll_floor(x: torch.Tensor) -> torch.Tensor:
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).flatten(1).sum(1)


@_exercise("ch1_nll_floor", "nll_floor", _nll_floor)
def _check_nll_floor(fn):
    g = _gen(2)
    x = torch.rand(6, 1, 28, 28, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.5] = 0.0  # like the digits: mostly black background,
    x[torch.rand(x.shape, generator=g) < 0.1] = 1.0  # and some pure white ink
    pixel = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))
    out = _per_example(_call(fn, x.clone()), pixel, "pixels")
    ref = pixel.flatten(1).sum(1)
    if torch.isnan(out).any():
        raise _Wrong("your floor is nan: pixels that are exactly 0 or 1 give 0 * log 0, which PyTorch "
                     "computes as nan, but which counts as 0 (a pure black or white pixel can be "
                     "predicted at no cost). Use torch.xlogy(x, x), or clamp x away from 0 and 1.")
    if not _close(out, ref, rtol=1e-3, atol=1e-2):
        _first_match(out, [
            (ref / 784, "you averaged over the 784 pixels; the floor of an image's NLL is the sum of "
                        "its pixels' entropies."),
            (ref / LN2, "your values are in bits (logarithm base 2); use the natural logarithm, nats."),
            (-ref, "your values are negative. The binary entropy -[x log x + (1 - x) log(1 - x)] is "
                   "never below 0: check the sign."),
            (-torch.xlogy(x, x).flatten(1).sum(1),
             "you only counted x log x. The best prediction for a pixel is p = x, and its cost is the "
             "binary entropy -[x log x + (1 - x) log(1 - x)]: add the (1 - x) log(1 - x) term."),
        ], rtol=1e-3, atol=1e-2)
        raise _Wrong(f"for the first image you give {out[0]:.2f} nats, the floor is {ref[0]:.2f}. The "
                     f"best prediction for a pixel of value x is p = x, and it costs "
                     f"-[x log x + (1 - x) log(1 - x)] nats; sum that over the pixels.")
    return "nll_floor gives each image's binary entropy, the lowest Bernoulli NLL any model can reach."

