"""Evaluation on held-out data, and the measurements behind the book's figures (chapters 2 to 7).

All likelihood values are means **per example, in nats**. ``elbo <= iw_loglik <= log p(x)``: the
importance-weighted estimate with K samples (the IWAE bound of Burda et al.) tightens as K grows.

The figures' numbers are computed here and drawn by :mod:`vaelib.plots`: :func:`decode`,
:func:`interpolation_codes`, :func:`manifold_codes`, :func:`prior_radius` (the ball that holds a given
share of N(0, I) draws) and :class:`FrechetDistance`, the book's one measure of how far a set of images
is from the real ones. :func:`nearest_code` and :func:`knn_accuracy` (from :mod:`vaelib.neighbours`, their home) measure
where codes lie relative to each other: the gaps between them, and how well nearby codes share a class.
:func:`kl_decomposition` splits the average KL into the information in the code and the mismatch between
the aggregate posterior and the prior (chapter 5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vaelib.losses import (LOG_2PI, bernoulli_nll, check_images, gaussian_kl, log_normal, log_standard_normal,
                           reparameterize)
from vaelib.models import Model
from vaelib.neighbours import Nearest, knn_accuracy, nearest_code  # noqa: F401 (the chapters' names)

FRECHET_COMPONENTS = 50


def _device(model: Model) -> torch.device:
    return next(model.parameters()).device


def _check_batches(images: torch.Tensor, batch_size: int) -> None:
    check_images(images, "images")
    if len(images) == 0:
        raise ValueError("there are no images to evaluate (got an empty tensor)")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


@torch.no_grad()
def encode_mean(model: Model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The point code of each image (``mu`` for a VAE, ``z`` for an autoencoder): ``[N, latent]``
    on the CPU."""
    _check_batches(images, batch_size)
    model.eval()
    dev = _device(model)
    return torch.cat([model.code(x.to(dev)).cpu() for x in images.split(batch_size)])


@torch.no_grad()
def encode_distribution(model: Model, images: torch.Tensor,
                        batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu, logvar: [N, latent]`` of q(z | x) for every image, on the CPU (a VAE only)."""
    _check_batches(images, batch_size)
    model.eval()
    dev, mus, logvars = _device(model), [], []
    for x in images.split(batch_size):
        mu, logvar = model.posterior(x.to(dev))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def decode(model: Model, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Pixel probabilities ``[N, C, H, W]`` on the CPU for codes ``z: [N, latent]``."""
    model.eval()
    dev = _device(model)
    return torch.cat([model.probabilities(c.to(dev)).cpu() for c in z.split(batch_size)])


@torch.no_grad()
def iw_log_likelihood(model: Model, x: torch.Tensor, k: int = 100,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) with ``k`` samples: ``[batch]`` nats.

    log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x). With k = 1 its expectation is the
    ELBO; it grows with k towards log p(x).
    """
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"the number of importance samples must be a positive integer, got {k!r}")
    check_images(x, "x")
    mu, logvar = model.posterior(x)
    chunk = max(1, 20_000 // max(1, len(x)))
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = reparameterize(mu, logvar, generator=generator, n_samples=n)  # [n, batch, latent]
        logits = model.decode(z.reshape(-1, z.shape[-1]))
        log_px_z = -bernoulli_nll(logits, x.repeat(n, *([1] * (x.dim() - 1))), validate=False)
        log_w.append(log_px_z.view(n, -1) + log_standard_normal(z) - log_normal(z, mu, logvar))
    return torch.logsumexp(torch.cat(log_w), 0) - math.log(k)


@torch.no_grad()
def active_units(model: Model, images: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Active units (Burda et al. 2015): dimension u is active if Cov_x(E_q[z_u]) > ``threshold``.

    Returns ``(count, variance_per_dim)``. A dimension whose posterior mean ignores the input has
    collapsed to the prior and carries no information. A variance needs at least two images.
    """
    if len(images) < 2:
        raise ValueError(f"active units need the spread of the codes over at least 2 images, got {len(images)}")
    var = encode_mean(model, images).var(0)
    return int((var > threshold).sum()), var


@torch.no_grad()
def evaluate(model: Model, images: torch.Tensor, *, beta: float = 1.0, iw_samples: int = 0,
             batch_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Per-example test metrics in nats, from the same objective ``fit`` minimises
    (``model.loss_terms``, one sample of z per image, seeded by ``seed``).

    Every model: ``recon``, ``kl``, ``elbo``, ``loss`` (recon + beta * kl), ``latent_dim`` and ``n``.
    A VAE also gets ``active_units`` (``None`` for a single image, which has no spread) and, when
    ``iw_samples > 0``, ``iw_loglik``. For an autoencoder
    ``kl`` is 0 and ``elbo`` is not a bound on anything: it is left out.
    """
    _check_batches(images, batch_size)
    if not isinstance(iw_samples, int) or iw_samples < 0:
        raise ValueError(f"iw_samples must be an integer >= 0, got {iw_samples!r}")
    model.eval()
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    sums = torch.zeros(4, dtype=torch.float64)  # loss, recon, kl, iw_loglik
    for x in images.split(batch_size):
        x = x.to(dev)
        t = model.loss_terms(x, beta, generator=gen, validate=False)
        iw = iw_log_likelihood(model, x, iw_samples, gen).sum() if iw_samples and model.variational else 0
        sums += torch.tensor([t.loss.sum().item(), t.recon.sum().item(), t.kl.sum().item(), float(iw)],
                             dtype=torch.float64)
    n = len(images)
    loss, recon, kl, iw = (sums / n).tolist()
    result = {"loss": loss, "recon": recon, "kl": kl, "latent_dim": model.config.latent_dim, "n": n}
    if model.variational:
        result.update(elbo=-(recon + kl), active_units=active_units(model, images)[0] if n >= 2 else None)
        if iw_samples:
            result.update(iw_loglik=iw, iw_samples=iw_samples)
    return result


def bits_per_dim(nats_per_example: float, n_dims: int = 784) -> float:
    """Convert a per-example log-likelihood in nats to bits per dimension (positive = cost)."""
    return -nats_per_example / (n_dims * math.log(2))


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``[n_a, k]`` and ``[n_b, k]`` features:
    ``|m_a - m_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``, computed in float64. It is 0 for
    identical fits; FID is this distance on the features of an image classifier."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError("frechet_distance needs two [n, k] feature matrices with the same k, got "
                         f"{tuple(features_a.shape)} and {tuple(features_b.shape)}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("frechet_distance needs at least 2 rows on each side to fit a covariance")
    a, b = features_a.detach().cpu().double(), features_b.detach().cpu().double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()  # tr sqrt(C_a C_b)
    mean_term = (a.mean(0) - b.mean(0)).pow(2).sum()
    return (mean_term + cov_a.trace() + cov_b.trace() - 2 * cross).item()


class FrechetDistance:
    """The book's distance between a set of images and the real ones.

    Images are summarised by their coordinates on the top ``n_components`` principal components of
    ``reference`` images (real training images); :func:`frechet_distance` then compares the Gaussians
    fitted to two such sets. Lower is closer; two sets of real images give the floor. It plays the role
    FID plays for natural images, with principal components instead of a classifier's features.

    >>> fd = FrechetDistance(data.train.images[:5000])
    >>> fd(model.sample(1000), data.test.images[:1000])
    """

    def __init__(self, reference: torch.Tensor, n_components: int = FRECHET_COMPONENTS) -> None:
        flat = reference.detach().cpu().flatten(1).double()
        if not 1 <= n_components <= min(flat.shape):
            raise ValueError(f"n_components must be between 1 and {min(flat.shape)}, got {n_components}")
        self.mean = flat.mean(0)
        self.components = torch.linalg.svd(flat - self.mean, full_matrices=False).Vh[:n_components].T

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, n_components]`` coordinates of images ``[N, C, H, W]``."""
        return (images.detach().cpu().flatten(1).double() - self.mean) @ self.components

    def __call__(self, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
        return frechet_distance(self.features(images_a), self.features(images_b))


def interpolation_codes(z_a: torch.Tensor, z_b: torch.Tensor, steps: int = 10
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes on the straight line from ``z_a`` to ``z_b`` (each ``[latent]`` or ``[1, latent]``):
    ``([steps, latent]`` codes ``(1 - t) z_a + t z_b``, ``[steps]`` weights t from 0 to 1)."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    z_a, z_b = z_a.reshape(1, -1), z_b.reshape(1, -1)
    if z_a.shape != z_b.shape:
        raise ValueError(f"both codes need the same size, got {z_a.shape[1]} and {z_b.shape[1]}")
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)
    return (1 - t[:, None]) * z_a + t[:, None] * z_b, t


def manifold_codes(latent_dim: int, n: int = 15, dims: tuple[int, int] = (0, 1)
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``n x n`` grid of codes at the Gaussian quantiles 5%..95% of two dimensions (the others 0),
    so equal areas of the prior get equal space: ``([n * n, latent]`` codes in row-major order, the top
    row first (highest ``dims[1]``), ``[n]`` quantiles)."""
    if n < 2 or len(set(dims)) != 2 or not all(0 <= d < latent_dim for d in dims):
        raise ValueError(f"need n >= 2 and two different dims below {latent_dim}, got n={n}, dims={dims}")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z = torch.zeros(n * n, latent_dim)
    z[:, dims[0]] = q.repeat(n)
    z[:, dims[1]] = q.flip(0).repeat_interleave(n)
    return z, q


def prior_radius(latent_dim: int, share: float = 0.99) -> float:
    """The radius of the ball around 0 that holds ``share`` of N(0, I) draws in ``latent_dim``
    dimensions: the square root of the chi-square quantile with ``latent_dim`` degrees of freedom."""
    from scipy.stats import chi2  # here, not at the top: scipy.stats takes a second to import

    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    return math.sqrt(chi2.ppf(share, latent_dim))


def project_2d(codes: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """Codes as 2-D points for a scatter plot, with axis names: 2-D codes as they are, 1-D codes on a
    line, wider codes on their top two principal components."""
    codes = codes.detach().cpu().float()
    if codes.shape[1] == 1:
        return torch.cat([codes, torch.zeros_like(codes)], 1), ("$z_1$", "(none)")
    if codes.shape[1] == 2:
        return codes, ("$z_1$", "$z_2$")
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, ("principal component 1", "principal component 2")


class KLDecomposition(NamedTuple):
    """The average KL over N images, split in two parts (all in nats per image):
    ``average_kl = mutual_information + marginal_kl``.

    ``mutual_information`` is I(x; z) under the encoder, with x uniform over the N images: at most
    ``ln_n`` = ln N. ``marginal_kl`` is KL(q(z) || p(z)), from the aggregate posterior
    q(z) = (1/N) sum_n q(z | x_n) to the prior. ``standard_error`` is the Monte Carlo error of both
    estimates (the exact ``average_kl`` has none)."""

    average_kl: float
    mutual_information: float
    marginal_kl: float
    standard_error: float
    ln_n: float
    n_images: int
    n_samples: int


def log_aggregate_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                            chunk: int = 64, component_block: int = 4096) -> torch.Tensor:
    """log q(z) of the aggregate posterior q(z) = (1/N) sum_n N(z; mu_n, diag(exp(logvar_n))) at the
    points ``z: [M, latent]``, for posteriors ``mu, logvar: [N, latent]``: ``[M]``, in float64.

    Every one of the N components is evaluated, ``chunk`` points and ``component_block`` components at a
    time: their log-densities come from one matrix product (the squared distances expanded), and a running
    log-sum-exp over the blocks gives the mixture's log-density. Introduced in chapter 5."""
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must have the same shape [N, latent], got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    if z.dim() != 2 or z.shape[1] != mu.shape[1]:
        raise ValueError(f"z must be [M, {mu.shape[1]}] for these posteriors, got {tuple(z.shape)}")
    mu, logvar, z = mu.double().cpu(), logvar.double().cpu(), z.double().cpu()
    precision = torch.exp(-logvar)                                                   # [N, latent]
    # log N(z; mu_n, var_n) = const_n - 0.5 sum_d (z_d^2 prec_nd - 2 z_d mu_nd prec_nd): one product
    const = -0.5 * (LOG_2PI * mu.shape[1] + logvar.sum(1) + (mu.pow(2) * precision).sum(1))  # [N]
    weights = torch.cat([precision, -2 * mu * precision], 1).T                       # [2 latent, N]
    out = []
    for zc in z.split(chunk):
        features, total = torch.cat([zc.pow(2), zc], 1), torch.full((len(zc),), -math.inf, dtype=torch.float64)
        # The components a block at a time, so that no temporary is large: large ones that are freed again
        # and again can stay in the process's memory, and a 60,000-image mixture once kept 800 MB that way.
        for c, w in zip(const.split(component_block), weights.split(component_block, dim=1)):
            total = torch.logaddexp(total, torch.logsumexp(torch.addmm(c, features, w, alpha=-0.5), 1))
        out.append(total)                                                            # [chunk]
    return torch.cat(out) - math.log(len(mu))


def kl_split(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 2000,
             generator: torch.Generator | None = None) -> KLDecomposition:
    """:class:`KLDecomposition` of N diagonal-Gaussian posteriors ``mu, logvar: [N, latent]``.

    The average KL is exact (the closed form). For the split, ``n_samples`` pairs are drawn: an image n
    uniformly, then z ~ q(z | x_n). The mutual information is the average of
    log q(z | x_n) - log q(z), with the aggregate posterior q(z) evaluated exactly over all N images
    (:func:`log_aggregate_posterior`); each term is at most ln N. ``marginal_kl`` is the average KL minus
    that: the Monte Carlo estimate of KL(q(z) || p(z)), log q(z) - log p(z) averaged over the same draws,
    with the exact average KL as a control variate, which removes most of its noise."""
    if mu.shape != logvar.shape or mu.dim() != 2 or len(mu) == 0:
        raise ValueError(f"mu and logvar must have the same shape [N, latent], with N >= 1 images, got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    mu, logvar = mu.detach().double().cpu(), logvar.detach().double().cpu()
    n = len(mu)
    average_kl = gaussian_kl(mu, logvar).mean().item()
    pick = torch.randint(n, (n_samples,), generator=generator)
    z = reparameterize(mu[pick], logvar[pick], generator=generator)
    info = log_normal(z, mu[pick], logvar[pick]) - log_aggregate_posterior(z, mu, logvar)
    mutual_information = info.mean().item()
    return KLDecomposition(average_kl=average_kl, mutual_information=mutual_information,
                           marginal_kl=average_kl - mutual_information,
                           standard_error=(info.std() / math.sqrt(n_samples)).item(),
                           ln_n=math.log(n), n_images=n, n_samples=n_samples)


@torch.no_grad()
def kl_decomposition(model: Model, images: torch.Tensor, n_samples: int = 2000,
                     generator: torch.Generator | None = None, batch_size: int = 1000) -> KLDecomposition:
    """Split a VAE's average KL over ``images`` (its training images, say) into the information its code
    carries about the image, I(x; z), and the mismatch KL(q(z) || p(z)) between the aggregate posterior
    of those images and the prior: :func:`kl_split` on the encoder's ``mu, logvar``. Introduced in
    chapter 5."""
    if not model.variational:
        raise ValueError("kl_decomposition needs a VAE: an autoencoder's code is a point, with no KL to split")
    mu, logvar = encode_distribution(model, images, batch_size)
    return kl_split(mu, logvar, n_samples, generator)
