"""Training: seeding, device choice, ``fit``, checkpoints and the trained-model cache (chapter 1 on).

``fit`` trains an :class:`~vaelib.models.Autoencoder` or :class:`~vaelib.models.VAE` on an in-memory
image tensor and returns a per-epoch history of the terms of the objective. With a checkpoint path it
writes one atomically after every epoch; a NaN or infinite loss stops training at once, before any
weight is touched, and the last good checkpoint is kept.

:func:`train_or_load` caches trained models under a key made from the full configuration, so a chapter
that needs a model an earlier chapter trained loads it in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

import vaelib
from vaelib.data import Dataset, batches, cache_dir, check_dataset_name
from vaelib.errors import CheckpointError, TrainingDiverged
from vaelib.losses import bernoulli_nll, check_images, gaussian_kl_per_dim
from vaelib.models import VAE, Model, ModelConfig, build_model

CHECKPOINT_FORMAT = 1
History = dict[str, list]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch: the one place vaelib touches global random state."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or ``prefer``, e.g. ``"cpu"``), else the CPU. Chosen once, passed along."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_quick() -> bool:
    """True when ``$VAELIB_QUICK=1``: chapters shrink data and epochs to run in seconds."""
    return os.environ.get("VAELIB_QUICK", "0") == "1"


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe. Its :meth:`key` names the cached model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    n_train: int | None = None
    binarize: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", check_dataset_name(self.dataset))
        _check_hyper(self.epochs, self.batch_size, self.lr, self.beta)
        if self.n_train is not None and self.n_train <= 0:
            raise ValueError(f"n_train must be positive, got {self.n_train}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"])})

    def key(self, data_source: str = "") -> str:
        blob = json.dumps({"config": self.to_dict(), "source": data_source,
                           "format": CHECKPOINT_FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_hyper(epochs: int, batch_size: int, lr: float, beta: float) -> None:
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, using the fused kernel when this PyTorch has one for the device."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def fit(
    model: Model,
    images: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 1.0,
    seed: int = 0,
    binarize: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    config: TrainConfig | None = None,
    resume: dict | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` on ``images [N, 1, 28, 28]`` in [0, 1]; return the per-epoch history.

    History keys (one entry per epoch, training-set means, nats per example): ``loss`` (what was
    minimised: recon + beta * KL), ``recon``, ``kl``, ``elbo``, ``mean_sigma`` (the encoder's
    average standard deviation; 0 for an autoencoder), ``kl_per_dim`` (a list per epoch),
    ``seconds`` and ``samples_per_s``.

    ``checkpoint``: write ``model + history + config`` there atomically after every epoch.
    ``resume``: a checkpoint dict from :func:`load_checkpoint`, to continue where it stopped.
    Raises :class:`~vaelib.errors.TrainingDiverged` on a NaN or infinite loss.
    """
    _check_hyper(epochs, batch_size, lr, beta)
    check_images(images, "images")
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    images = images.to(device)
    is_vae = isinstance(model, VAE)
    config = config or TrainConfig(model=model.config, epochs=epochs, batch_size=batch_size, lr=lr,
                                   beta=beta, seed=seed, binarize=binarize)
    optimizer = make_optimizer(model, lr)
    history: History = {k: [] for k in ("loss", "recon", "kl", "elbo", "mean_sigma", "kl_per_dim",
                                        "seconds", "samples_per_s")}
    start = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        history = resume["history"]
        start = resume["epoch"]
        torch.set_rng_state(resume["rng_state"].cpu())
    else:
        torch.manual_seed(seed)

    n_batches = math.ceil(len(images) / batch_size)
    # tqdm.auto's notebook bar ignores $TQDM_DISABLE, which the book build sets so that no half-drawn
    # progress widget ends up in the HTML; honour it here.
    progress = progress and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")
    bar = tqdm(total=(epochs - start) * n_batches, disable=not progress, unit="batch",
               desc=f"{'VAE' if is_vae else 'AE'} epoch {start + 1}/{epochs}", mininterval=0.5)
    model.train()
    try:
        for epoch in range(start, epochs):
            bar.set_description(f"{'VAE' if is_vae else 'AE'} epoch {epoch + 1}/{epochs}")
            order = torch.Generator().manual_seed(seed * 100_003 + epoch)
            sums = torch.zeros(4, device=device)  # loss, recon, kl, sigma (sums over examples)
            kl_dims = torch.zeros(model.config.latent_dim, device=device)
            t0 = time.perf_counter()
            for x in batches(images, batch_size, generator=order, binarize=binarize):
                if is_vae:
                    out = model(x)
                    recon = bernoulli_nll(out.logits, x, validate=False)       # [batch]
                    kl_d = gaussian_kl_per_dim(out.mu, out.logvar)              # [batch, latent]
                    loss = (recon + beta * kl_d.sum(1)).mean()
                else:
                    recon = bernoulli_nll(model(x), x, validate=False)
                    loss = recon.mean()
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss.item()} in epoch {epoch + 1}; training stopped before "
                        f"the weights were touched. Try a lower learning rate (e.g. --lr {lr / 10:g})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    n = len(x)
                    if is_vae:
                        kl_dims += kl_d.sum(0)
                        sigma = torch.exp(0.5 * out.logvar).mean(1).sum()
                        sums += torch.stack([loss.detach() * n, recon.sum(), kl_d.sum(), sigma])
                    else:
                        sums[:2] += loss.detach() * n
                bar.update()
            seconds = time.perf_counter() - t0
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingDiverged(f"the weights became NaN or infinite in epoch {epoch + 1}; "
                                       f"try a lower learning rate (e.g. --lr {lr / 10:g})")
            loss_m, recon_m, kl_m, sigma_m = (sums / len(images)).tolist()
            history["loss"].append(loss_m)
            history["recon"].append(recon_m)
            history["kl"].append(kl_m)
            history["elbo"].append(-(recon_m + kl_m))
            history["mean_sigma"].append(sigma_m)
            history["kl_per_dim"].append((kl_dims / len(images)).tolist())
            history["seconds"].append(seconds)
            history["samples_per_s"].append(len(images) / seconds)
            bar.set_postfix(loss=f"{loss_m:.1f}", refresh=False)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, history, config, optimizer=optimizer, epoch=epoch + 1)
            if on_epoch is not None:
                on_epoch(epoch + 1, history)
    finally:
        bar.close()
        model.eval()
    return history


# --- checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, model: Model, history: History, config: TrainConfig,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int | None = None) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then rename.

    A crash or Ctrl-C mid-write leaves the previous checkpoint (or none), never half a file.
    """
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
        "rng_state": torch.get_rng_state(),
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
    """Load ``(model, checkpoint)`` safely.

    Always uses ``torch.load(weights_only=True)``: a file that carries pickled code is refused and its
    code never runs. Every failure (missing, damaged, truncated, unsafe, another architecture, another
    model kind) raises :class:`~vaelib.errors.CheckpointError` with what to do.
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
        raise CheckpointError(f"{path} has a damaged model configuration ({_first_line(e)})") from None
    if expect_kind is not None and config.kind != expect_kind:
        names = {"ae": "an autoencoder", "vae": "a VAE"}
        raise CheckpointError(f"{path} holds {names[config.kind]}, but this needs "
                              f"{names[expect_kind]}; train one with --model {expect_kind}")
    model = build_model(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it names (made for "
                              f"another model or edited?): {_first_line(e)}") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; retrain it")
    return model.to(device).eval(), ckpt


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


# --- the trained-model cache ---------------------------------------------------------------------

def _data_fingerprint(data: Dataset) -> str:
    """Identifies the training images themselves, not how they arrived: a download and the cache it
    writes are the same data (``data.source`` differs), a binarized copy is not. Hashes the labels and
    a strided sample of about 1,000 images, a few milliseconds even for the full 60,000."""
    h = hashlib.sha256(data.train.labels.cpu().numpy().tobytes())
    step = max(1, len(data.train) // 1000)
    h.update(data.train.images[::step].contiguous().cpu().numpy().tobytes())
    return f"{len(data.train)}:{h.hexdigest()[:16]}"


def train_or_load(config: TrainConfig, data: Dataset | None = None, *,
                  device: torch.device | str | None = None, progress: bool = True,
                  cache: str | Path | None = None) -> tuple[Model, History]:
    """The model ``config`` describes, trained, from the cache if an identical run was done before.

    The cache key covers the whole config and the training data, so changing anything (beta, epochs,
    the dataset, quick mode's smaller subset) trains a new model. A run that was interrupted resumes
    from its last completed epoch.
    """
    from vaelib.data import load_dataset

    data = data if data is not None else load_dataset(config.dataset)
    if data.name != config.dataset:
        raise ValueError(f"config asks for {config.dataset} but data is {data.name}")
    train = data.train.subset(config.n_train, seed=config.seed)
    folder = Path(cache) if cache is not None else cache_dir() / "models"
    path = folder / f"{config.model.kind}-{config.key(_data_fingerprint(data))}.pt"
    device = torch.device(device) if device is not None else get_device()
    resume = None
    if path.exists():
        try:
            model, ckpt = load_checkpoint(path, device=device)
            if ckpt["epoch"] >= config.epochs:
                return model, ckpt["history"]
            resume = ckpt
        except CheckpointError as e:
            print(f"vaelib: ignoring a damaged cached model ({e}); training again")
            resume = None
    if resume is None:
        seed_everything(config.seed)
        model = build_model(config.model)
    history = fit(model, train.images, epochs=config.epochs, batch_size=config.batch_size,
                  lr=config.lr, beta=config.beta, seed=config.seed, binarize=config.binarize,
                  device=device, progress=progress, checkpoint=path, config=config, resume=resume)
    return model, history



# --- the book's models ---------------------------------------------------------------------------

# The models the chapters share, by name. A chapter that needs one calls ``book_model(name)``: the first
# chapter to ask trains it, later chapters load it from the cache.
BOOK_MODELS: dict[str, dict] = {
    "ae-2d": dict(kind="ae", latent_dim=2),
    "ae-20d": dict(kind="ae", latent_dim=20),
    "vae-2d-nokl": dict(kind="vae", latent_dim=2, beta=0.0),
    "vae-2d": dict(kind="vae", latent_dim=2),
    "vae-20d-nokl": dict(kind="vae", latent_dim=20, beta=0.0),
    "vae-20d": dict(kind="vae", latent_dim=20),
    "conv-vae-20d": dict(kind="vae", latent_dim=20, arch="conv", hidden=(256,)),
}
BOOK_EPOCHS = 15        # reader mode
QUICK_EPOCHS = 4        # VAELIB_QUICK=1
QUICK_N_TRAIN = 3000    # VAELIB_QUICK=1


def book_config(kind: str = "vae", latent_dim: int = 2, *, beta: float = 1.0, arch: str = "mlp",
                hidden: tuple[int, ...] = (400,), epochs: int = BOOK_EPOCHS,
                quick_epochs: int = QUICK_EPOCHS, dataset: str | None = None, lr: float = 1e-3,
                batch_size: int = 128, seed: int = 0) -> TrainConfig:
    """The training recipe the chapters use, scaled down when :func:`is_quick` (fewer epochs on a
    ``QUICK_N_TRAIN`` subset), so one code path serves both the reader and the test run."""
    from vaelib.data import default_dataset

    quick = is_quick()
    return TrainConfig(model=ModelConfig(kind=kind, arch=arch, latent_dim=latent_dim, hidden=hidden),
                       dataset=dataset or default_dataset(), epochs=quick_epochs if quick else epochs,
                       batch_size=batch_size, lr=lr, beta=beta, seed=seed,
                       n_train=QUICK_N_TRAIN if quick else None)


def book_model(name: str, data: Dataset | None = None, *, device: torch.device | str | None = None,
               progress: bool = True) -> tuple[Model, History]:
    """One of :data:`BOOK_MODELS`, trained with :func:`book_config` (cached across chapters)."""
    if name not in BOOK_MODELS:
        raise ValueError(f"unknown book model {name!r}; choose one of: {', '.join(BOOK_MODELS)}")
    return train_or_load(book_config(**BOOK_MODELS[name]), data, device=device, progress=progress)
