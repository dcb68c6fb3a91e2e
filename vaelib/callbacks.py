"""Small named pieces that :func:`vaelib.training.fit` calls around its loop.

A callback overrides the hooks it needs. ``fit`` adds :class:`ProgressBar` when ``progress=True`` and
:class:`SaveCheckpoint` when given a ``checkpoint`` path; pass others in ``callbacks=[...]``, e.g.
``OnEpoch(lambda epoch, history: print(epoch, history["loss"][-1]))``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from tqdm.auto import tqdm

from vaelib.checkpoints import check_writable, checkpoint_bytes, interrupts_deferred, save_checkpoint
from vaelib.errors import CheckpointError, OutputError
from vaelib.files import locked
from vaelib.models import Model
from vaelib.recipe import History, TrainConfig


class Run(NamedTuple):
    """What ``fit`` is training, for its callbacks: the model, its optimizer and learning-rate schedule,
    the recipe really used, and the record of the data (:func:`vaelib.data.data_record`)."""

    model: Model
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    data: dict


class Callback:
    """Hooks called by ``fit``. Epochs are counted from 1."""

    def on_fit_start(self, run: Run, first_epoch: int, batches_per_epoch: int) -> None:
        pass

    def on_batch_end(self) -> None:
        pass

    def on_epoch_end(self, run: Run, epoch: int, history: History) -> None:
        pass

    def on_fit_end(self) -> None:
        """Called however ``fit`` ends, after an error or an interrupt too."""


class Callbacks(Callback):
    """Several callbacks called as one, in their order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, run, first_epoch, batches_per_epoch) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(run, first_epoch, batches_per_epoch)

    def on_batch_end(self) -> None:
        for cb in self.callbacks:
            cb.on_batch_end()

    def on_epoch_end(self, run, epoch, history) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(run, epoch, history)

    def on_fit_end(self) -> None:
        for cb in self.callbacks:
            cb.on_fit_end()


class ProgressBar(Callback):
    """A tqdm bar over every batch of the run, with the last epoch's mean loss."""

    def __init__(self, label: str = "epoch") -> None:
        self.label, self.bar, self.epochs = label, None, 0

    def on_fit_start(self, run, first_epoch, batches_per_epoch) -> None:
        self.epochs = epochs = run.config.epochs
        self.bar = tqdm(total=(epochs - first_epoch + 1) * batches_per_epoch, unit="batch",
                        desc=f"{self.label} {first_epoch}/{epochs}", mininterval=0.5)

    def on_batch_end(self) -> None:
        self.bar.update()

    def on_epoch_end(self, run, epoch, history) -> None:
        self.bar.set_description(f"{self.label} {min(epoch + 1, self.epochs)}/{self.epochs}",
                                 refresh=False)
        self.bar.set_postfix(loss=f"{history['loss'][-1]:.1f}", refresh=False)

    def on_fit_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SaveCheckpoint(Callback):
    """Write the model, history, recipe, data record, optimizer and schedule to ``path`` after every
    epoch, atomically.

    Before training starts it checks that the checkpoint can be written there at all, takes the file's
    lock for the whole run (another run writing the same file is refused), and refuses to replace a
    checkpoint of another run: one is there, and it is not the ``resume`` checkpoint this run continues,
    unless ``overwrite``."""

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: dict | None = None) -> None:
        self.path, self.overwrite, self.resume = Path(path), overwrite, resume
        self.last_saved: int | None = None  # the last epoch this run wrote to ``path``
        self._lock = ExitStack()

    def on_fit_start(self, run, first_epoch, batches_per_epoch) -> None:
        check_writable(self.path, checkpoint_bytes(run.model))
        try:
            self._lock.enter_context(locked(self.path, wait=False))
        except OutputError as e:
            raise CheckpointError(str(e).replace("choose another path", "choose another checkpoint path")) from None
        if self.path.exists() and not self.overwrite and not self._continues():
            self._lock.close()
            raise CheckpointError(f"{self.path} already holds a checkpoint of another run; continue it (load "
                                  "it and pass resume=), choose another path, or pass overwrite=True to "
                                  "replace it")

    def _continues(self) -> bool:
        """Whether the file at ``path`` is the checkpoint this run resumes."""
        if self.resume is None:
            return False
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a file that cannot be read is not the one resumed
            return False
        return isinstance(ckpt, dict) and ckpt.get("checksum") == self.resume.get("checksum")

    def on_epoch_end(self, run, epoch, history) -> None:
        with interrupts_deferred():  # an interrupt during the save arrives once ``last_saved`` is true
            save_checkpoint(self.path, run.model, history, run.config, optimizer=run.optimizer, epoch=epoch,
                            data=run.data, scheduler=run.scheduler)
            self.last_saved = epoch

    def on_fit_end(self) -> None:
        self._lock.close()


class OnEpoch(Callback):
    """Call ``fn(epoch, history)`` after every epoch (after the checkpoint is written)."""

    def __init__(self, fn: Callable[[int, History], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, run, epoch, history) -> None:
        self.fn(epoch, history)
