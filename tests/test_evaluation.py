"""Evaluation (vaelib.evaluation): the IWAE bound, active units and the test metrics.

The ground truth for the likelihood bounds is numerical quadrature: for a VAE with a one-dimensional
latent space, log p(x) = log of the integral of p(x | z) N(z; 0, 1) dz, and the ELBO is an integral
against q(z | x), both of which a fine grid computes to many digits.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaelib.evaluation import (
    FrechetDistance,
    active_units,
    bits_per_dim,
    decode,
    encode_distribution,
    encode_mean,
    evaluate,
    frechet_distance,
    interpolation_codes,
    iw_log_likelihood,
    kl_decomposition,
    kl_split,
    knn_accuracy,
    log_aggregate_posterior,
    manifold_codes,
    nearest_code,
    prior_radius,
)
from vaelib.losses import bernoulli_nll, gaussian_kl, log_normal, log_standard_normal
from vaelib.models import ModelConfig, build_model
from vaelib.training import fit, seed_everything

GRID = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)


@pytest.fixture(scope="module")
def vae_1d(mnist, mnist_small):
    """A VAE with one latent dimension, briefly trained on real digits, in float64.

    Its encoder's sigma is then widened to 0.8, so that q(z | x) covers the whole true posterior and
    importance sampling converges quickly to log p(x)."""
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=1, hidden=(64,))
    fit(model, mnist_small, epochs=8, batch_size=64, lr=3e-3, progress=False, device="cpu")
    model = model.double().eval()
    last = [m for m in model.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight[1:] = 0
        last.bias[1:] = math.log(0.8 ** 2)
    x = mnist.test.images[:16].double()
    return model, x


@pytest.fixture(scope="module")
def quadrature(vae_1d):
    """Exact (to quadrature accuracy) log p(x) and ELBO per example."""
    model, x = vae_1d
    z = GRID[:, None]
    dz = GRID[1] - GRID[0]
    with torch.no_grad():
        logits = model.decode(z)
        mu, logvar = model.encode(x)
    log_px, elbo = [], []
    for i in range(len(x)):
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x[i:i + 1].expand_as(logits), reduction="none").flatten(1).sum(1)
        log_joint = log_px_z + log_standard_normal(z)
        log_px.append(torch.logsumexp(log_joint, 0) + torch.log(dz))
        log_q = log_normal(z, mu[i], logvar[i])
        elbo.append((log_q.exp() * (log_joint - log_q)).sum() * dz)
    return torch.stack(log_px), torch.stack(elbo)


def test_quadrature_is_sound(quadrature):
    log_px, elbo = quadrature
    assert torch.isfinite(log_px).all() and (log_px < 0).all()
    assert (elbo <= log_px).all()  # Jensen, on exact quantities


def test_iw_with_one_sample_is_an_unbiased_estimate_of_the_elbo(vae_1d, quadrature):
    model, x = vae_1d
    _, elbo = quadrature
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([iw_log_likelihood(model, x, k=1, generator=g) for _ in range(400)])
    assert draws.shape == (400, len(x))
    est, se = draws.mean(0), draws.std(0) / math.sqrt(400)
    assert torch.all((est - elbo).abs() <= 4 * se), (est - elbo) / se


def test_iw_bound_is_above_the_elbo_grows_with_k_and_reaches_log_px(vae_1d, quadrature):
    model, x = vae_1d
    log_px, elbo = quadrature
    g = torch.Generator().manual_seed(1)
    means = {}
    for k in (1, 10, 100, 1000):
        est = iw_log_likelihood(model, x, k=k, generator=g)
        assert est.shape == (len(x),) and torch.isfinite(est).all()
        means[k] = est.mean().item()
    # E[iw_k] grows with k; from 1 to 10 to 100 samples by far more than the noise of a batch mean.
    assert means[1] < means[10] < means[100], means
    assert means[10] > elbo.mean().item()
    # It never exceeds log p(x) in expectation, and with a proposal that covers the posterior, 100 and
    # 1000 samples get within a few hundredths of a nat of it (averaged over the batch).
    exact = log_px.mean().item()
    assert means[100] == pytest.approx(exact, abs=0.1)
    assert means[1000] == pytest.approx(exact, abs=0.05)
    assert exact - means[1] > 2  # ... while one sample is nats away: the bounds really differ


def test_iw_bound_on_a_random_vae_in_float32(mnist):
    """Also on an untrained float32 VAE with a larger latent space: more samples, a tighter bound."""
    seed_everything(3)
    model = build_model(kind="vae", latent_dim=4, hidden=(32,))
    x = mnist.test.images[:64]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        recon = torch.stack([bernoulli_nll(model.decode(mu + torch.exp(0.5 * logvar) * torch.randn(
            mu.shape, generator=g)), x) for _ in range(200)]).mean(0)
    elbo = -(recon + gaussian_kl(mu, logvar)).mean().item()
    iw_1 = torch.stack([iw_log_likelihood(model, x, k=1, generator=g) for _ in range(20)]).mean()
    assert iw_1.item() == pytest.approx(elbo, abs=1.0)
    iw = [iw_log_likelihood(model, x, k=k, generator=g).mean().item() for k in (16, 256)]
    assert elbo + 1 < iw[0] < iw[1]


def test_iw_log_likelihood_is_reproducible_with_a_generator(vae_1d):
    model, x = vae_1d
    a = iw_log_likelihood(model, x, k=50, generator=torch.Generator().manual_seed(5))
    b = iw_log_likelihood(model, x, k=50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_iw_log_likelihood_rejects_k_below_one(vae_1d):
    model, x = vae_1d
    with pytest.raises(ValueError, match="positive"):
        iw_log_likelihood(model, x, k=0)


# --- active units ---------------------------------------------------------------------------------

def _mu_layer(model):
    return [m for m in model.encoder.modules() if isinstance(m, nn.Linear)][-1]


def test_a_dimension_the_encoder_ignores_is_inactive(mnist):
    x = mnist.test.images[:300]
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=4, hidden=(32,))
    layer = _mu_layer(model)
    with torch.no_grad():
        layer.weight[:4] *= 20  # make every mean clearly depend on the input
    count, var = active_units(model, x)
    assert count == 4, var

    with torch.no_grad():
        layer.weight[2] = 0   # mu_2 no longer depends on x ...
        layer.bias[2] = 1.7   # ... whatever constant it sits at
    count, var = active_units(model, x)
    assert count == 3
    assert var[2] == 0
    with torch.no_grad():
        mu = model.encode(x)[0]
    torch.testing.assert_close(var, mu.var(0))
    assert count == int((mu.var(0) > 0.01).sum())
    assert active_units(model, x, threshold=float(var.max()) + 1)[0] == 0


def test_logvar_weights_do_not_count_towards_activity(mnist):
    """Activity is about the posterior mean: an input-dependent sigma alone is not an active unit."""
    x = mnist.test.images[:200]
    seed_everything(1)
    model = build_model(kind="vae", latent_dim=3, hidden=(32,))
    layer = _mu_layer(model)
    with torch.no_grad():
        layer.weight[:3] = 0
        layer.weight[3:] *= 50
    count, var = active_units(model, x)
    assert count == 0 and torch.equal(var, torch.zeros(3))


# --- encodings and metrics ----------------------------------------------------------------------

def test_encode_helpers_match_the_model_and_ignore_batching(mnist):
    x = mnist.test.images[:70]
    seed_everything(0)
    vae = build_model(kind="vae", latent_dim=3, hidden=(16,))
    ae = build_model(kind="ae", latent_dim=2, hidden=(16,))
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        z = ae.encode(x)
    m2, l2 = encode_distribution(vae, x, batch_size=16)
    torch.testing.assert_close(m2, mu)
    torch.testing.assert_close(l2, logvar)
    torch.testing.assert_close(encode_mean(vae, x, batch_size=9), mu)
    torch.testing.assert_close(encode_mean(ae, x, batch_size=9), z)


def test_evaluate_vae_metrics(mnist):
    x = mnist.test.images[:120]
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=3, hidden=(16,))
    r = evaluate(model, x, iw_samples=20, batch_size=50)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    assert r["n"] == 120 and r["latent_dim"] == 3 and r["iw_samples"] == 20
    assert r["kl"] == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
    assert r["elbo"] == pytest.approx(-(r["recon"] + r["kl"]))
    assert r["recon"] > 0 and r["kl"] >= 0
    assert r["iw_loglik"] > r["elbo"]
    assert r["active_units"] == active_units(model, x)[0]
    # The recon estimate is the mean of one-sample estimates: close to a many-sample one.
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        many = torch.stack([bernoulli_nll(model.decode(mu + torch.exp(0.5 * logvar) * torch.randn(
            mu.shape, generator=g)), x) for _ in range(50)]).mean()
    assert r["recon"] == pytest.approx(many.item(), rel=0.01)
    assert evaluate(model, x, seed=1)["kl"] == pytest.approx(r["kl"], rel=1e-5)
    assert "iw_loglik" not in evaluate(model, x)


def test_evaluate_autoencoder_metrics(mnist):
    x = mnist.test.images[:90]
    seed_everything(0)
    model = build_model(ModelConfig(kind="ae", latent_dim=2, hidden=(16,)))
    r = evaluate(model, x, batch_size=40)
    with torch.no_grad():
        expected = bernoulli_nll(model(x), x).mean().item()
    assert r["recon"] == pytest.approx(expected, rel=1e-5)
    assert r["latent_dim"] == 2 and r["kl"] == 0 and r["loss"] == r["recon"]
    assert "elbo" not in r and "active_units" not in r  # an autoencoder bounds no likelihood
    with pytest.raises(ValueError, match="no logvar"):
        encode_distribution(model, x)


def test_evaluate_measures_the_objective_fit_minimises(mnist):
    """``loss`` is recon + beta * kl for the beta asked, from the same terms as training."""
    x = mnist.test.images[:64]
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=3, hidden=(16,))
    r1, r4 = evaluate(model, x), evaluate(model, x, beta=4.0)
    assert r4["loss"] == pytest.approx(r4["recon"] + 4 * r4["kl"], rel=1e-6)
    assert r4["elbo"] == pytest.approx(r1["elbo"], rel=1e-6)  # the bound does not depend on beta
    with torch.no_grad():
        terms = model.loss_terms(x, 4.0, generator=torch.Generator().manual_seed(0))
    assert r4["loss"] == pytest.approx(terms.loss.mean().item(), rel=1e-5)


@pytest.mark.parametrize("bad, message", [
    (torch.full((4, 1, 28, 28), 255.0), r"\[0, 1\]"),
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), "float tensor"),
    (torch.full((4, 1, 28, 28), float("nan")), "NaN"),
])
def test_evaluate_rejects_bad_images(bad, message):
    model = build_model(kind="vae", latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=message):
        evaluate(model, bad)


def test_bits_per_dim():
    assert bits_per_dim(-784 * math.log(2)) == pytest.approx(1.0)
    assert bits_per_dim(-100.0, n_dims=100) == pytest.approx(1 / math.log(2))
    assert bits_per_dim(0.0) == 0


# --- Fréchet distance ------------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form_for_a_scaled_and_shifted_copy():
    # b = 2a + 1: the means differ by m_a + 1 and C_b = 4 C_a, so
    # FD = |m_a + 1|^2 + tr(C_a + 4 C_a - 2 * 2 C_a) = |m_a + 1|^2 + tr(C_a).
    a = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = 2 * a + 1
    expected = (a.mean(0) + 1).pow(2).sum().item() + torch.cov(a.T).trace().item()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = torch.randn(400, 5, generator=torch.Generator().manual_seed(1))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 0.5) == pytest.approx(5 * 0.25, rel=1e-4)


def test_frechet_distance_validates_its_inputs():
    with pytest.raises(ValueError, match="same k"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="same k"):
        frechet_distance(torch.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(10, 3))


def test_the_book_frechet_distance_is_rotation_invariant_with_every_component():
    """With all components kept, the PCA features are a rotation of the centred pixels, and the
    Fréchet distance does not change under a rotation: it must equal the distance on raw pixels."""
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(40, 1, 4, 4, generator=g)
    a, b = torch.rand(30, 1, 4, 4, generator=g), torch.rand(25, 1, 4, 4, generator=g) ** 2
    fd = FrechetDistance(reference, n_components=16)
    assert fd(a, b) == pytest.approx(frechet_distance(a.flatten(1), b.flatten(1)), rel=1e-9)
    torch.testing.assert_close(fd.components.T @ fd.components, torch.eye(16, dtype=torch.float64))
    assert abs(fd(a, a)) < 1e-9


def test_the_book_frechet_distance_keeps_the_top_components():
    g = torch.Generator().manual_seed(1)
    # Pixel 0 varies most, pixel 1 next, the rest barely: the top 2 components are pixels 0 and 1.
    scale = torch.tensor([5.0, 2.0] + [0.01] * 14)
    reference = (torch.randn(500, 16, generator=g) * scale).view(-1, 1, 4, 4)
    fd = FrechetDistance(reference, n_components=2)
    assert fd.components.shape == (16, 2)
    assert fd.components.abs().argmax(0).sort().values.tolist() == [0, 1]
    shifted = reference + torch.eye(16)[0].view(1, 1, 4, 4)  # moves along pixel 0 by 1
    assert fd(reference, shifted) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="n_components"):
        FrechetDistance(reference, n_components=0)


def test_interpolation_codes_run_straight_from_one_code_to_the_other():
    za, zb = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([[3.0, 2.0, 1.0]])
    z, t = interpolation_codes(za, zb, steps=5)
    assert z.shape == (5, 3) and t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    torch.testing.assert_close(z[0], za)
    torch.testing.assert_close(z[-1], zb[0])
    torch.testing.assert_close(z[2], torch.tensor([2.0, 0.0, 0.5]))
    steps = z[1:] - z[:-1]  # equal steps along one line
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))
    with pytest.raises(ValueError, match="same size"):
        interpolation_codes(torch.zeros(2), torch.zeros(3))


def test_manifold_codes_place_the_gaussian_quantiles_row_by_row_top_row_first():
    z, q = manifold_codes(3, n=5, dims=(0, 2))
    normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(normal.cdf(q), torch.linspace(0.05, 0.95, 5))
    assert z.shape == (25, 3) and (z[:, 1] == 0).all()
    row, col = 1, 3
    torch.testing.assert_close(z[row * 5 + col], torch.tensor([q[col], 0.0, q[5 - 1 - row]]))
    assert z[0, 2] == q.max() and z[-1, 2] == q.min()  # the top row has the highest z_2
    with pytest.raises(ValueError, match="two different dims"):
        manifold_codes(2, dims=(0, 0))


@pytest.mark.parametrize("d, share, expected", [
    (1, 0.99, 2.5758293035489),             # the two-sided 99% normal quantile
    (2, 0.99, math.sqrt(-2 * math.log(0.01))),  # chi with 2 dof: P(r < x) = 1 - exp(-x^2 / 2)
    (2, 0.5, math.sqrt(-2 * math.log(0.5))),
])
def test_prior_radius_matches_closed_forms(d, share, expected):
    assert prior_radius(d, share) == pytest.approx(expected, rel=1e-9)


def test_prior_radius_holds_its_share_of_draws_in_20_dimensions():
    draws = torch.randn(200_000, 20, generator=torch.Generator().manual_seed(0)).norm(dim=1)
    r = prior_radius(20)
    assert (draws < r).float().mean().item() == pytest.approx(0.99, abs=0.001)
    with pytest.raises(ValueError, match="share"):
        prior_radius(2, share=1.0)


# --- nearest codes and k-nearest-neighbour accuracy ---------------------------------------------------
# The oracle is scikit-learn's brute-force neighbour search and classifier, written independently.

def _clusters(n: int, seed: int, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes around four class centres that overlap, so that some neighbours disagree on the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    centres = torch.tensor([[0.0] * d, [1.0] * d, [0.0, 1.5] + [0.0] * (d - 2), [2.0] + [0.5] * (d - 1)])
    return (centres[labels] + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)).float(), labels


# d = 3 takes the k-d tree (up to TREE_MAX_DIM dimensions), d = 8 the pairwise distances.
@pytest.mark.parametrize("d", [3, 8])
@pytest.mark.parametrize("batch_size", [7, 1000])
def test_nearest_code_matches_a_brute_force_search(batch_size, d):
    neighbors = pytest.importorskip("sklearn.neighbors")
    queries, _ = _clusters(300, seed=1, d=d)
    reference, _ = _clusters(500, seed=2, d=d)
    found = nearest_code(queries, reference, batch_size=batch_size)
    search = neighbors.NearestNeighbors(n_neighbors=1, algorithm="brute").fit(reference.double().numpy())
    distance, index = search.kneighbors(queries.double().numpy())
    assert found.index.tolist() == index[:, 0].tolist()
    torch.testing.assert_close(found.distance.double(), torch.from_numpy(distance[:, 0]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [3, 8])
@pytest.mark.parametrize("k, batch_size", [(1, 1000), (5, 64), (8, 1000)])
def test_knn_accuracy_matches_a_k_neighbours_classifier(k, batch_size, d):
    neighbors = pytest.importorskip("sklearn.neighbors")
    reference, reference_labels = _clusters(600, seed=3, d=d)
    codes, labels = _clusters(400, seed=4, d=d)
    classifier = neighbors.KNeighborsClassifier(n_neighbors=k, algorithm="brute")
    expected = classifier.fit(reference.numpy(), reference_labels.numpy()).score(codes.numpy(), labels.numpy())
    assert 0.4 < expected < 0.95  # the classes overlap: a test that can tell right from wrong
    assert knn_accuracy(codes, labels, reference, reference_labels, k=k, batch_size=batch_size) == \
        pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("d", [3, 8])
def test_knn_accuracy_without_a_reference_leaves_each_code_out(d):
    neighbors = pytest.importorskip("sklearn.neighbors")
    codes, labels = _clusters(500, seed=5, d=d)
    k = 5
    # Each code's k nearest *other* codes: the k + 1 nearest, less the code itself (at distance 0).
    index = neighbors.NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(codes.numpy()) \
        .kneighbors(codes.numpy(), return_distance=False)
    votes = [[int(labels[j]) for j in row if j != i][:k] for i, row in enumerate(index)]
    predicted = [max(range(4), key=lambda c: (v.count(c), -c)) for v in votes]  # ties: smallest label
    expected = sum(p == int(y) for p, y in zip(predicted, labels)) / len(labels)
    assert knn_accuracy(codes, labels, k=k, batch_size=128) == pytest.approx(expected, abs=1e-12)
    # Not the same as letting each code vote for itself, which a 1-neighbour vote would always win.
    assert knn_accuracy(codes, labels, codes, labels, k=1) == 1.0
    assert knn_accuracy(codes, labels, k=1) < 0.95


def test_the_tree_and_the_pairwise_distances_find_the_same_neighbours(monkeypatch):
    from vaelib import neighbours

    g = torch.Generator().manual_seed(0)
    queries, reference = torch.randn(500, 2, generator=g) * 3, torch.randn(2000, 2, generator=g) * 3
    tree = nearest_code(queries, reference, batch_size=128)
    monkeypatch.setattr(neighbours, "TREE_MAX_DIM", 0)  # every code now takes the pairwise distances
    pairwise = nearest_code(queries, reference, batch_size=128)
    # The pairwise path computes |x|^2 + |y|^2 - 2 x.y in float32, off by up to about 1e-3 for codes of size 10.
    torch.testing.assert_close(tree.distance, pairwise.distance, rtol=1e-4, atol=1e-3)
    # Where they pick different codes, the two are equally near, to that rounding.
    exact = lambda index: (queries.double() - reference[index].double()).norm(dim=1)
    differ = tree.index != pairwise.index
    assert differ.float().mean() < 0.01
    torch.testing.assert_close(exact(tree.index)[differ], exact(pairwise.index)[differ], rtol=0, atol=1e-3)
    assert (exact(tree.index) <= exact(pairwise.index) + 1e-12).all()  # the tree's answer is the exact nearest


def test_leaving_each_code_out_copes_with_duplicate_codes():
    # Three copies of each of two codes: a copy's two nearest other codes are the other two copies.
    codes = torch.tensor([[0.0, 0.0]] * 3 + [[5.0, 5.0]] * 3)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert knn_accuracy(codes, labels, k=1) == 1.0
    assert knn_accuracy(codes, labels, k=2) == 1.0


def test_knn_ties_go_to_the_smallest_label():
    reference = torch.tensor([[0.0], [1.0], [-1.0], [2.0]])
    codes = torch.tensor([[0.1]])
    # The four nearest hold two 3s and two 1s: a tie, which the smaller label wins.
    assert knn_accuracy(codes, torch.tensor([1]), reference, torch.tensor([3, 1, 3, 1]), k=4) == 1.0
    assert knn_accuracy(codes, torch.tensor([3]), reference, torch.tensor([3, 1, 3, 1]), k=4) == 0.0


def test_nearest_code_and_knn_accuracy_reject_bad_input():
    codes = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="same d"):
        nearest_code(codes, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="flatten"):
        nearest_code(torch.zeros(5, 1, 28, 28), torch.zeros(4, 784))
    with pytest.raises(ValueError, match="k must be an integer between 1 and 4"):
        knn_accuracy(codes, torch.zeros(5, dtype=torch.long), k=5)
    with pytest.raises(ValueError, match="one label per code"):
        knn_accuracy(codes, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="together"):
        knn_accuracy(codes, torch.zeros(5, dtype=torch.long), reference=codes)


def test_decode_gives_pixel_probabilities_batch_by_batch(mnist):
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=3, hidden=(16,))
    z = torch.randn(25, 3)
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(z))
    torch.testing.assert_close(decode(model, z, batch_size=7), expected)


# The split of the average KL (chapter 5): average KL = I(x; z) + KL(q(z) || p(z)).

def test_log_aggregate_posterior_is_the_log_of_the_mixture_density():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    z = 2 * torch.randn(5, 3, generator=g)
    components = torch.distributions.Normal(mu.double(), torch.exp(0.5 * logvar.double()))
    expected = torch.logsumexp(components.log_prob(z.double()[:, None, :]).sum(-1), 1) - math.log(7)
    torch.testing.assert_close(log_aggregate_posterior(z, mu, logvar, chunk=2), expected)
    # Components a block at a time, the last block short, give the same mixture.
    torch.testing.assert_close(log_aggregate_posterior(z, mu, logvar, chunk=2, component_block=3), expected)
    with pytest.raises(ValueError, match=r"\[M, 3\]"):
        log_aggregate_posterior(torch.zeros(5, 2), mu, logvar)


def test_posteriors_that_are_all_the_prior_split_into_zero_and_zero():
    s = kl_split(torch.zeros(50, 4), torch.zeros(50, 4), n_samples=200, generator=torch.Generator().manual_seed(0))
    assert s.average_kl == 0 and abs(s.mutual_information) < 1e-12 and abs(s.marginal_kl) < 1e-12
    assert s.ln_n == pytest.approx(math.log(50)) and s.n_images == 50


def test_identical_posteriors_carry_no_information_and_all_their_kl_is_mismatch():
    mu, logvar = torch.tensor([[1.0, -0.5]]).repeat(30, 1), torch.tensor([[-1.0, 0.5]]).repeat(30, 1)
    s = kl_split(mu, logvar, n_samples=300, generator=torch.Generator().manual_seed(0))
    assert abs(s.mutual_information) < 1e-9
    assert s.marginal_kl == pytest.approx(gaussian_kl(mu[:1], logvar[:1]).item(), abs=1e-6)


def test_narrow_far_apart_posteriors_carry_ln_n_nats():
    n = 16
    corners = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(n, 2)
    s = kl_split(10 * corners, torch.full((n, 2), -12.0), n_samples=500, generator=torch.Generator().manual_seed(0))
    assert s.mutual_information == pytest.approx(math.log(n), abs=1e-6)
    assert s.marginal_kl == pytest.approx(s.average_kl - math.log(n), abs=1e-6) and s.marginal_kl > 10


def test_kl_split_matches_quadrature_in_one_dimension():
    mu = torch.tensor([[-1.0], [0.3], [1.5]])
    logvar = torch.log(torch.tensor([[0.5], [0.8], [0.3]]) ** 2)
    z = GRID[:, None]
    log_q = log_aggregate_posterior(z, mu, logvar)
    dz = (GRID[1] - GRID[0]).item()
    marginal = (log_q.exp() * (log_q - log_standard_normal(z))).sum().item() * dz   # KL(q(z) || p(z))
    average = gaussian_kl(mu, logvar).mean().item()
    s = kl_split(mu, logvar, n_samples=40_000, generator=torch.Generator().manual_seed(0))
    assert s.average_kl == pytest.approx(average, rel=1e-6)
    assert abs(s.marginal_kl - marginal) < 4 * s.standard_error and s.standard_error < 0.01
    assert abs(s.mutual_information - (average - marginal)) < 4 * s.standard_error
    assert 0.3 < average - marginal < math.log(3)   # overlapping clouds: some information, below ln N


def test_kl_split_rejects_bad_input():
    with pytest.raises(ValueError, match="same"):
        kl_split(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="N >= 1"):
        kl_split(torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="n_samples"):
        kl_split(torch.zeros(5, 2), torch.zeros(5, 2), n_samples=1)


def test_kl_decomposition_of_a_model_splits_its_own_average_kl(mnist):
    seed_everything(0)
    model = build_model(kind="vae", latent_dim=3, hidden=(16,))
    images = mnist.test.images[:64]
    s = kl_decomposition(model, images, n_samples=500, generator=torch.Generator().manual_seed(0), batch_size=10)
    mu, logvar = encode_distribution(model, images)
    assert s.average_kl == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
    assert s.average_kl == pytest.approx(s.mutual_information + s.marginal_kl, abs=1e-9)
    assert s.mutual_information <= math.log(64) and s.n_images == 64 and s.n_samples == 500
    again = kl_decomposition(model, images, n_samples=500, generator=torch.Generator().manual_seed(0))
    assert again.mutual_information == pytest.approx(s.mutual_information, abs=1e-9)
    with pytest.raises(ValueError, match="needs a VAE"):
        kl_decomposition(build_model(kind="ae", latent_dim=3, hidden=(16,)), images)


def test_active_units_need_two_images():
    from vaelib.evaluation import active_units, evaluate
    from vaelib.models import build_model

    model = build_model(kind="vae", latent_dim=3, hidden=(8,))
    images = torch.rand(2, 1, 28, 28)
    assert evaluate(model, images[:1])["active_units"] is None  # a single code has no spread, not 0 of it
    assert isinstance(evaluate(model, images)["active_units"], int)
    with pytest.raises(ValueError, match="at least 2 images"):
        active_units(model, images[:1])

