"""Small named pieces that :func:`vaelib.training.fit` calls around its loop.

A callback overrides the hooks it needs. ``fit`` adds :class:`ProgressBar` when ``progress=True`` and
:class:`SaveCheckpoint` when given a ``checkpoint`` path; pass others in ``callbacks=[...]``, e.g.
``OnEpoch(lambda epoch, history: print(epoch, history["loss"][-1]))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from vaelib.checkpoints import (History, check_writable, checkpoint_bytes, interrupts_deferred,
                                save_checkpoint)


class Callback:
    """Hooks called by ``fit``. Epochs are counted from 1."""

    def on_fit_start(self, model: torch.nn.Module, first_epoch: int, epochs: int,
                     batches_per_epoch: int) -> None:
        pass

    def on_batch_end(self) -> None:
        pass

    def on_epoch_end(self, epoch: int, history: History, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer) -> None:
        pass

    def on_fit_end(self) -> None:
        """Called however ``fit`` ends, after an error or an interrupt too."""


class ProgressBar(Callback):
    """A tqdm bar over every batch of the run, with the last epoch's mean loss."""

    def __init__(self, label: str = "epoch") -> None:
        self.label, self.bar, self.epochs = label, None, 0

    def on_fit_start(self, model, first_epoch, epochs, batches_per_epoch) -> None:
        self.epochs = epochs
        self.bar = tqdm(total=(epochs - first_epoch + 1) * batches_per_epoch, unit="batch",
                        desc=f"{self.label} {first_epoch}/{epochs}", mininterval=0.5)

    def on_batch_end(self) -> None:
        self.bar.update()

    def on_epoch_end(self, epoch, history, model, optimizer) -> None:
        self.bar.set_description(f"{self.label} {min(epoch + 1, self.epochs)}/{self.epochs}",
                                 refresh=False)
        self.bar.set_postfix(loss=f"{history['loss'][-1]:.1f}", refresh=False)

    def on_fit_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SaveCheckpoint(Callback):
    """Write the model, history, config and optimizer to ``path`` after every epoch, atomically.
    Before training starts it checks that the checkpoint can be written there at all."""

    def __init__(self, path: str | Path, config: Any) -> None:
        self.path, self.config = Path(path), config
        self.last_saved: int | None = None  # the last epoch this run wrote to ``path``

    def on_fit_start(self, model, first_epoch, epochs, batches_per_epoch) -> None:
        check_writable(self.path, checkpoint_bytes(model))

    def on_epoch_end(self, epoch, history, model, optimizer) -> None:
        with interrupts_deferred():  # an interrupt during the save arrives once ``last_saved`` is true
            save_checkpoint(self.path, model, history, self.config, optimizer=optimizer, epoch=epoch)
            self.last_saved = epoch


class OnEpoch(Callback):
    """Call ``fn(epoch, history)`` after every epoch (after the checkpoint is written)."""

    def __init__(self, fn: Callable[[int, History], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch, history, model, optimizer) -> None:
        self.fn(epoch, history)
