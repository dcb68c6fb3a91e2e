"""Chapter 2's exercises: codes sampled from a fitted Gaussian, and the share of samples that land in gaps."""

from __future__ import annotations

import math

import torch

from vaelib.evaluation import nearest_code
from vaelib.exercises.checking import _call, _exercise, _first_match, _fmt, _gen, _number, _tensor, _Wrong


def _fitted_gaussian_codes(codes: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return codes.mean(0) + codes.std(0) * torch.randn(n, codes.shape[1], generator=generator)


@_exercise("ch2_fitted_gaussian", "fitted_gaussian_codes", _fitted_gaussian_codes)
def _check_fitted_gaussian(fn):
    g = _gen(3)
    centre, spread = torch.tensor([5.0, -3.0, 0.5]), torch.tensor([4.0, 0.5, 2.0])
    codes = centre + spread * math.sqrt(3) * (2 * torch.rand(3000, 3, generator=g) - 1)
    m, s = codes.mean(0).double(), codes.std(0).double()
    n = 20_000
    out = _tensor(_call(fn, codes.clone(), n, _gen(30), seed=1))
    if out.shape == (3, n):
        raise _Wrong(f"your codes have shape [3, {n}]: one row per code is expected, shape [n, d] = "
                     f"[{n}, 3] (draw torch.randn(n, d, ...), not (d, n)).")
    if out.shape != (n, 3):
        raise _Wrong(f"expected n = {n} codes of 3 numbers, shape [{n}, 3], got {list(out.shape)}.")
    om, os = out.mean(0), out.std(0)

    def near(a, b, rel=0.05):
        return bool(((a - b).abs() <= rel * b.abs() + 5 * os / math.sqrt(n) + 1e-6).all())

    mean_ok, std_ok = near(om, m), near(os, s)
    if mean_ok and std_ok:
        inside = (((out - m) / s).abs() < 1).double().mean().item()
        if abs(inside - 0.6827) > 0.03:
            raise _Wrong(f"right mean and spread, but {inside:.0%} of your codes lie within one standard "
                         f"deviation of the mean, where a Gaussian puts 68%: draw the noise with "
                         f"torch.randn (normal), not torch.rand (uniform).")
        again = _tensor(_call(fn, codes.clone(), n, _gen(30), seed=2))
        if not torch.equal(out, again):
            raise _Wrong("right distribution, but the same generator gave different codes: your "
                         "function ignores its generator. Pass generator=generator to torch.randn so "
                         "that a seeded generator gives the same codes every time.")
        return ("your codes have the mean and the standard deviation of the training codes in every "
                "dimension, and are Gaussian.")
    if bool((os < 1e-6).all()):
        raise _Wrong("all your codes are the same: there is no noise. Draw it with "
                     "torch.randn(n, d, generator=generator).")
    if near(om, torch.zeros(3), 0) and near(os, torch.ones(3)):
        raise _Wrong("your codes come from N(0, I), not from a fitted Gaussian: shift them by "
                     "codes.mean(0) and scale them by codes.std(0).")
    global_m, global_s = codes.mean().double().expand(3), codes.std().double().expand(3)
    checks = [
        (near(om, global_m, 0) and near(os, global_s),
         "codes.mean() averages all the numbers together, and codes.std() too; fit each dimension: "
         "codes.mean(0) and codes.std(0)."),
        (mean_ok and near(os, s ** 2), "your spread is the variance of the codes; scale the noise by "
                                       "their standard deviation, codes.std(0)."),
        (mean_ok and near(os, torch.ones(3)), "right centre, but a spread of 1 in every dimension: "
                                              "multiply the noise by codes.std(0)."),
        (mean_ok and near(os, global_s),
         "codes.std() is one spread for all the numbers together; fit each dimension with codes.std(0)."),
        (std_ok and near(om, torch.zeros(3), 0), "right spread, but centred at 0: add codes.mean(0)."),
        (std_ok and near(om, global_m, 0),
         "codes.mean() averages all the numbers together; fit each dimension with codes.mean(0)."),
        (near(om, m + 0.5 * s) and near(os, s / math.sqrt(12)),
         "torch.rand draws uniform numbers in [0, 1); a Gaussian needs torch.randn."),
    ]
    for matched, message in checks:
        if matched:
            raise _Wrong(message)
    raise _Wrong(f"per dimension, your codes have mean {_fmt(om)} and standard deviation {_fmt(os)}; "
                 f"the training codes have mean {_fmt(m)} and standard deviation {_fmt(s)}.")


def _nearest(queries: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return nearest_code(queries, reference).distance


def _share_in_gaps(samples: torch.Tensor, train_codes: torch.Tensor, test_codes: torch.Tensor,
               quantile: float = 0.99) -> float:
    threshold = _nearest(test_codes, train_codes).quantile(quantile)
    return (_nearest(samples, train_codes) > threshold).float().mean().item()


@_exercise("ch2_gap_share", "share_in_gaps", _share_in_gaps)
def _check_share_in_gaps(fn):
    g = _gen(4)
    centres = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [2.0, -4.0]])

    def cloud(n):
        return centres[torch.randint(3, (n,), generator=g)] + 0.6 * torch.randn(n, 2, generator=g)

    train, test = cloud(2000), cloud(500)
    low, high = train.min(0).values, train.max(0).values
    samples = low + (high - low) * torch.rand(2000, 2, generator=g)
    args = samples.clone(), train.clone(), test.clone()
    out = _number(_call(fn, *args, 0.99), "share_in_gaps")
    ref = _share_in_gaps(samples, train, test, 0.99)
    tol = 2.5 / len(samples)
    if abs(out - ref) > tol:
        sample_d, test_d = _nearest(samples, train), _nearest(test, train)
        self_threshold = torch.cdist(train, train).min(1).values.quantile(0.99)
        mean_code = train.mean(0, keepdim=True)
        variants = [
            ((sample_d > self_threshold).float().mean(),
             "a training code's nearest training code is itself, at distance 0, so a threshold taken "
             "from the training codes' own distances is (almost) 0. Take the threshold from the test "
             "codes: their distances to the nearest training code."),
            ((sample_d > sample_d.quantile(0.99)).float().mean(),
             "you took the threshold from the samples' own distances, so about 1% of them lie beyond "
             "it whatever they are. The threshold must come from real codes: the test codes' "
             "distances to their nearest training code."),
            ((sample_d <= test_d.quantile(0.99)).float().mean(),
             "you counted the samples near the data; a gap is where the nearest training code is "
             "farther than the threshold (>)."),
            (torch.tensor(100 * ref), "return a share between 0 and 1, not a percentage."),
            ((sample_d > test_d.max()).float().mean(),
             "you took the largest test distance as the threshold; use the quantile you were given, "
             "test_distances.quantile(quantile)."),
            ((_nearest(samples, test) > test_d.quantile(0.99)).float().mean(),
             "measure each sample's distance to its nearest *training* code, as for the test codes."),
            ((torch.cdist(samples, mean_code)[:, 0] > torch.cdist(test, mean_code)[:, 0].quantile(0.99))
             .float().mean(),
             "you measured the distance to the mean code. A gap is far from the *nearest* training "
             "code: torch.cdist(samples, train_codes).min(1).values."),
        ]
        _first_match(out, variants, rtol=0, atol=tol)
        raise _Wrong(f"on the checker's data, {ref:.1%} of the samples are in gaps; you give {out:.4g}. "
                     f"A sample is in a gap when its nearest training code is farther away than the "
                     f"given quantile of the test codes' nearest-training-code distances.")
    out = _number(_call(fn, *args, 0.8), "share_in_gaps")
    ref = _share_in_gaps(samples, train, test, 0.8)
    if abs(out - ref) > tol:
        raise _Wrong("right for quantile=0.99, but not for quantile=0.8: use the quantile argument "
                     "rather than a fixed 0.99.")
    return (f"on three clusters of codes, {_share_in_gaps(samples, train, test):.0%} of uniform "
            f"bounding-box samples are in gaps, and share_in_gaps says so.")

