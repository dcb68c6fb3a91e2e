"""Checkpoints: written atomically, read safely, checked for damage.

A checkpoint is one ``torch.save`` zip holding the model's configuration and weights, the training
configuration that was really used, the data it was trained on (name, source, size and a fingerprint of
the images), the per-epoch history and, when training can continue, the optimizer's and the learning-rate
schedule's state, with a SHA-256 checksum of all of it.

:func:`save_checkpoint` writes through :func:`vaelib.files.write_atomic`: a temporary file in the same
folder renamed into place, so a crash leaves the previous checkpoint (or none), never half a file; only a
regular file, through symlinks, keeping its mode, under the file's lock. Ctrl-C, SIGTERM or SIGHUP during
the write is held back until the write is done, so an interrupt never damages a save. :func:`load_checkpoint` reads
with ``torch.load(weights_only=True)``, so a file that carries pickled code is refused and its code never
runs; then it checks every field and the checksum.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import signal
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

import vaelib
from vaelib.device import get_device
from vaelib.errors import CheckpointError, OutputError, VaelibError, first_line
from vaelib.files import target, write_atomic
from vaelib.models import Model, ModelConfig, build_model
from vaelib.recipe import History, TrainConfig

# Format 5: the learning-rate schedule's state. Format 4 (the data trained on, and a checksum of every field)
# is still read: it has no schedule state, and a resumed run finds the schedule's step from its epoch.
CHECKPOINT_FORMAT = 5
READ_FORMATS = (4, 5)
FIELDS = {"format_version": int, "vaelib_version": str, "model_config": dict, "train_config": dict,
          "data": (dict, type(None)), "history": dict, "epoch": int, "state_dict": dict,
          "optimizer": (dict, type(None)), "scheduler": (dict, type(None)), "checksum": str}


def tensor_checksum(*objects: Any) -> str:
    """SHA-256 of every tensor and value in nested dicts and lists, in a fixed order."""
    h = hashlib.sha256()

    def walk(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(obj.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj, key=repr):
                h.update(repr(key).encode())
                walk(obj[key])
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        else:
            h.update(repr(obj).encode())

    for obj in objects:
        walk(obj)
    return h.hexdigest()


def checkpoint_checksum(ckpt: dict) -> str:
    """The checksum of every field of a checkpoint but the checksum itself."""
    return tensor_checksum({k: v for k, v in ckpt.items() if k != "checksum"})


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About how large a checkpoint of ``model`` with Adam's state is: three copies of the weights."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters()) + 1_000_000


def check_writable(path: str | Path, n_bytes: int = 0) -> Path:
    """Check, before any training, that a checkpoint of about ``n_bytes`` can be written to ``path``:
    a regular file or none (not a folder, a device or a FIFO), in a folder that exists (or can be made)
    and takes new files, with room for two copies: every save after the first writes the new checkpoint
    beside the old one before it replaces it. Raises :class:`~vaelib.errors.CheckpointError` saying what
    to change."""
    path = Path(path)
    try:
        real = target(path)
    except OutputError as e:
        raise CheckpointError(f"{e} (for the checkpoint)".replace("choose another path",
                                                                  "choose another --out")) from None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(f"cannot write a checkpoint in {real.parent}: {e.strerror or e}; "
                              "choose another --out") from None
    old = real.stat().st_size if real.is_file() else 0
    needed = max(n_bytes, 2 * n_bytes - old)  # the old file's room is reused once it is replaced
    free = shutil.disk_usage(real.parent).free
    if free < needed:
        raise CheckpointError(f"only {free / 1e6:.1f} MB free in {real.parent}, and saving a checkpoint "
                              f"needs about {needed / 1e6:.1f} MB (the new copy beside the old); free some "
                              "space or choose another --out")
    return path


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back until the block is done, then deliver the first (main thread
    only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    signals = [signal.SIGINT] + [getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                                 if hasattr(signal, name)]
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in received[:1]:
            handler = previous[s]
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(s)


def save_checkpoint(path: str | Path, model: Model, history: History, config: TrainConfig,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int | None = None,
                    data: dict | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Path:
    """Write ``model``, its ``history``, its training ``config``, a record of its ``data`` (see
    :func:`vaelib.data.data_record`) and, for a run that can continue, its ``optimizer`` and learning-rate
    ``scheduler`` to ``path`` atomically; return the path.

    A failed write raises :class:`~vaelib.errors.CheckpointError` and leaves the previous checkpoint as
    it was. Temporary files that a killed run left beside ``path`` are removed first.
    """
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "vaelib_version": vaelib.__version__,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "data": data,
        "history": history,
        "epoch": len(history["loss"]) if epoch is None else epoch,
        "state_dict": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    payload["checksum"] = checkpoint_checksum(payload)
    try:
        with interrupts_deferred():
            write_atomic(path, lambda f: torch.save(payload, f))
    except OutputError as e:
        raise CheckpointError(f"could not write the checkpoint: {e}") from None
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        raise CheckpointError(f"could not write the checkpoint {path}: {_reason(e)}; the previous "
                              "checkpoint, if any, is kept") from None
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    expect_kind: str | None = None) -> tuple[Model, dict[str, Any]]:
    """Load ``(model, checkpoint)`` safely, the model in eval mode on ``device``.

    Every failure (missing, damaged, truncated, unsafe, a field missing or of the wrong type, a
    checksum that does not match, another architecture, another model kind) raises
    :class:`~vaelib.errors.CheckpointError` with what to do.
    """
    device = get_device(device or "cpu")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with "
                              f"`python -m vaelib train --out {path}`")
    damaged = f"{path} is damaged, truncated or not a PyTorch checkpoint and cannot be read"
    retrain = "; retrain it or restore a good copy"
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # every checkpoint torch.save writes is a zip archive
                raise CheckpointError(damaged + retrain)
            f.seek(0)
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled Python objects, not just weights and numbers; "
                              "it was refused and none of its code was run. Use a checkpoint "
                              "written by vaelib") from None
    except (PermissionError, IsADirectoryError) as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}; check its permissions") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            AttributeError, IndexError, TypeError):
        raise CheckpointError(damaged + retrain) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a vaelib checkpoint; write one with "
                              "`python -m vaelib train --out PATH`")
    if ckpt["format_version"] not in READ_FORMATS:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format_version']}, this vaelib "
                              f"reads formats {' and '.join(map(str, READ_FORMATS))}; retrain it with this version")
    for key, kind in FIELDS.items():
        if key == "scheduler" and ckpt["format_version"] == 4:
            continue
        if key not in ckpt:
            raise CheckpointError(f"{path} is damaged: it has no {key!r}{retrain}")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(f"{path} is damaged: its {key!r} is a {type(ckpt[key]).__name__}{retrain}")
    if ckpt["checksum"] != checkpoint_checksum(ckpt):
        raise CheckpointError(f"{path} is damaged: its contents (weights, configuration or history) do not "
                              f"match the checksum written with them{retrain}")
    ckpt.setdefault("scheduler", None)  # format 4
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
        TrainConfig.from_dict(ckpt["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a damaged configuration ({first_line(e)}){retrain}") from None
    _check_history(path, ckpt)
    if expect_kind is not None and config.kind != expect_kind:
        names = {"ae": "an autoencoder", "vae": "a VAE"}
        raise CheckpointError(f"{path} holds {names[config.kind]}, but this needs "
                              f"{names[expect_kind]}; train one with --model {expect_kind}")
    # The architecture is built on the meta device first, with no memory, and compared with the weights,
    # so a configuration that names huge layers the weights do not have allocates nothing.
    with torch.device("meta"):
        skeleton = build_model(config)
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if shapes != {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None
                  for k, v in ckpt["state_dict"].items()}:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it names (made for "
                              "another model or edited?)")
    try:
        model = build_model(config)
        model.load_state_dict(ckpt["state_dict"])
    except VaelibError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it names (made for "
                              f"another model or edited?): {first_line(e)}") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; retrain it")
    return model.to(device).eval(), ckpt


def _check_history(path: Path, ckpt: dict) -> None:
    history, epoch = ckpt["history"], ckpt["epoch"]
    losses = history.get("loss")
    if epoch < 0 or not isinstance(losses, list) or len(losses) != epoch:
        raise CheckpointError(f"{path} is damaged: its history does not hold the {epoch} epochs it "
                              "claims; retrain it or restore a good copy")
    for key, values in history.items():
        if not isinstance(values, list):
            raise CheckpointError(f"{path} is damaged: its history's {key!r} is not a list")


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or first_line(e)
