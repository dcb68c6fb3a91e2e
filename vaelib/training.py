"""Training: seeding, the device, the training recipe and ``fit`` (chapter 1 on).

``fit`` is chapter 6's loop (sample a batch, compute the loss terms, step Adam) plus bookkeeping: a
learning-rate schedule, a per-epoch history of the terms of the objective, a divergence check, and
callbacks for the progress bar and checkpoints (:mod:`vaelib.callbacks`). A NaN or infinite loss stops
training before any weight is touched, and the last good checkpoint is kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vaelib.callbacks import Callback, ProgressBar, SaveCheckpoint
from vaelib.checkpoints import CHECKPOINT_FORMAT, History
from vaelib.data import (Dataset, batches, check_dataset_name, check_images, data_record, describe,
                         subset)
from vaelib.errors import DataError, DeviceError, TrainingDiverged
from vaelib.losses import check_beta
from vaelib.models import Model, ModelConfig

SCHEDULES = ("constant", "cosine")
WARMUP_FRACTION = 0.05  # of all steps, for the "cosine" schedule
HISTORY_KEYS = ("loss", "recon", "kl", "elbo", "mean_sigma", "kl_per_dim", "seconds", "samples_per_s")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch's global generators (weight initialisation draws from them).
    ``fit`` itself uses generators of its own and leaves the global state alone."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or ``prefer``, e.g. ``"cpu"``), else the CPU. Chosen once, passed along.
    Raises :class:`~vaelib.errors.DeviceError` for a device this machine does not have."""
    if not prefer:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {prefer!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{prefer!r} was asked for, but this machine has no CUDA device; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{prefer!r} was asked for, but this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"vaelib runs on cpu or cuda, not {prefer!r}")
    return device


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe, saved in every checkpoint. Its :meth:`key` names a cached model.

    ``dataset`` is the name of the data trained on, or ``None`` when ``fit`` was given bare images and
    cannot know; ``n_train`` trains on a fixed random subset of that many images. ``schedule`` is
    ``"constant"`` (Adam at ``lr`` throughout) or ``"cosine"`` (a linear warm-up to ``lr`` over the
    first ``WARMUP_FRACTION`` of the steps, then a cosine decay to 0 at the last step): see
    :func:`learning_rate`.
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

    def __post_init__(self) -> None:
        if self.dataset is not None:
            object.__setattr__(self, "dataset", check_dataset_name(self.dataset))
        if not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        check_beta(self.beta)
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train <= 0):
            raise ValueError(f"n_train must be a positive integer, got {self.n_train!r}")
        if self.binarize not in (None, "dynamic"):
            raise ValueError(f"binarize must be None or 'dynamic', got {self.binarize!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"])})

    def key(self, data_fingerprint: str = "") -> str:
        blob = json.dumps({"config": self.to_dict(), "source": data_fingerprint,
                           "format": CHECKPOINT_FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.name != "model")


def epoch_generators(seed: int, epoch: int, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Generator, torch.Generator]:
    """The two random streams of one epoch of ``fit``: the shuffling order (on the CPU) and the
    sampling noise (on ``device``), seeded from ``(seed, epoch)``, so a resumed run draws exactly what
    a straight one would."""
    base = seed * 100_003 + epoch
    return torch.Generator().manual_seed(base), torch.Generator(device).manual_seed(base + 50_000)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    ``"constant"``: ``config.lr``. ``"cosine"``: a linear warm-up from ``lr / warm-up steps`` to ``lr``
    over the first ``WARMUP_FRACTION`` of the steps (at least one), then ``lr`` times a half cosine
    from 1 down to 0 at the last step. A function of the step alone, so a resumed run follows the
    schedule exactly where a straight one would.
    """
    if config.schedule == "constant":
        return config.lr
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup + 1) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, using the fused kernel when this PyTorch has one for the device."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def fit(model: Model, data: Dataset | torch.Tensor, config: TrainConfig | None = None, *,
        device: torch.device | str | None = None, progress: bool = True,
        checkpoint: str | Path | None = None, resume: dict | None = None, overwrite: bool = False,
        callbacks: Sequence[Callback] = (), **settings) -> History:
    """Train ``model`` on a :class:`~vaelib.data.Dataset`'s training split, or on images
    ``[N, C, H, W]`` in [0, 1]; return the per-epoch history.

    The recipe is ``config`` (default ``TrainConfig(model=model.config)``) with any of its fields
    overridden by keyword: ``fit(model, data, epochs=5, beta=0)``. History keys (one entry per epoch,
    training-set means, nats per example): ``loss`` (recon + beta * KL), ``recon``, ``kl``, ``elbo``,
    ``mean_sigma`` (0 for an autoencoder), ``kl_per_dim`` (a list per epoch), ``seconds``,
    ``samples_per_s``. ``checkpoint`` saves after every epoch, with a record of the data; it refuses to
    replace a checkpoint of another run unless ``overwrite=True`` (the one ``resume`` came from is this
    run's). ``resume`` (a checkpoint dict from :func:`~vaelib.checkpoints.load_checkpoint`) continues a
    run, on the data it was trained on: other data raises :class:`~vaelib.errors.DataError`. Raises
    :class:`~vaelib.errors.TrainingDiverged` on a NaN or infinite loss.
    """
    record = data_record(data)
    if resume is not None and resume.get("data") is not None and \
            resume["data"].get("fingerprint") != record["fingerprint"]:
        raise DataError(f"this run was trained on {describe(resume['data'])}, but is being resumed on "
                        f"{describe(record)}; resume it on the same data, or start a new run")
    config, images = _recipe(model, data, config, settings)
    device = get_device(device)
    model.to(device)
    images = images.to(device)
    optimizer = make_optimizer(model, config.lr)
    history, start = {k: [] for k in HISTORY_KEYS}, 0
    if resume is not None:
        if resume.get("optimizer") is not None:
            optimizer.load_state_dict(resume["optimizer"])
            for group in optimizer.param_groups:  # a resumed run may change the learning rate
                group["lr"] = config.lr
        history, start = {**{k: [] for k in HISTORY_KEYS}, **resume["history"]}, resume["epoch"]
    callbacks = [*([ProgressBar(type(model).__name__ + " epoch")] if progress else []),
                 *([SaveCheckpoint(checkpoint, config, overwrite=overwrite, resume=resume)]
                   if checkpoint is not None else []), *callbacks]
    for cb in callbacks:
        if isinstance(cb, SaveCheckpoint):
            cb.data = record
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    model.train()
    # Divergence check without a per-step host sync: ``bad`` becomes 1 on the device at the first
    # non-finite loss, and the fused Adam kernel skips every update from then on (``found_inf``, the
    # mechanism of mixed-precision loss scaling). The flag is read once per epoch. Without a fused
    # kernel the loss is checked on the host at every step instead.
    bad = torch.zeros((), device=device)
    sync_free = bool(optimizer.defaults.get("fused"))
    if sync_free:
        optimizer.found_inf = bad
    try:
        for cb in callbacks:
            cb.on_fit_start(model, start + 1, config.epochs, steps_per_epoch)
        for epoch in range(start + 1, config.epochs + 1):
            order, noise = epoch_generators(config.seed, epoch, device)
            tally, t0 = _Tally(model.config.latent_dim, device), time.perf_counter()
            step = (epoch - 1) * steps_per_epoch
            for x in batches(images, config.batch_size, generator=order, binarize=config.binarize,
                             noise=noise):
                terms = model.loss_terms(x, config.beta, generator=noise, validate=False)
                loss = terms.loss.mean()
                if sync_free:
                    bad.masked_fill_(~torch.isfinite(loss.detach()), 1.0)
                else:
                    _check_finite(loss, epoch, config.lr)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, step, total_steps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                tally.add(terms)
                step += 1
                for cb in callbacks:
                    cb.on_batch_end()
            if sync_free and bad.item():
                raise _diverged("NaN or infinite", epoch, config.lr)
            _check_weights(model, epoch, config.lr)
            tally.record(history, len(images), time.perf_counter() - t0)
            for cb in callbacks:
                cb.on_epoch_end(epoch, history, model, optimizer)
    finally:
        for cb in callbacks:
            cb.on_fit_end()
        model.eval()
        if sync_free:
            del optimizer.found_inf
    return history


def _recipe(model: Model, data: Dataset | torch.Tensor, config: TrainConfig | None,
            settings: dict) -> tuple[TrainConfig, torch.Tensor]:
    """The config that will really be used, and the training images it names."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"fit got unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    config = replace(config or TrainConfig(model=model.config), **settings)
    if config.model != model.config:
        raise ValueError(f"the config describes another model ({config.model}) than the one given "
                         f"({model.config})")
    if isinstance(data, Dataset):
        config = replace(config, dataset=data.name)
        data = data.train.images
    check_images(data, "images")
    if len(data) == 0:
        raise ValueError("there are no images to train on (got an empty tensor)")
    return config, subset(data, config.n_train, config.seed)


class _Tally:
    """Per-epoch sums of the loss terms, kept on the device so the loop never waits for them."""

    def __init__(self, latent_dim: int, device: torch.device) -> None:
        self.sums = torch.zeros(4, device=device)  # loss, recon, kl, sigma
        self.kl_dims = torch.zeros(latent_dim, device=device)

    @torch.no_grad()
    def add(self, terms) -> None:
        self.sums += torch.stack([terms.loss.sum(), terms.recon.sum(), terms.kl.sum(), terms.sigma.sum()])
        self.kl_dims += terms.kl_per_dim.sum(0)

    def record(self, history: History, n: int, seconds: float) -> None:
        loss, recon, kl, sigma = (self.sums / n).tolist()
        for key, value in (("loss", loss), ("recon", recon), ("kl", kl), ("elbo", -(recon + kl)),
                           ("mean_sigma", sigma), ("kl_per_dim", (self.kl_dims / n).tolist()),
                           ("seconds", seconds), ("samples_per_s", n / seconds)):
            history[key].append(value)


def _diverged(loss: str, epoch: int, lr: float) -> TrainingDiverged:
    return TrainingDiverged(f"the loss became {loss} in epoch {epoch}; training stopped before the weights "
                            f"were touched. Try a lower learning rate (e.g. --lr {lr / 10:g})")


def _check_finite(loss: torch.Tensor, epoch: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise _diverged(str(loss.item()), epoch, lr)


def _check_weights(model: Model, epoch: int, lr: float) -> None:
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise TrainingDiverged(f"the weights became NaN or infinite in epoch {epoch}; "
                               f"try a lower learning rate (e.g. --lr {lr / 10:g})")
