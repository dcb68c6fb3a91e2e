"""Chapter 7's exercises: the importance-weighted bound, and bits per dimension."""

from __future__ import annotations

import math

import torch

from vaelib.evaluation import bits_per_dim
from vaelib.exercises.checking import LN2, _call, _close, _exercise, _first_match, _gen, _number, _tensor, _Wrong


def _iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@_exercise("ch7_iw_bound", "iw_bound", _iw_bound)
def _check_iw_bound(fn):
    g = _gen(12)
    k, batch = 50, 8
    noise = torch.randn(k, batch, generator=g)
    log_w = -3 + 1.5 * noise
    out = _tensor(_call(fn, log_w.clone()))
    if out.shape == (k,):
        raise _Wrong(f"you reduced over the images (dim 1); average the K = {k} importance weights of "
                     f"each image, over dim 0, to get one value per image.")
    if out.shape != (batch,):
        raise _Wrong(f"for log-weights of shape [K, batch] = [{k}, {batch}] return one value per image, "
                     f"shape [{batch}]; got {list(out.shape)}.")
    ref = _iw_bound(log_w)
    if not _close(out, ref, 1e-4, 1e-4):
        lse = torch.logsumexp(log_w, 0)
        _first_match(out, [
            (lse, f"that is the log of the sum of the weights; L_K uses their average: subtract "
                  f"log K = log {k}."),
            (log_w.mean(0), "you averaged the log-weights: that is the ELBO estimate, which Jensen's "
                            "inequality puts below L_K. Average the weights themselves, in log space: "
                            "torch.logsumexp(log_w, 0) - log K."),
            (log_w.max(0).values, "the largest log-weight alone is not the average of the weights: "
                                  "torch.logsumexp(log_w, 0) - log K."),
            (log_w.max(0).values - math.log(k), "the largest weight alone is not the sum of the weights: "
                                                "torch.logsumexp(log_w, 0) - log K."),
        ])
        raise _Wrong(f"for the first image you give {out[0]:.4g}, L_K is {ref[0]:.4g}: the log of the "
                     f"average of the K weights exp(log_w).")
    # Realistic log-weights: an image's log p(x, z) is hundreds of nats below 0.
    log_w = -800 + 3 * noise
    out = _tensor(_call(fn, log_w.clone()))
    if not torch.isfinite(out).all():
        raise _Wrong("right formula, but -inf (or nan) for realistic log-weights of about -800 nats: "
                     "exp(-800) underflows to 0, even in float64. Use torch.logsumexp(log_w, 0) - "
                     "math.log(K), which factors out the largest weight before exponentiating.")
    if not _close(out, _iw_bound(log_w), 1e-5, 1e-3):
        raise _Wrong("right for small log-weights, but off for realistic ones (about -800 nats); use "
                     "torch.logsumexp(log_w, 0) - math.log(K).")
    return "iw_bound averages the importance weights in log space, without underflow."


def _to_bits_per_dim(loglik: float, n_dims: int) -> float:
    return bits_per_dim(loglik, n_dims)


@_exercise("ch7_bits_per_dim", "to_bits_per_dim", _to_bits_per_dim)
def _check_bits_per_dim(fn):
    for loglik, n_dims in ((-100.0, 784), (-6000.0, 3072)):
        out = _number(_call(fn, loglik, n_dims), "to_bits_per_dim")
        ref = _to_bits_per_dim(loglik, n_dims)
        if math.isclose(out, ref, rel_tol=1e-6):
            continue
        variants = [
            (-ref, "bits per dimension is a cost: a log-likelihood of -100 nats gives a positive "
                   "number, -loglik / (n_dims ln 2)."),
            (ref * LN2, "that is nats per dimension; divide by ln 2 to turn nats into bits."),
            (ref * LN2 * LN2, "you multiplied by ln 2; a nat is 1 / ln 2 bits, so divide by ln 2."),
            (ref * n_dims, "that is bits per image; divide by the number of dimensions, n_dims."),
            (ref * LN2 / math.log(10), "that is in base-10 digits; bits use ln 2: -loglik / (n_dims ln 2)."),
            (_to_bits_per_dim(loglik, 784), "use the n_dims argument rather than 784: the unit exists "
                                            "to compare images of different sizes."),
        ]
        _first_match(out, variants, rtol=1e-6, atol=0)
        raise _Wrong(f"for a log-likelihood of {loglik:g} nats on {n_dims} dimensions you give {out:.4g}, "
                     f"the answer is {ref:.4g} bits per dimension: -loglik / (n_dims ln 2).")
    return "-100 nats on a 28 x 28 image is 0.184 bits per dimension, and your function agrees."
