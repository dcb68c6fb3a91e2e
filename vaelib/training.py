"""Training: seeding, the optimizer and its learning-rate schedule, and ``fit`` (chapter 1 on).

``fit`` is chapter 6's loop (sample a batch, compute the loss terms, step Adam) plus bookkeeping: the
recipe's learning-rate schedule (:mod:`vaelib.recipe`), a per-epoch history of the terms of the objective,
a divergence check, and callbacks for the progress bar and checkpoints (:mod:`vaelib.callbacks`). A NaN or
infinite loss stops training before any weight is touched, and the last good checkpoint is kept.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from vaelib.callbacks import Callback, Callbacks, ProgressBar, Run, SaveCheckpoint
from vaelib.data import Dataset, batches, data_record, describe, subset
from vaelib.device import get_device
from vaelib.errors import ConfigError, DataError, TrainingDiverged
from vaelib.losses import check_images
from vaelib.models import Model
from vaelib.recipe import History, TrainConfig, kl_weight, lr_factor

HISTORY_KEYS = ("loss", "recon", "kl", "elbo", "mean_sigma", "kl_per_dim", "seconds", "samples_per_s")
SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.name != "model")  # what fit takes by keyword


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch's global generators (weight initialisation draws from them).
    ``fit`` itself uses generators of its own and leaves the global state alone."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_generators(seed: int, epoch: int, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Generator, torch.Generator]:
    """The two random streams of one epoch of ``fit``: the shuffling order (on the CPU) and the
    sampling noise (on ``device``), seeded from ``(seed, epoch)``, so a resumed run draws exactly what
    a straight one would."""
    base = seed * 100_003 + epoch
    return torch.Generator().manual_seed(base), torch.Generator(device).manual_seed(base + 50_000)


def make_optimizer(model: torch.nn.Module, lr: float, kind: str = "adam") -> torch.optim.Optimizer:
    """Adam, using the fused kernel when this PyTorch has one for the device; or, with ``kind="sgd"``, plain
    SGD (no momentum), whose every step is the learning rate times the gradient."""
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
                   resume: dict | None = None) -> LambdaLR:
    """The learning rate of every step: ``config.lr`` times :func:`~vaelib.recipe.lr_factor`, as a torch
    ``LambdaLR`` stepped after every optimizer step.

    With ``resume`` (a checkpoint), the optimizer's state is restored and the schedule starts at the step
    the checkpoint's schedule had reached (for a format-4 checkpoint, which has none, the step its epochs
    make), with this config's peak and length: a resumed run may change the learning rate and the epochs.
    """
    done = 0
    if resume is not None:
        if resume.get("optimizer") is not None:
            optimizer.load_state_dict(resume["optimizer"])
        state = resume.get("scheduler")
        done = state["last_epoch"] if state is not None else resume["epoch"] * steps_per_epoch
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr  # the peak that LambdaLR scales, whatever a checkpoint said
    factor = partial(lr_factor, config.schedule, config.epochs * steps_per_epoch)
    return LambdaLR(optimizer, factor, last_epoch=done - 1)


class DivergenceCheck:
    """Stops training at the first NaN or infinite loss, before that loss changes a weight, and at the end
    of an epoch whose weights are no longer finite.

    With a fused Adam kernel it costs no host sync per step: a flag on the device turns 1 at the first
    non-finite loss, and the kernel skips every update while the optimizer's ``found_inf`` tensor is
    non-zero. That attribute is private, the hook ``torch.amp.GradScaler`` skips steps with, so
    tests/test_training.py pins what the installed PyTorch does with it. The flag is read once per epoch.
    Without a fused kernel, each step's loss is checked on the host before the step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        self.lr, self.fused = lr, bool(optimizer.defaults.get("fused"))
        device = optimizer.param_groups[0]["params"][0].device
        self.flag = torch.zeros((), device=device)
        if self.fused:
            optimizer.found_inf = self.flag

    def watch(self, loss: torch.Tensor, epoch: int) -> None:
        """Look at one step's loss, before the step."""
        if self.fused:
            self.flag.masked_fill_(~torch.isfinite(loss.detach()), 1.0)
        elif not torch.isfinite(loss):
            raise self._diverged(f"the loss became {loss.item()}", epoch)

    def check(self, model: Model, epoch: int) -> None:
        """Look back over an epoch, at its end."""
        if self.fused and self.flag.item():
            raise self._diverged("the loss became NaN or infinite", epoch)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingDiverged(f"the weights became NaN or infinite in epoch {epoch}; "
                                   f"try a lower learning rate (e.g. --lr {self.lr / 10:g})")

    def _diverged(self, what: str, epoch: int) -> TrainingDiverged:
        return TrainingDiverged(f"{what} in epoch {epoch}; training stopped before the weights were touched. "
                                f"Try a lower learning rate (e.g. --lr {self.lr / 10:g})")


def training_loss(terms, config: TrainConfig, steps_per_epoch: int, step: int) -> torch.Tensor:
    """The batch's loss at optimizer step ``step``: ``terms.loss`` averaged over the batch, or, with free bits
    or a KL warm-up, the reconstruction plus the weighted KL of each latent dimension averaged over the
    batch and raised to at least ``free_bits`` nats, so that a dimension below that costs nothing more."""
    if not config.free_bits and not config.kl_warmup:
        return terms.loss.mean()
    kl = terms.kl_per_dim.mean(0).clamp(min=config.free_bits).sum()
    return terms.recon.mean() + kl_weight(config, config.epochs * steps_per_epoch, step) * kl


def fit(model: Model, data: Dataset | torch.Tensor, config: TrainConfig | None = None, *,
        device: torch.device | str | None = None, progress: bool = True,
        checkpoint: str | Path | None = None, resume: dict | None = None, overwrite: bool = False,
        callbacks: Sequence[Callback] = (), **settings) -> History:
    """Train ``model`` on a :class:`~vaelib.data.Dataset`'s training split, or on images ``[N, C, H, W]`` in
    [0, 1], with the recipe ``config`` (default ``TrainConfig(model=model.config)``) and any of its fields
    overridden by keyword (``fit(model, data, epochs=5, beta=0)``); return the per-epoch history.

    The history holds training-set means in nats per example, one per epoch, under ``HISTORY_KEYS``
    (``mean_sigma`` is 0 for an autoencoder; ``kl_per_dim`` is a list). ``checkpoint`` saves after every
    epoch, and refuses to replace another run's checkpoint unless ``overwrite``. ``resume`` (a checkpoint
    from :func:`~vaelib.checkpoints.load_checkpoint`) continues that run, on its own data only (else
    :class:`~vaelib.errors.DataError`). A NaN or infinite loss raises :class:`~vaelib.errors.TrainingDiverged`.
    """
    config, images, record = _recipe(model, data, config, settings, resume)
    device = get_device(device)
    model.to(device)
    images = images.to(device)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    optimizer = make_optimizer(model, config.lr, config.optimizer)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch, resume)
    run = Run(model, optimizer, scheduler, config, record)
    history = {**{k: [] for k in HISTORY_KEYS}, **(resume["history"] if resume else {})}
    start, divergence = resume["epoch"] if resume else 0, DivergenceCheck(optimizer, config.lr)
    callbacks = Callbacks([*([ProgressBar(type(model).__name__ + " epoch")] if progress else []),
                           *([SaveCheckpoint(checkpoint, overwrite=overwrite, resume=resume)] if checkpoint else []),
                           *callbacks])
    model.train()
    try:
        callbacks.on_fit_start(run, start + 1, steps_per_epoch)
        for epoch in range(start + 1, config.epochs + 1):
            order, noise = epoch_generators(config.seed, epoch, device)
            tally, t0 = _Tally(model.config.latent_dim, device), time.perf_counter()
            for x in batches(images, config.batch_size, generator=order, binarize=config.binarize, noise=noise):
                terms = model.loss_terms(x, config.beta, generator=noise, validate=False)
                loss = training_loss(terms, config, steps_per_epoch, scheduler.last_epoch)
                divergence.watch(loss, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                tally.add(terms)
                callbacks.on_batch_end()
            divergence.check(model, epoch)
            tally.record(history, len(images), time.perf_counter() - t0)
            callbacks.on_epoch_end(run, epoch, history)
    finally:
        callbacks.on_fit_end()
        model.eval()
    return history


def _recipe(model: Model, data: Dataset | torch.Tensor, config: TrainConfig | None, settings: dict,
            resume: dict | None) -> tuple[TrainConfig, torch.Tensor, dict]:
    """The config that will really be used, the training images it names, and the record of the data."""
    record = data_record(data)
    if resume is not None and resume.get("data") is not None and \
            resume["data"].get("fingerprint") != record["fingerprint"]:
        raise DataError(f"this run was trained on {describe(resume['data'])}, but is being resumed on "
                        f"{describe(record)}; resume it on the same data, or start a new run")
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"fit got unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    config = replace(config or TrainConfig(model=model.config), **settings)
    if config.model != model.config:
        raise ConfigError(f"the config describes another model ({config.model}) than the one given "
                          f"({model.config})")
    if isinstance(data, Dataset):
        config = replace(config, dataset=data.name)
        data = data.train.images
    check_images(data, "images")
    if len(data) == 0:
        raise ValueError("there are no images to train on (got an empty tensor)")
    return config, subset(data, config.n_train, config.seed), record


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
