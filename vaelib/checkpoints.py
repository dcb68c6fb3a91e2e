"""Checkpoints: written atomically, read safely.

A checkpoint is one ``torch.save`` zip holding the model's configuration and weights, the training
configuration that was really used, the per-epoch history and, when training can continue, the
optimizer's state. :func:`save_checkpoint` writes it to a temporary file in the same folder and renames
it into place, so a crash or Ctrl-C mid-write leaves the previous checkpoint (or none), never half a file.
:func:`load_checkpoint` reads with ``torch.load(weights_only=True)``, so a file that carries pickled code
is refused and its code never runs.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

import vaelib
from vaelib.errors import CheckpointError
from vaelib.models import Model, ModelConfig, build_model

# Format 2: the sampling noise is reseeded every epoch from (seed, epoch), so no RNG state is stored.
CHECKPOINT_FORMAT = 2
History = dict[str, list]


def save_checkpoint(path: str | Path, model: Model, history: History, config: Any,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int | None = None) -> Path:
    """Write ``model``, its ``history`` and its training ``config`` (a
    :class:`~vaelib.training.TrainConfig`) to ``path`` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "vaelib_version": vaelib.__version__,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "history": history,
        "epoch": len(history["loss"]) if epoch is None else epoch,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    expect_kind: str | None = None) -> tuple[Model, dict[str, Any]]:
    """Load ``(model, checkpoint)`` safely, the model in eval mode on ``device``.

    Every failure (missing, damaged, truncated, unsafe, another architecture, another model kind)
    raises :class:`~vaelib.errors.CheckpointError` with what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with "
                              f"`python -m vaelib train --out {path}`")
    damaged = (f"{path} is damaged, truncated or not a PyTorch checkpoint and cannot be read; "
               "retrain it or restore a good copy")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every checkpoint torch.save writes is a zip archive
            raise CheckpointError(damaged)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled Python objects, not just weights and numbers; "
                              "it was refused and none of its code was run. Use a checkpoint "
                              "written by vaelib") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            AttributeError, IndexError, TypeError):
        raise CheckpointError(damaged) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a vaelib checkpoint; write one with "
                              "`python -m vaelib train --out PATH`")
    if ckpt["format_version"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format_version']}, this vaelib "
                              f"reads format {CHECKPOINT_FORMAT}; retrain it with this version")
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a damaged model configuration ({first_line(e)})") from None
    if expect_kind is not None and config.kind != expect_kind:
        names = {"ae": "an autoencoder", "vae": "a VAE"}
        raise CheckpointError(f"{path} holds {names[config.kind]}, but this needs "
                              f"{names[expect_kind]}; train one with --model {expect_kind}")
    model = build_model(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it names (made for "
                              f"another model or edited?): {first_line(e)}") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; retrain it")
    return model.to(device).eval(), ckpt


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
