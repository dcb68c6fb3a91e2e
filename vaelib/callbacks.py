"""Small named pieces that :func:`vaelib.training.fit` calls around its loop.

A callback overrides the hooks it needs. ``fit`` adds :class:`ProgressBar` when ``progress=True`` and
:class:`SaveCheckpoint` when given a ``checkpoint`` path; pass others in ``callbacks=[...]``, e.g.
``OnEpoch(lambda epoch, history: print(epoch, history["loss"][-1]))``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from vaelib.checkpoints import (History, check_writable, checkpoint_bytes, interrupts_deferred,
                                save_checkpoint)
from vaelib.errors import CheckpointError, OutputError
from vaelib.files import locked


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
    """Write the model, history, config, data record and optimizer to ``path`` after every epoch,
    atomically.

    Before training starts it checks that the checkpoint can be written there at all, takes the file's
    lock for the whole run (another run writing the same file is refused), and refuses to replace a
    checkpoint of another run: one is there, and it is not the ``resume`` checkpoint this run continues,
    unless ``overwrite``. ``data`` is the record :func:`~vaelib.training.fit` fills in."""

    def __init__(self, path: str | Path, config: Any, *, overwrite: bool = False,
                 resume: dict | None = None) -> None:
        self.path, self.config, self.overwrite, self.resume = Path(path), config, overwrite, resume
        self.data: dict | None = None
        self.last_saved: int | None = None  # the last epoch this run wrote to ``path``
        self._lock = ExitStack()

    def on_fit_start(self, model, first_epoch, epochs, batches_per_epoch) -> None:
        check_writable(self.path, checkpoint_bytes(model))
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

    def on_epoch_end(self, epoch, history, model, optimizer) -> None:
        with interrupts_deferred():  # an interrupt during the save arrives once ``last_saved`` is true
            save_checkpoint(self.path, model, history, self.config, optimizer=optimizer, epoch=epoch,
                            data=self.data)
            self.last_saved = epoch

    def on_fit_end(self) -> None:
        self._lock.close()


class OnEpoch(Callback):
    """Call ``fn(epoch, history)`` after every epoch (after the checkpoint is written)."""

    def __init__(self, fn: Callable[[int, History], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch, history, model, optimizer) -> None:
        self.fn(epoch, history)
