"""The models: a deterministic autoencoder (chapter 1) and the VAE (chapter 3).

Both decode to Bernoulli **logits** (pass them through ``torch.sigmoid`` for pixel probabilities).
The VAE's encoder returns the mean ``mu`` and log-variance ``logvar`` of a diagonal Gaussian
q(z | x); ``logvar`` is clamped to ``LOGVAR_RANGE`` so that ``exp`` stays finite however training
goes. The default network is an MLP 784-400-20 (one hidden layer of 400 units, a 20-D code);
``arch="conv"`` gives a small convolutional variant (chapter 7).

Both derive from :class:`Model`, the interface every model answers, so no caller needs to know which one
it holds:

- ``model.loss_terms(x, beta)``: the terms of the objective (:class:`~vaelib.losses.ELBOTerms`);
  the autoencoder is the case with no KL;
- ``model.code(x)``: the point code used for plots (``mu`` for a VAE, ``z`` for an autoencoder);
- ``model.decode(z)``, ``model.reconstruct(x)``, ``model.sample(n)``;
- ``model.variational``: whether ``model.posterior(x)`` gives a distribution ``(mu, logvar)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from vaelib.errors import ConfigError, OutOfMemory
from vaelib.estimators import reparameterize
from vaelib.losses import ELBOTerms, bernoulli_nll, elbo_terms, objective

# The clamp on the encoder's log-variance keeps exp finite. Without a KL term the encoder pushes log sigma^2
# far below any floor that float32 can honour (measured on Fashion-MNIST: a median of about -34, and -75 at
# the 1st percentile, with or without the clamp), so the floor binds there; chapters 3 to 6 say so.
LOGVAR_RANGE = (-20.0, 10.0)
#: The widths LOGVAR_RANGE allows: sigma from exp(-10), about 4.5e-5, to exp(5), about 148.
SIGMA_RANGE = (math.exp(0.5 * LOGVAR_RANGE[0]), math.exp(0.5 * LOGVAR_RANGE[1]))
KINDS = ("ae", "vae")
ARCHS = ("mlp", "conv")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model. Saved in every checkpoint."""

    kind: str = "vae"
    arch: str = "mlp"
    latent_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    image_shape: tuple[int, int, int] = (1, 28, 28)
    sigma: float | None = None  # a VAE whose every cloud has this fixed width; None: the encoder learns it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown model {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        if not isinstance(self.latent_dim, int) or self.latent_dim <= 0:
            raise ConfigError(f"latent_dim must be a positive integer, got {self.latent_dim!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be positive, got {self.hidden}")
        if self.sigma is not None and not (self.kind == "vae" and isinstance(self.sigma, (int, float))
                                           and 0 < self.sigma < float("inf")):
            raise ConfigError(f"a fixed sigma must be a positive number, for a VAE; got {self.sigma!r}")
        if self.arch == "conv" and (self.image_shape[1] % 4 or self.image_shape[2] % 4):
            raise ConfigError(f"the conv model needs image sides divisible by 4, got {self.image_shape}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["image_shape"] = list(self.hidden), list(self.image_shape)
        if self.sigma is None:  # so that the records of models with a learned sigma stay as they were
            del d["sigma"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{k: d[k] for k in ("kind", "arch", "latent_dim", "hidden", "image_shape")},
                   sigma=d.get("sigma"))


PRESETS = {
    "vae-784-400-20": ModelConfig(kind="vae", arch="mlp", latent_dim=20, hidden=(400,)),
    "ae-784-400-20": ModelConfig(kind="ae", arch="mlp", latent_dim=20, hidden=(400,)),
    "conv-vae": ModelConfig(kind="vae", arch="conv", latent_dim=20, hidden=(256,)),
}


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # [batch, *image_shape]
    mu: torch.Tensor      # [batch, latent]
    logvar: torch.Tensor  # [batch, latent]
    z: torch.Tensor       # [batch, latent]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _encoder(cfg: ModelConfig, out: int) -> nn.Module:
    c, h, w = cfg.image_shape
    if cfg.arch == "mlp":
        return nn.Sequential(nn.Flatten(), _mlp([c * h * w, *cfg.hidden, out]))
    return nn.Sequential(
        nn.Conv2d(c, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), _mlp([64 * (h // 4) * (w // 4), *cfg.hidden, out]),
    )


def _decoder(cfg: ModelConfig) -> nn.Module:
    c, h, w = cfg.image_shape
    if cfg.arch == "mlp":
        return nn.Sequential(_mlp([cfg.latent_dim, *reversed(cfg.hidden), c * h * w]),
                             nn.Unflatten(1, cfg.image_shape))
    return nn.Sequential(
        _mlp([cfg.latent_dim, *reversed(cfg.hidden), 64 * (h // 4) * (w // 4)]), nn.ReLU(),
        nn.Unflatten(1, (64, h // 4, w // 4)),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, c, 4, stride=2, padding=1),
    )


class Model(nn.Module, ABC):
    """What every model answers: :meth:`loss_terms`, :meth:`code`, :meth:`posterior` and :meth:`decode`, and
    from them :meth:`reconstruct` and :meth:`sample`. Subclasses build ``encoder`` and ``decoder`` from their
    :class:`ModelConfig`; the decoder is the same for every kind, so :meth:`decode` is defined here."""

    config: ModelConfig
    kind: str            # the ModelConfig.kind this class builds
    variational: bool    # True when the encoder outputs a distribution
    decoder: nn.Module

    @abstractmethod
    def loss_terms(self, x: torch.Tensor, beta: float = 1.0, *,
                   generator: torch.Generator | None = None, validate: bool = True) -> ELBOTerms:
        """The terms of the objective for each image of ``x: [batch, *image_shape]``."""

    @abstractmethod
    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The point code ``[batch, latent]`` of each image, the one plots show."""

    @abstractmethod
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, logvar: [batch, latent]`` of q(z | x); a model whose code is a point raises ``ValueError``."""

    def _set_config(self, config: ModelConfig | None, kwargs: dict) -> None:
        if config is not None and kwargs:
            raise ConfigError("pass either a ModelConfig or keyword arguments, not both")
        config = config or ModelConfig(kind=self.kind, **kwargs)
        if config.kind != self.kind:
            raise ConfigError(f"a {type(self).__name__} needs ModelConfig(kind={self.kind!r}), got "
                             f"kind={config.kind!r}; use build_model(config) to get the right class")
        self.config = config

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.config.image_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape [batch, {', '.join(map(str, self.config.image_shape))}], "
                             f"got {shape}; reshape with x.view(-1, *{self.config.image_shape})")
        weights = next(self.parameters()).dtype
        if x.dtype != weights:  # torch does not mix the two: its own error would name neither
            raise ValueError(f"expected images of dtype {weights} like the model's weights, got {x.dtype}; "
                             f"convert them with x.to({weights})")

    def _check_z(self, z: torch.Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"expected codes z of shape [batch, {self.config.latent_dim}] for this "
                             f"model, got {tuple(z.shape)}")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``[batch, *image_shape]`` for codes ``z: [batch, latent]``."""
        self._check_z(z)
        return self.decoder(z)

    def probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities ``[batch, *image_shape]`` for codes ``z``: the decoder's mean image, the
        sigmoid of :meth:`decode`'s logits."""
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the point code of each image."""
        return self.probabilities(self.code(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes drawn from N(0, I): pixel probabilities ``[n, *image_shape]``."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return self.probabilities(z)


class Autoencoder(Model):
    """A deterministic autoencoder: ``z = encode(x)``, ``logits = decode(z)``."""

    kind, variational = "ae", False

    def __init__(self, config: ModelConfig | None = None, **kwargs) -> None:
        super().__init__()
        self._set_config(config, kwargs)
        self.encoder = _encoder(self.config, self.config.latent_dim)
        self.decoder = _decoder(self.config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``z: [batch, latent]`` of each image."""
        self._check_x(x)
        return self.encoder(x)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError("an autoencoder's code is a single point, not a distribution: it has no "
                         "logvar. Use model.code(x), or a VAE")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss_terms(self, x: torch.Tensor, beta: float = 1.0, *,
                   generator: torch.Generator | None = None, validate: bool = True) -> ELBOTerms:
        """Reconstruction from the code itself; ``kl`` and ``sigma`` are 0 (``beta`` changes nothing)."""
        z = self.encode(x)
        recon = bernoulli_nll(self.decode(z), x, validate=validate)
        return objective(recon, torch.zeros_like(z), torch.zeros_like(recon), beta)


class VAE(Model):
    """A VAE with a diagonal-Gaussian encoder q(z | x) and a Bernoulli decoder p(x | z)."""

    kind, variational = "vae", True

    def __init__(self, config: ModelConfig | None = None, **kwargs) -> None:
        super().__init__()
        self._set_config(config, kwargs)
        # One linear layer produces [mu, logvar] together: the same maths as two heads, one matmul.
        self.encoder = _encoder(self.config, 2 * self.config.latent_dim)
        self.decoder = _decoder(self.config)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, logvar: [batch, latent]`` of q(z | x)."""
        self._check_x(x)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        if self.config.sigma is not None:  # the width is not learned: the encoder's second half is unused
            return mu, torch.full_like(mu, 2 * math.log(self.config.sigma))
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, logvar: [batch, latent]`` of q(z | x), the same as :meth:`encode`."""
        return self.encode(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mu + sigma * eps`` with ``eps ~ N(0, I)``: a sample that gradients flow through."""
        return reparameterize(mu, logvar, generator=generator)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return VAEOutput(self.decode(z), mu, logvar, z)

    def loss_terms(self, x: torch.Tensor, beta: float = 1.0, *,
                   generator: torch.Generator | None = None, validate: bool = True) -> ELBOTerms:
        """The terms at one reparameterized sample z ~ q(z | x) per image."""
        out = self(x, generator)
        return elbo_terms(out.logits, x, out.mu, out.logvar, beta, validate=validate)


def build_model(config: ModelConfig | str | None = None, **kwargs) -> Model:
    """A fresh model from a :class:`ModelConfig`, a preset name such as ``"vae-784-400-20"``, or
    keyword arguments (``build_model(kind="ae", latent_dim=2)``), one of the three: a preset with keywords
    (``build_model("vae-784-400-20", latent_dim=2)``) would be a model its name does not describe, and raises
    :class:`~vaelib.errors.ConfigError`.

    Raises :class:`~vaelib.errors.OutOfMemory` when the weights do not fit in memory."""
    if config is not None and kwargs:
        given = f"the preset {config!r}" if isinstance(config, str) else "a ModelConfig"
        settings = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(f"build_model got {given} and the settings {settings}; pass one or the other "
                          "(dataclasses.replace(config, ...) changes a ModelConfig's fields)")
    if isinstance(config, str):
        if config not in PRESETS:
            raise ConfigError(f"unknown preset {config!r}; choose one of: {', '.join(PRESETS)}")
        config = PRESETS[config]
    if config is None:
        config = ModelConfig(**kwargs)
    try:
        return VAE(config) if config.kind == "vae" else Autoencoder(config)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        with torch.device("meta"):
            n = count_parameters(VAE(config) if config.kind == "vae" else Autoencoder(config))
        raise OutOfMemory(f"a model with hidden sizes {list(config.hidden)} and a {config.latent_dim}-D code "
                          f"has {n:,} weights ({4 * n / 1e9:.1f} GB), more than this machine's memory "
                          "holds; choose smaller --hidden or --latent-dim") from None


def count_parameters(model: nn.Module) -> int:
    """The number of trainable weights and biases."""
    return sum(p.numel() for p in model.parameters())
