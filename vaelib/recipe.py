"""The training recipe: :class:`TrainConfig`, whose fields are the defaults, and its learning-rate schedule.

``TrainConfig()`` is the recipe of pytorch/examples' VAE (Adam at a constant learning rate, with that
example's batch size and epochs); its fields are the one place those numbers are written. Every other recipe
is a named override of it: the book's (:mod:`vaelib.book`), which the command line also trains with, and
whatever a caller passes to :func:`vaelib.training.fit`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from vaelib.data import check_dataset_name
from vaelib.errors import ConfigError
from vaelib.losses import check_beta
from vaelib.models import ModelConfig

#: What ``fit`` returns and a checkpoint keeps: one list per quantity, one entry per epoch.
History = dict[str, list]
SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "sgd")
# Fields added after recipes were first recorded: left out of a record while they keep their default.
ADDED_LATER = ("free_bits", "kl_warmup", "optimizer")
WARMUP_FRACTION = 0.05  # of all steps, for the "cosine" schedule


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe, saved in every checkpoint. Its fields' defaults are vaelib's recipe.

    ``dataset`` is the name of the data trained on, or ``None`` when ``fit`` was given bare images and
    cannot know; ``n_train`` trains on a fixed random subset of that many images. ``optimizer`` is
    ``"adam"`` or ``"sgd"`` (plain SGD, for chapter 4's comparison). ``schedule`` is
    ``"constant"`` (``lr`` throughout) or ``"cosine"`` (a linear warm-up to ``lr`` over the
    first ``WARMUP_FRACTION`` of the steps, then a cosine decay to 0 at the last step): see
    :func:`lr_factor`.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    n_train: int | None = None
    binarize: str | None = None
    schedule: str = "constant"
    free_bits: float = 0.0  # nats per latent dimension that the KL term leaves uncharged (Kingma et al., 2016)
    kl_warmup: float = 0.0  # the share of all steps over which the KL term's weight rises from 0 to beta
    optimizer: str = "adam"  # or "sgd": plain stochastic gradient descent, whose steps are not normalised

    def __post_init__(self) -> None:
        if self.dataset is not None:
            object.__setattr__(self, "dataset", check_dataset_name(self.dataset))
        if not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        check_beta(self.beta)
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train <= 0):
            raise ConfigError(f"n_train must be a positive integer, got {self.n_train!r}")
        if self.binarize not in (None, "dynamic"):
            raise ConfigError(f"binarize must be None or 'dynamic', got {self.binarize!r}")
        if not (isinstance(self.free_bits, (int, float)) and 0 <= self.free_bits < math.inf):
            raise ConfigError(f"free_bits must be a number of nats >= 0, got {self.free_bits!r}")
        if not (isinstance(self.kl_warmup, (int, float)) and 0 <= self.kl_warmup <= 1):
            raise ConfigError(f"kl_warmup must be a share of the steps between 0 and 1, got {self.kl_warmup!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def to_dict(self) -> dict:
        d = {**asdict(self), "model": self.model.to_dict()}
        for f in fields(self):
            if f.name in ADDED_LATER and d[f.name] == f.default:  # so earlier recipes' records stay as they were
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of :meth:`to_dict`; one saved before schedules existed trained at a constant rate."""
        return cls(**{"schedule": "constant", **d, "model": ModelConfig.from_dict(d["model"])})


def lr_factor(schedule: str, total_steps: int, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``, as a fraction of the peak.

    ``"constant"``: 1. ``"cosine"``: a linear warm-up from ``1 / warm-up steps`` to 1 over the first
    ``WARMUP_FRACTION`` of the steps (at least one), then a half cosine from 1 down to 0 at the last step.
    A function of the step alone, so a resumed run follows the schedule exactly where a straight one would.
    """
    if schedule == "constant":
        return 1.0
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup + 1) / max(1, total_steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def kl_weight(config: TrainConfig, total_steps: int, step: int) -> float:
    """The KL term's weight at optimizer step ``step`` (0-based): ``beta``, or with ``kl_warmup`` a linear
    rise to ``beta`` over that share of the steps (KL annealing, Bowman et al., 2016)."""
    warmup = round(config.kl_warmup * total_steps)
    return config.beta * min(1.0, (step + 1) / warmup) if warmup else config.beta
