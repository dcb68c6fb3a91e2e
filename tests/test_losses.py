"""The terms of the objective (vaelib.losses) against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelib.losses import (
    bernoulli_nll,
    check_images,
    elbo_terms,
    gaussian_kl,
    gaussian_kl_per_dim,
    kl_monte_carlo,
    log_normal,
    log_standard_normal,
)
from vaelib.models import LOGVAR_RANGE

LV_LO, LV_HI = LOGVAR_RANGE
MU_MAX = 1e3


def _torch_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over dim 1, by torch.distributions."""
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).sum(1)


def _kl_reference(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """The closed form in float64 NumPy, with log1p/expm1 so it is accurate near logvar = 0."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * (mu ** 2 + np.expm1(logvar) - logvar).sum(-1)


def _gaussians(dtype, min_magnitude: float = 0.0):
    """(mu, logvar) tensors [batch, latent] with extreme-but-valid values."""
    width = 32 if dtype == torch.float32 else 64

    def element(lo, hi):
        s = st.floats(lo, hi, width=width, allow_nan=False, allow_infinity=False)
        if min_magnitude:
            s = s.filter(lambda v: v == 0 or abs(v) >= min_magnitude)
        return s | st.sampled_from([0.0, lo, hi])

    @st.composite
    def build(draw):
        b = draw(st.integers(1, 4))
        d = draw(st.integers(1, 6))
        mu = draw(st.lists(element(-MU_MAX, MU_MAX), min_size=b * d, max_size=b * d))
        lv = draw(st.lists(element(LV_LO, LV_HI), min_size=b * d, max_size=b * d))
        return (torch.tensor(mu, dtype=dtype).view(b, d), torch.tensor(lv, dtype=dtype).view(b, d))

    return build()


# --- Gaussian KL -------------------------------------------------------------------------------

def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 8, generator=g, dtype=torch.float64) * 3
    logvar = torch.empty(64, 8, dtype=torch.float64).uniform_(-6, 4, generator=g)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (64,)
    torch.testing.assert_close(kl, _torch_kl(mu, logvar), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_kl_matches_monte_carlo_within_three_standard_errors(seed):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    logvar = torch.empty(5, 3, dtype=torch.float64).uniform_(-2, 1.5, generator=g)
    samples = kl_monte_carlo(mu, logvar, n_samples=20_000, generator=g)
    assert samples.shape == (20_000, 5)
    est = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    exact = gaussian_kl(mu, logvar)
    assert torch.all((est - exact).abs() <= 3 * se), (est, exact, se)
    # The standard error is small enough for this to be a real check, not a trivially wide band.
    assert torch.all(se < 0.05 * exact.clamp_min(0.1))


def test_monte_carlo_kl_detects_a_wrong_closed_form():
    """Sanity check of the MC check itself: a KL off by a modest amount falls outside 3 SE."""
    g = torch.Generator().manual_seed(0)
    mu = torch.full((1, 2), 0.5, dtype=torch.float64)
    logvar = torch.full((1, 2), -0.5, dtype=torch.float64)
    samples = kl_monte_carlo(mu, logvar, n_samples=20_000, generator=g)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    wrong = 0.5 * (mu.pow(2) + logvar.exp() - 1 + logvar).sum(1)  # sign of log sigma^2 flipped
    assert torch.all((samples.mean(0) - wrong).abs() > 3 * se)


def test_gaussian_kl_per_dim_sums_to_total_and_matches_reference():
    mu = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.0, 1e-3]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 2.0], [LV_LO, LV_HI, 1e-7]], dtype=torch.float64)
    per_dim = gaussian_kl_per_dim(mu, logvar)
    assert per_dim.shape == (2, 3)
    m, v = mu.numpy(), logvar.numpy()
    np.testing.assert_allclose(per_dim.numpy(), 0.5 * (m ** 2 + np.expm1(v) - v))
    torch.testing.assert_close(per_dim.sum(1), gaussian_kl(mu, logvar))
    assert per_dim[0, 0] == 0


def test_gaussian_kl_is_accurate_for_tiny_logvar_in_float32():
    """0.5 * (exp(l) - 1 - l) cancels catastrophically in float32; expm1 must not."""
    logvar = torch.tensor([[1e-4, -1e-4, 3e-3]], dtype=torch.float32)
    mu = torch.zeros_like(logvar)
    got = gaussian_kl_per_dim(mu, logvar).double()
    ref = torch.from_numpy(0.5 * (np.expm1(logvar.double().numpy()) - logvar.double().numpy()))
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=0)


@given(_gaussians(torch.float64))
def test_gaussian_kl_matches_reference_and_torch_on_extreme_values(ml):
    mu, logvar = ml
    kl = gaussian_kl(mu, logvar)
    np.testing.assert_allclose(kl.numpy(), _kl_reference(mu.numpy(), logvar.numpy()), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(kl.numpy(), _torch_kl(mu, logvar).numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(data=st.data())
def test_kl_nonnegative_and_zero_only_at_standard_normal(dtype, data):
    # In float64, entries are either exactly 0 or big enough that their KL does not underflow.
    min_mag = 1e-4 if dtype == torch.float64 else 0.0
    mu, logvar = data.draw(_gaussians(dtype, min_magnitude=min_mag))
    per_dim = gaussian_kl_per_dim(mu, logvar)
    kl = gaussian_kl(mu, logvar)
    assert torch.isfinite(kl).all()
    assert (per_dim >= 0).all()
    assert (kl >= 0).all()
    at_prior = (mu == 0) & (logvar == 0)
    assert (per_dim[at_prior] == 0).all()
    if dtype == torch.float64:
        assert (per_dim[~at_prior] > 0).all()


def test_kl_is_zero_exactly_at_the_prior_and_positive_nearby():
    zero = torch.zeros(3, 5)
    assert torch.equal(gaussian_kl(zero, zero), torch.zeros(3))
    for mu, lv in [(1e-2, 0.0), (0.0, 1e-2), (0.0, -1e-2), (-1e-2, 1e-2)]:
        m = torch.full((1, 1), mu, dtype=torch.float64)
        v = torch.full((1, 1), lv, dtype=torch.float64)
        assert gaussian_kl(m, v).item() > 0


@given(_gaussians(torch.float32))
def test_losses_and_monte_carlo_stay_finite_for_extreme_valid_inputs(ml):
    mu, logvar = ml
    g = torch.Generator().manual_seed(0)
    mc = kl_monte_carlo(mu, logvar, n_samples=3, generator=g)
    assert mc.shape == (3, mu.shape[0])
    assert torch.isfinite(mc).all()
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    assert torch.isfinite(log_normal(z, mu, logvar)).all()
    assert torch.isfinite(log_standard_normal(z)).all()
    assert torch.isfinite(gaussian_kl(mu, logvar)).all()


def test_log_normal_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    z = torch.randn(7, 4, 3, generator=g, dtype=torch.float64)
    ref = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal(z, mu, logvar), ref)
    torch.testing.assert_close(log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_kl_monte_carlo_validates_arguments():
    mu = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="n_samples"):
        kl_monte_carlo(mu, mu, n_samples=0)
    with pytest.raises(ValueError, match="same shape"):
        kl_monte_carlo(mu, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[batch, latent\]"):
        gaussian_kl(torch.zeros(3), torch.zeros(3))


# --- Bernoulli likelihood ---------------------------------------------------------------------

def _bce_reference(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """-log p(x | logits) per example, in float64: x * softplus(-l) + (1 - x) * softplus(l)."""
    logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
    nll = x * np.logaddexp(0.0, -logits) + (1 - x) * np.logaddexp(0.0, logits)
    return nll.reshape(len(nll), -1).sum(1)


def test_bernoulli_nll_matches_torch_distributions_on_binary_images():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 1, 28, 28, generator=g, dtype=torch.float64) * 4
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3, dtype=torch.float64), generator=g)
    nll = bernoulli_nll(logits, x)
    assert nll.shape == (6,)
    ref = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(nll, ref)
    np.testing.assert_allclose(nll.numpy(), _bce_reference(logits.numpy(), x.numpy()), rtol=1e-10)
    assert (nll >= 0).all()


@given(st.lists(st.tuples(st.floats(-1e4, 1e4, width=32), st.floats(0, 1, width=32)),
                min_size=1, max_size=30))
def test_bernoulli_nll_matches_reference_for_grey_levels_and_huge_logits(pairs):
    logits = torch.tensor([[p[0] for p in pairs]], dtype=torch.float32)
    x = torch.tensor([[p[1] for p in pairs]], dtype=torch.float32)
    nll = bernoulli_nll(logits, x)
    assert torch.isfinite(nll).all()
    ref = _bce_reference(logits.numpy(), x.numpy())
    np.testing.assert_allclose(nll.numpy(), ref, rtol=1e-5, atol=1e-3)


def _entropy_floor(x: torch.Tensor) -> torch.Tensor:
    """The lowest Bernoulli NLL of each image of grey levels ``x``: the sum of its pixels' binary entropies."""
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).flatten(1).sum(1)


def _never_below_the_floor(nll_fn, dtype: torch.dtype) -> bool:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g, dtype=dtype)         # grey levels
    x[:8] = torch.round(x[:8] * 4) / 4                              # and some exact 0, 0.25, ..., 1
    logits = [torch.randn(64, 1, 28, 28, generator=g, dtype=dtype) * scale for scale in (0.1, 1.0, 5.0)]
    logits.append(torch.logit(x.clamp(0.01, 0.99)))                 # near the best prediction
    return all((nll_fn(lg, x) >= _entropy_floor(x) - 1e-4).all() for lg in logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_nll_never_falls_below_the_entropy_of_grey_images(dtype):
    """No prediction beats a grey pixel's binary entropy, and predicting the pixel's own value reaches it."""
    assert _never_below_the_floor(bernoulli_nll, dtype)
    x = torch.tensor([[0.3, 0.5, 0.9, 0.0, 1.0]], dtype=dtype)
    eps = 1e-12 if dtype == torch.float64 else 1e-6
    best = torch.logit(x.clamp(eps, 1 - eps))
    torch.testing.assert_close(bernoulli_nll(best, x), _entropy_floor(x), atol=1e-4, rtol=1e-5)
    # The test can fail: an NLL that drops the cost of the "off" outcome beats the floor on grey pixels.
    wrong = lambda logits, x: -(x * torch.nn.functional.logsigmoid(logits)).flatten(1).sum(1)
    assert not _never_below_the_floor(wrong, dtype)


def test_bernoulli_nll_is_stable_at_plus_minus_1e4():
    logits = torch.tensor([[1e4, -1e4, 1e4, -1e4]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    per_pixel = torch.stack([bernoulli_nll(logits[:, i:i + 1], x[:, i:i + 1]) for i in range(4)], 1)
    assert torch.isfinite(per_pixel).all()
    # Confident and right costs nothing; confident and wrong costs |logit| nats.
    torch.testing.assert_close(per_pixel, torch.tensor([[0.0, 0.0, 1e4, 1e4]]))
    logits.requires_grad_(True)
    bernoulli_nll(logits, x).sum().backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(logits.grad, torch.sigmoid(logits.detach()) - x)


def test_bernoulli_nll_rejects_mismatched_shapes_and_bad_images():
    logits = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="same shape"):
        bernoulli_nll(logits, torch.zeros(2, 784))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli_nll(logits, torch.full((2, 1, 28, 28), 255.0))
    # validate=False is the training loop's fast path: it skips the check, and computes the same value.
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bernoulli_nll(logits, x, validate=False), bernoulli_nll(logits, x))


# --- image validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (torch.full((2, 1, 4, 4), 1.5), r"\[0, 1\].*x / 255"),
    (torch.full((2, 1, 4, 4), -0.1), r"\[0, 1\]"),
    (torch.full((2, 1, 4, 4), 3, dtype=torch.uint8), "float tensor.*uint8"),
    (torch.full((2, 1, 4, 4), 0, dtype=torch.int64), "float tensor.*int64"),
    (torch.tensor([[0.5, float("nan")]]), "NaN"),
    (torch.tensor([[0.5, float("inf")]]), "NaN or infinite"),
    (torch.tensor([0.5, 0.5]), "batch dimension"),
    (np.zeros((2, 4), np.float32), "torch.Tensor"),
])
def test_check_images_rejects_bad_input_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        check_images(bad)


def test_check_images_accepts_valid_batches():
    check_images(torch.rand(3, 1, 28, 28))
    check_images(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    check_images(torch.zeros(0, 1, 28, 28))


# --- the ELBO ------------------------------------------------------------------------------------

def _elbo_case(seed=0, batch=5, latent=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, 1, 28, 28, generator=g, dtype=torch.float64) * 2
    x = torch.rand(batch, 1, 28, 28, generator=g, dtype=torch.float64)
    mu = torch.randn(batch, latent, generator=g, dtype=torch.float64)
    logvar = torch.randn(batch, latent, generator=g, dtype=torch.float64)
    return logits, x, mu, logvar


def test_elbo_terms_match_independent_recon_and_kl():
    logits, x, mu, logvar = _elbo_case()
    t = elbo_terms(logits, x, mu, logvar)
    recon = torch.from_numpy(_bce_reference(logits.numpy(), x.numpy()))
    kl = _torch_kl(mu, logvar)
    torch.testing.assert_close(t.recon, recon)
    torch.testing.assert_close(t.kl, kl)
    torch.testing.assert_close(-t.elbo, recon + kl)
    torch.testing.assert_close(t.loss, recon + kl)  # beta = 1: the loss is minus the ELBO
    assert (t.elbo < 0).all()


@pytest.mark.parametrize("beta", [0, 0.25, 1.0, 4])
def test_beta_weights_only_the_kl_in_the_loss(beta):
    logits, x, mu, logvar = _elbo_case(seed=1)
    t = elbo_terms(logits, x, mu, logvar, beta=beta)
    torch.testing.assert_close(t.loss, t.recon + beta * t.kl)
    # The ELBO itself does not depend on beta.
    torch.testing.assert_close(t.elbo, elbo_terms(logits, x, mu, logvar).elbo)
    if beta == 0:
        torch.testing.assert_close(t.loss, t.recon)


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf"), "1", None, torch.tensor(1.0)])
def test_bad_beta_raises_value_error(beta):
    logits, x, mu, logvar = _elbo_case()
    with pytest.raises(ValueError, match="beta"):
        elbo_terms(logits, x, mu, logvar, beta=beta)


def test_elbo_terms_validate_images():
    logits, x, mu, logvar = _elbo_case()
    with pytest.raises(ValueError, match="NaN"):
        elbo_terms(logits, torch.full_like(x, float("nan")), mu, logvar)
