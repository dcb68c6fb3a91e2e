"""The book's policy, in one place: its switches, its models and the cache of trained models.

The chapters, the command line and the benchmarks read their settings from here, and nothing else in
vaelib reads an environment variable. The switches:

- ``VAELIB_QUICK=1``: quick mode, for tests: fewer epochs on a ``QUICK_N_TRAIN``-image subset;
- ``VAELIB_DATASET``: ``mnist`` (default) or ``fashion-mnist``;
- ``VAELIB_DATA``: the folder for cached datasets and trained models (default ``~/.cache/vaelib``);
- ``VAELIB_OFFLINE=1``: never try to download; use the offline copies;
- ``VAELIB_REQUIRE_FULL_DATA=1``: the offline 5,000-digit subset of MNIST is an error instead of a fallback
  (the publishing workflow sets it, so no book is published on the subset);
- ``TQDM_DISABLE=1``: no progress bars (the book build sets it, so no half-drawn bar lands in the HTML);
- ``VAELIB_STUDENT=1``: the book build makes the student edition, the HTML and the reader notebooks without
  the exercises' solutions (``make book-student``).

:func:`model` gives one of :data:`BOOK_MODELS`, trained with the book's recipe. The first chapter to
ask trains it and later chapters load it: :func:`train_or_load` caches trained models under a key made
from the full configuration and the training data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

import vaelib
from vaelib.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from vaelib.data import Dataset, check_dataset_name, default_root, load_dataset
from vaelib.device import get_device
from vaelib.errors import CheckpointError, ConfigError, DataError
from vaelib.files import locked
from vaelib.glue import glue, glued  # noqa: F401 (the chapters' names)
from vaelib.models import LOGVAR_RANGE, Model, build_model
from vaelib.recipe import History, TrainConfig
from vaelib.training import fit, seed_everything

# The models the chapters share, by name: each one's recipe (the arguments of :func:`config`), the colour
# every figure draws it in, and the words the text and the legends name it by. The epochs are those each
# trains for in reader mode: at the peak rate BOOK_LR, the fewest that reach its test score under the old
# recipe (constant Adam at 0.001, 15 epochs) to within 1 nat. Higher candidate peaks (0.008, 0.011) needed
# fewer epochs but changed the training that chapters 2, 4 and 5 show, so BOOK_LR stays 0.005. Measured by
# benchmarks/time_to_quality.py (results in benchmarks/results/time_to_quality.json; the choice is explained
# in benchmarks/README.md).
class BookModel(NamedTuple):
    """One of the book's models: its ``recipe`` (keyword arguments of :func:`config`), its ``colour`` in
    every figure, and the ``words`` that name it in the text and in legends."""

    recipe: dict
    colour: str
    words: str


BOOK_MODELS: dict[str, BookModel] = {
    "ae-2d": BookModel(dict(kind="ae", latent_dim=2, epochs=5), "tab:green", "2-D autoencoder"),
    "ae-20d": BookModel(dict(kind="ae", latent_dim=20, epochs=5), "tab:brown", "20-D autoencoder"),
    "vae-2d-nokl": BookModel(dict(kind="vae", latent_dim=2, beta=0.0, epochs=6), "tab:red",
                             "2-D, reconstruction only"),
    "vae-2d": BookModel(dict(kind="vae", latent_dim=2, epochs=6), "tab:orange", "2-D, with the KL term"),
    "vae-20d-nokl": BookModel(dict(kind="vae", latent_dim=20, beta=0.0, epochs=5), "tab:purple",
                              "20-D, reconstruction only"),
    "vae-20d": BookModel(dict(kind="vae", latent_dim=20, epochs=5), "tab:blue", "20-D, with the KL term"),
    "conv-vae-20d": BookModel(dict(kind="vae", latent_dim=20, arch="conv", hidden=(256,), epochs=6), "tab:pink",
                              "20-D convolutional VAE"),
}
# The book's recipes: vaelib's (TrainConfig) with named overrides; each model above adds its own.
#: Reader mode, and the command line's: a warm-up, then a cosine decay from a higher peak rate.
READER = TrainConfig(lr=5e-3, schedule="cosine")
#: Quick mode (``VAELIB_QUICK=1``): a few epochs on a small subset, at TrainConfig's constant rate.
QUICK = TrainConfig(epochs=4, n_train=3000)
#: The 5,000-digit offline subset of MNIST keeps the recipe from before the schedule, TrainConfig's constant rate
#: for longer: on its 4,000 training images the reader's 5 or 6 epochs are under 200 steps, too few for chapters 2-5.
SUBSET = TrainConfig(epochs=15)
# Reader mode, for a recipe that names no epochs: the most an MLP above needs.
BOOK_EPOCHS = max(m.recipe["epochs"] for m in BOOK_MODELS.values() if m.recipe.get("arch", "mlp") == "mlp")
BOOK_LR, BOOK_BATCH_SIZE = READER.lr, READER.batch_size  # the names the chapters and benchmarks quote
QUICK_LR, QUICK_EPOCHS, QUICK_N_TRAIN = QUICK.lr, QUICK.epochs, QUICK.n_train


_ON, _OFF = ("1", "true", "yes", "y", "on"), ("", "0", "false", "no", "n", "off")


def _flag(name: str) -> bool:
    """A switch: on for 1, true, yes, y or on; off for 0, false, no, n, off or unset. Anything else is
    refused, so that a misspelt switch is never silently off."""
    value = os.environ.get(name, "").strip().lower()
    if value not in _ON + _OFF:
        raise ConfigError(f"{name}={os.environ[name]!r} is neither on nor off; set it to 1 (on) or 0 (off)")
    return value in _ON


def is_quick() -> bool:
    """True when ``$VAELIB_QUICK=1``: chapters shrink data and epochs to run in seconds."""
    return _flag("VAELIB_QUICK")


def dataset_name() -> str:
    """The dataset the book uses: ``$VAELIB_DATASET`` if set, else ``"mnist"``."""
    return check_dataset_name(os.environ.get("VAELIB_DATASET", "") or "mnist")


def cache_dir() -> Path:
    """Where datasets and trained models are cached: ``$VAELIB_DATA`` (a leading ``~`` is the home
    folder, as in a shell) or ``~/.cache/vaelib``."""
    return Path(os.environ.get("VAELIB_DATA", "") or default_root()).expanduser()


def offline() -> bool:
    """True when ``$VAELIB_OFFLINE=1``: no download is tried."""
    return _flag("VAELIB_OFFLINE")


def require_full_data() -> bool:
    """True when ``$VAELIB_REQUIRE_FULL_DATA=1``: :func:`dataset` refuses the offline subset of MNIST."""
    return _flag("VAELIB_REQUIRE_FULL_DATA")


def student_edition() -> bool:
    """True when ``$VAELIB_STUDENT=1``: the book is built without the exercises' solutions (the exercises and
    their checks stay)."""
    return _flag("VAELIB_STUDENT")


def show_progress() -> bool:
    """False when ``$TQDM_DISABLE`` is set (tqdm's notebook bar ignores it, so vaelib honours it)."""
    return not _flag("TQDM_DISABLE")


_ORDINALS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 6: "a sixth", 7: "a seventh", 8: "an eighth",
             9: "a ninth", 10: "a tenth"}
_POWERS = ["ten", "a hundred", "a thousand", "ten thousand", "a hundred thousand", "a million"]
_PARTS = ["a tenth", "a hundredth", "a thousandth", "a ten-thousandth", "a hundred-thousandth", "a millionth"]
_TIMES = ["", "tens of times", "hundreds of times", "thousands of times", "tens of thousands of times",
          "hundreds of thousands of times", "millions of times"]


def magnitude(ratio: float) -> str:
    """Words for how large ``ratio`` (a positive number, one quantity divided by another) is, so that the
    text never chooses them by hand: "about 3 times", "more than ten thousand times", "tens of thousands of
    times", "about a fifth", "less than a thousandth". Each phrase reads before "as large" ("about a fifth
    as wide") and is true of ``ratio`` itself: a multiple from 10 up is named by its power of ten ("more
    than a thousand times" below twice that power, "thousands of times" above), a part by the nearest
    simple fraction from a half to a tenth (within 10%), and below that by the power of ten it is under."""
    ratio = float(ratio)
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"magnitude needs a positive, finite ratio, not {ratio!r}")
    if ratio >= 10:
        power = min(int(math.log10(ratio)), len(_TIMES) - 1)
        if ratio >= 10 ** (len(_TIMES) - 1) * 10:
            return "more than ten million times"
        if ratio < 2 * 10 ** power:  # 11,967 is "more than ten thousand", not "tens of thousands"
            return f"more than {_POWERS[power - 1]} times"
        return _TIMES[power]
    if ratio >= 1:
        return f"about {ratio:.1f} times" if ratio < 3 else f"about {ratio:.0f} times"
    parts = 1 / ratio
    nearest = round(parts)
    if nearest in _ORDINALS and abs(parts - nearest) <= 0.1 * nearest:
        return f"about {_ORDINALS[nearest]}"
    if parts < 2:
        return f"about {ratio:.0%}"
    power = math.ceil(math.log10(parts)) - 1  # ratio < 10 ** -power
    if power < 1:
        return f"about {ratio:.0%}"
    return f"less than {_PARTS[min(power, len(_PARTS)) - 1]}"


def clamp_words(logvar: torch.Tensor) -> str:
    """A clause saying how many of a model's log-variances ``logvar`` (any shape) sit on the floor of
    :data:`vaelib.models.LOGVAR_RANGE`, the narrowest cloud ``vaelib.VAE`` can output: such a width was set
    by the clamp, not learned. For a sentence "In this run, ..." that has just named the model and the floor."""
    share = (logvar.detach() <= LOGVAR_RANGE[0]).float().mean().item()
    if share == 0:
        return "none of its test σs has reached that floor: every width is one the encoder learned"
    amount = f"{share:.0%}" if share >= 0.01 else f"{100 * share:.2g}%"
    return (f"{amount} of its test σs sit on that floor: for those, the encoder's own output lies below it, "
            "and the clamp, not training, set the width")


def run_note(data: Dataset):
    """A line that says what this run of a chapter was built on, for its first cell's output."""
    from IPython.display import Markdown

    offline = data.offline_subset
    what = {"mnist": "MNIST digits", "fashion-mnist": "Fashion-MNIST clothing images"}[data.name]
    where = f"the 5,000-digit offline subset of MNIST ({len(data.train):,} for training)" if offline \
        else f"{what}, {len(data.train):,} for training and {len(data.test):,} for testing"
    if is_quick():
        mode = (f"quick mode: models train for {QUICK_EPOCHS} epochs on {QUICK_N_TRAIN:,} of the images, so "
                "figures are rougher than the book's")
    elif offline:
        mode = (f"reader mode: on this subset the book's models train for {SUBSET.epochs} epochs at a constant "
                "learning rate")
    else:
        mode = (f"reader mode: the book's models train for {_reader_epochs()} epochs, with a cosine "
                "learning-rate schedule")
    return Markdown(f"*This page was built on {where}; {mode}.*")


def _reader_epochs() -> str:
    """The reader-mode epochs of the book's models, as a phrase: "8" or "6 to 8"."""
    epochs = sorted({m.recipe["epochs"] for m in BOOK_MODELS.values()})
    return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]} to {epochs[-1]}"


def setup_figures() -> None:
    """Sharp figures on high-DPI screens: inline PNGs at twice the resolution."""
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("png2x")


def dataset(name: str | None = None, **kwargs) -> Dataset:
    """:func:`vaelib.data.load_dataset` with the book's switches: ``name`` defaults to
    :func:`dataset_name`, the cache folder to :func:`cache_dir`, and ``VAELIB_OFFLINE`` is obeyed. With
    ``VAELIB_REQUIRE_FULL_DATA=1`` the offline subset of MNIST raises :class:`~vaelib.errors.DataError`."""
    data = load_dataset(name or dataset_name(), root=cache_dir(), download=not offline(), **kwargs)
    if require_full_data() and data.offline_subset:
        raise DataError(f"VAELIB_REQUIRE_FULL_DATA=1, but {data.name} came from {data.source}, not the full "
                        "dataset: check the network connection, or unset VAELIB_REQUIRE_FULL_DATA")
    return data


def config(kind: str = "vae", latent_dim: int = 2, *, epochs: int = BOOK_EPOCHS, quick_epochs: int = QUICK_EPOCHS,
           dataset: str | None = None, **settings) -> TrainConfig:
    """The training recipe the chapters use, for a model of ``kind`` with a ``latent_dim``-D code: :data:`READER`
    for ``epochs``, or in quick mode :data:`QUICK` for ``quick_epochs``, so that one code path serves both the
    reader and the test run. ``settings`` change any other field of the recipe (``beta``, ``lr``,
    ``schedule``, ``seed``, ...) or of its model (``arch``, ``hidden``)."""
    base = QUICK if is_quick() else READER
    model = {k: settings.pop(k) for k in ("arch", "hidden", "image_shape") if k in settings}
    return replace(base, model=replace(base.model, kind=kind, latent_dim=latent_dim, **model),
                   dataset=dataset or dataset_name(), epochs=quick_epochs if is_quick() else epochs, **settings)


def recipe(name: str, data: Dataset) -> TrainConfig:
    """The training recipe of book model ``name`` on ``data``, as :func:`model` trains it: :func:`config`
    with the model's settings, or on the offline subset of MNIST in reader mode :data:`SUBSET`'s."""
    _check_book_model(name)
    recipe = config(**BOOK_MODELS[name].recipe)
    if data.offline_subset and not is_quick():
        recipe = replace(recipe, epochs=SUBSET.epochs)
    return _for_data(recipe, data)


def at_most(config: TrainConfig, data: Dataset, n: int) -> TrainConfig:
    """``config`` trained on at most ``n`` of ``data``'s training images: unchanged where it trains on no
    more already (quick mode's subset, the offline MNIST), so that it keeps the cache key of that model."""
    return replace(config, n_train=n) if (config.n_train or len(data.train)) > n else config


def images_words(config: TrainConfig, data: Dataset) -> str:
    """How many of ``data``'s training images ``config`` trains on, for the text: "all 4,000 training
    images" or "6,000 of the 60,000 training images"."""
    total = len(data.train)
    n = min(config.n_train or total, total)
    return f"all {total:,} training images" if n == total else f"{n:,} of the {total:,} training images"


def _for_data(config: TrainConfig, data: Dataset) -> TrainConfig:
    """On the offline subset of MNIST, a config with the reader's rate and schedule trains at SUBSET's."""
    if data.offline_subset and (config.schedule, config.lr) == (READER.schedule, READER.lr):
        return replace(config, schedule=SUBSET.schedule, lr=SUBSET.lr)
    return config


def _check_book_model(name: str) -> None:
    if name not in BOOK_MODELS:
        raise ConfigError(f"unknown book model {name!r}; choose one of: {', '.join(BOOK_MODELS)}")


def model(name: str, data: Dataset | None = None, *, device: torch.device | str | None = None,
          progress: bool | None = None) -> tuple[Model, History]:
    """One of :data:`BOOK_MODELS`, trained with its :func:`recipe` (cached across chapters)."""
    _check_book_model(name)
    data = data if data is not None else dataset()
    return train_or_load(recipe(name, data), data, device=device, progress=progress)


def data_fingerprint(data: Dataset) -> str:
    """Identifies the training images themselves, not how they arrived: a download and the cache it
    writes are the same data (``data.source`` differs), a binarized copy is not. Hashes the labels and
    a strided sample of about 1,000 images, a few milliseconds even for the full 60,000."""
    h = hashlib.sha256(data.train.labels.cpu().numpy().tobytes())
    step = max(1, len(data.train) // 1000)
    h.update(data.train.images[::step].contiguous().cpu().numpy().tobytes())
    return f"{len(data.train)}:{h.hexdigest()[:16]}"


def cache_key(config: TrainConfig, data_fingerprint: str = "") -> str:
    """Names a cached model: a hash of the whole recipe, of the data it trains on (:func:`data_fingerprint`)
    and of the checkpoint format, so that a new format trains again rather than reading an old file."""
    blob = json.dumps({"config": config.to_dict(), "source": data_fingerprint, "format": CHECKPOINT_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_or_load(config: TrainConfig, data: Dataset | None = None, *,
                  device: torch.device | str | None = None, progress: bool | None = None,
                  cache: str | Path | None = None) -> tuple[Model, History]:
    """The model ``config`` describes, trained, from the cache if an identical run was done before.

    The cache key covers the whole config and the training data, so changing anything (beta, epochs,
    the dataset, quick mode's smaller subset) trains a new model. A run that was interrupted resumes
    from its last completed epoch. An entry written by another vaelib version is trained again. Two
    processes asking for the same model take turns: the second waits for the first, then loads its
    model. On the offline subset of MNIST a config with the reader's rate and schedule trains at
    :data:`SUBSET`'s constant rate instead.
    """
    if config.dataset is None:
        raise ConfigError("train_or_load needs a config that names its dataset")
    data = data if data is not None else dataset(config.dataset)
    if data.name != config.dataset:
        raise ConfigError(f"config asks for {config.dataset} but data is {data.name}")
    config = _for_data(config, data)
    folder = Path(cache) if cache is not None else cache_dir() / "models"
    path = folder / f"{config.model.kind}-{cache_key(config, data_fingerprint(data))}.pt"
    device = get_device(device)
    resume = None
    finished = _finished(path, config, device)
    if finished is not None:
        return finished
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):
        if path.exists():
            try:
                model, resume = load_checkpoint(path, device=device)
            except CheckpointError as e:
                print(f"vaelib: ignoring a damaged cached model ({e}); training again")
            if resume is not None and resume["vaelib_version"] != vaelib.__version__:
                print(f"vaelib: the cached model {path.name} was trained by vaelib {resume['vaelib_version']}, "
                      f"this is {vaelib.__version__}; training it again")
                resume = None
            if resume is not None and resume["epoch"] >= config.epochs:
                return model, resume["history"]
        if resume is None:
            seed_everything(config.seed)
            model = build_model(config.model)
        # The cache is this function's own: an entry it cannot use is replaced.
        history = fit(model, data, config, device=device, checkpoint=path, resume=resume, overwrite=True,
                      progress=show_progress() if progress is None else progress)
    return model, history


def _finished(path: Path, config: TrainConfig, device: torch.device) -> tuple[Model, History] | None:
    """The cached model at ``path`` if it is complete and of this vaelib version, read without taking
    its lock, so that a read-only cache serves its models (a writer replaces the file in one rename, so
    a reader never sees half of it); else ``None``."""
    if not path.exists():
        return None
    try:
        model, ckpt = load_checkpoint(path, device=device)
    except CheckpointError:
        return None
    if ckpt["vaelib_version"] != vaelib.__version__ or ckpt["epoch"] < config.epochs:
        return None
    return model, ckpt["history"]

