"""Gradient estimators (vaelib.estimators) against exact gradients of E_q[f(z)].

For f(z) = sum(z^2) and q = N(mu, diag(exp(logvar))), E_q[f] = sum(mu^2 + exp(logvar)), so the exact
gradient is d/dmu = 2 mu and d/dlogvar = exp(logvar). Every estimator's mean must match it within a
few standard errors; seeded generators keep the checks deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Normal

from vaelib.estimators import gradient_moments, reinforce_surrogate, reparam_surrogate
from vaelib.losses import reparameterize
from vaelib.models import LOGVAR_RANGE


def f_square(z: torch.Tensor) -> torch.Tensor:
    return z.pow(2).sum(-1)


def _params():
    mu = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.0, -1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    return mu, logvar


def _exact_grad(mu, logvar):
    return torch.cat([2 * mu.detach().reshape(-1), logvar.detach().exp().reshape(-1)])


def _moments(estimator, n_repeats, seed=0, **kw):
    mu, logvar = _params()
    g = torch.Generator().manual_seed(seed)
    mean, var = gradient_moments(lambda: estimator(f_square, mu, logvar, generator=g, **kw),
                                 [mu, logvar], n_repeats=n_repeats)
    return mean, var, _exact_grad(mu, logvar)


def _within_se(mean, var, exact, n, k=4.0):
    se = (var / n).sqrt()
    return bool(torch.all((mean - exact).abs() <= k * se + 1e-12)), se


# --- rsample / reparameterize ---------------------------------------------------------------------

def test_rsample_passes_gradients_and_sample_does_not():
    mu = torch.tensor([0.3, -1.0], requires_grad=True)
    sigma = torch.tensor([0.5, 2.0], requires_grad=True)
    q = Normal(mu, sigma)
    z = q.rsample()
    assert z.requires_grad
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(2))
    # d z / d sigma = eps = (z - mu) / sigma
    torch.testing.assert_close(sigma.grad, ((z - mu) / sigma).detach())
    assert not q.sample().requires_grad


def test_reparameterize_passes_exact_gradients_to_mu_and_logvar():
    mu = torch.tensor([[0.5, -2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.0, 1.0, -3.0]], dtype=torch.float64, requires_grad=True)
    eps = torch.tensor([[1.5, -0.3, 2.0]], dtype=torch.float64)
    z = reparameterize(mu, logvar, eps)
    torch.testing.assert_close(z, (mu + torch.exp(0.5 * logvar) * eps).detach())
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, (0.5 * torch.exp(0.5 * logvar) * eps).detach())


def test_reparameterize_samples_have_the_right_mean_and_std():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(0.25)]], dtype=torch.float64)
    n = 40_000
    z = reparameterize(mu.expand(n, 2), logvar.expand(n, 2), generator=g)
    std = torch.exp(0.5 * logvar)[0]
    assert torch.all((z.mean(0) - mu[0]).abs() < 4 * std / math.sqrt(n))
    assert torch.all((z.std(0) / std - 1).abs() < 0.02)


def test_reparameterize_draws_n_samples_at_once_each_its_own():
    mu, logvar = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, math.log(4.0)]])
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0), n_samples=20_000)
    assert z.shape == (20_000, 1, 2)
    torch.testing.assert_close(z.std(0)[0], torch.tensor([1.0, 2.0]), rtol=0.03, atol=0)
    assert abs(torch.corrcoef(z[:, 0].T)[0, 1]) < 0.03  # the dimensions are drawn independently
    with pytest.raises(ValueError, match="positive integer"):
        reparameterize(mu, logvar, n_samples=0)


def test_reparameterize_accepts_leading_sample_dims():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    eps = torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(reparameterize(mu, logvar, eps), eps)


# --- reparameterization and REINFORCE against the exact gradient -----------------------------------

def test_reparam_gradient_is_unbiased():
    n = 2000
    mean, var, exact = _moments(reparam_surrogate, n, seed=0)
    ok, se = _within_se(mean, var, exact, n)
    assert ok, (mean, exact, se)
    assert torch.all(se < 0.1)  # the check is tight


def test_reinforce_gradient_mean_matches_exact_gradient():
    n = 4000
    mean, var, exact = _moments(reinforce_surrogate, n, seed=1, n_samples=4)
    ok, se = _within_se(mean, var, exact, n)
    assert ok, (mean, exact, se)
    # ... and the standard error is small enough that a wrong gradient (say, off by 20%) would fail.
    assert not _within_se(mean, var, exact * 1.2, n)[0]


def test_reinforce_has_more_variance_than_reparameterization():
    n = 1000
    _, var_rf, _ = _moments(reinforce_surrogate, n, seed=2)
    _, var_rp, _ = _moments(reparam_surrogate, n, seed=2)
    assert torch.all(var_rf > var_rp), (var_rf, var_rp)
    assert var_rf.sum() > 10 * var_rp.sum()


def test_loo_baseline_reduces_variance_and_stays_unbiased():
    n = 2000
    mean_b, var_b, exact = _moments(reinforce_surrogate, n, seed=3, n_samples=8, baseline="loo")
    _, var_0, _ = _moments(reinforce_surrogate, n, seed=3, n_samples=8)
    ok, se = _within_se(mean_b, var_b, exact, n)
    assert ok, (mean_b, exact, se)
    assert torch.all(var_b < var_0), (var_b, var_0)


def test_constant_baseline_stays_unbiased():
    n = 3000
    mean, var, exact = _moments(reinforce_surrogate, n, seed=4, n_samples=4, baseline=5.0)
    ok, se = _within_se(mean, var, exact, n)
    assert ok, (mean, exact, se)


def test_reinforce_needs_no_gradient_of_f():
    """The score-function estimator works for an f that autograd cannot differentiate."""
    mu, logvar = _params()
    g = torch.Generator().manual_seed(5)

    def f_step(z):  # E[sum 1{z > 0}] = sum Phi(mu / sigma)
        return (z > 0).to(z.dtype).sum(-1)

    n = 3000
    mean, var = gradient_moments(lambda: reinforce_surrogate(f_step, mu, logvar, n_samples=8,
                                                             baseline="loo", generator=g),
                                 [mu, logvar], n_repeats=n)
    # Exact: d/dmu Phi(mu/sigma) = phi(mu/sigma) / sigma;
    #        d/dlogvar Phi(mu/sigma) = -phi(mu/sigma) * mu / (2 sigma).
    m, s = mu.detach().reshape(-1), torch.exp(0.5 * logvar.detach()).reshape(-1)
    pdf = torch.exp(Normal(0.0, 1.0).log_prob(m / s))
    exact = torch.cat([pdf / s, -pdf * m / (2 * s)])
    ok, se = _within_se(mean, var, exact, n)
    assert ok, (mean, exact, se)


def test_estimators_validate_arguments():
    mu, logvar = _params()
    with pytest.raises(ValueError, match="n_samples >= 2"):
        reinforce_surrogate(f_square, mu, logvar, n_samples=1, baseline="loo")
    with pytest.raises(ValueError, match="baseline"):
        reinforce_surrogate(f_square, mu, logvar, baseline="mean")
    with pytest.raises(ValueError, match="n_samples"):
        reparam_surrogate(f_square, mu, logvar, n_samples=0)
    with pytest.raises(ValueError, match="n_repeats"):
        gradient_moments(lambda: reparam_surrogate(f_square, mu, logvar), [mu, logvar], n_repeats=1)


def test_gradient_moments_matches_a_direct_computation():
    mu, logvar = _params()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    mean, var = gradient_moments(lambda: reparam_surrogate(f_square, mu, logvar, generator=g1),
                                 [mu, logvar], n_repeats=50)
    grads = []
    for _ in range(50):
        eps = torch.randn((1, *mu.shape), generator=g2, dtype=mu.dtype)
        z = mu.detach() + torch.exp(0.5 * logvar.detach()) * eps[0]
        # d/dmu z^2 = 2z; d/dlogvar z^2 = 2 z * 0.5 * sigma * eps
        grads.append(torch.cat([2 * z.reshape(-1),
                                (z * torch.exp(0.5 * logvar.detach()) * eps[0]).reshape(-1)]))
    stack = torch.stack(grads)
    torch.testing.assert_close(mean, stack.mean(0))
    torch.testing.assert_close(var, stack.var(0))


# --- fuzz: extreme but valid inputs -------------------------------------------------------------

@given(mu=st.floats(-1e3, 1e3, width=32), logvar=st.floats(*LOGVAR_RANGE, width=32),
       baseline=st.sampled_from([None, "loo", 1.0]))
def test_estimators_stay_finite_for_extreme_valid_inputs(mu, logvar, baseline):
    m = torch.full((2, 3), mu, requires_grad=True)
    v = torch.full((2, 3), logvar, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    z = reparameterize(m, v, generator=g)
    assert torch.isfinite(z).all()
    for surrogate in (reparam_surrogate(f_square, m, v, n_samples=2, generator=g),
                      reinforce_surrogate(f_square, m, v, n_samples=2, baseline=baseline,
                                          generator=g)):
        assert torch.isfinite(surrogate)
        gm, gv = torch.autograd.grad(surrogate, [m, v])
        assert torch.isfinite(gm).all() and torch.isfinite(gv).all()
