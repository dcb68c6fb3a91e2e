"""The command line: what it prints, what it exits with, and what it leaves on disk."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from vaelib import cli
from vaelib.checkpoints import checkpoint_checksum, load_checkpoint

SMALL = ["--n-train", "256", "--latent-dim", "2", "--hidden", "32", "--no-progress"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in this process (fast), capturing what it prints and its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_python_dash_m_vaelib_runs_as_a_program(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vaelib", "train", "--epochs", "1", "--out",
                           str(tmp_path / "m.pt"), *SMALL], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["checkpoint"] == str(tmp_path / "m.pt")
    bad = subprocess.run([sys.executable, "-m", "vaelib", "evaluate", str(tmp_path / "none.pt")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "vae.pt"
    proc = run_cli("train", "--model", "vae", "--epochs", "2", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def ae_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "ae.pt"
    proc = run_cli("train", "--model", "ae", "--epochs", "1", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_train_prints_progress_and_ends_with_final_metrics(vae_ckpt):
    ckpt = torch.load(vae_ckpt, weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]["loss"]) == 2
    assert ckpt["train_config"]["model"]["latent_dim"] == 2
    proc = run_cli("train", "--epochs", "1", "--out", str(vae_ckpt.with_name("again.pt")), *SMALL)
    assert proc.returncode == 0
    assert "epoch   1/1" in proc.stdout
    final = last_json(proc.stdout)
    assert final["epochs"] == 1 and final["test_elbo"] < 0 and final["test_kl"] >= 0
    assert final["test_elbo"] == pytest.approx(-(final["test_recon"] + final["test_kl"]), rel=1e-6)


def test_evaluate_json_has_the_documented_keys_and_relations(vae_ckpt):
    proc = run_cli("evaluate", str(vae_ckpt), "--iw-samples", "20", "--n-test", "200", "--json")
    assert proc.returncode == 0, proc.stderr
    m = last_json(proc.stdout)
    assert m["elbo"] < 0 and m["recon"] >= 0 and m["kl"] >= 0
    assert -m["elbo"] == pytest.approx(m["recon"] + m["kl"], rel=1e-9)
    assert m["iw_loglik"] >= m["elbo"]
    assert m["latent_dim"] == 2 and 0 <= m["active_units"] <= 2


def test_sample_writes_a_png_grid(vae_ckpt, tmp_path):
    out = tmp_path / "grid.png"
    proc = run_cli("sample", str(vae_ckpt), "--n", "16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_where_it_stopped(vae_ckpt, tmp_path):
    copy = tmp_path / "resume.pt"
    copy.write_bytes(vae_ckpt.read_bytes())
    proc = run_cli("train", "--resume", str(copy), "--epochs", "3", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["epochs"] == 3
    _, ckpt = load_checkpoint(copy)
    first = torch.load(vae_ckpt, weights_only=True)["history"]["loss"]
    assert ckpt["epoch"] == 3 and ckpt["history"]["loss"][:2] == first


@pytest.mark.parametrize("args, needle", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "-5"], "--batch-size"),
    (["train", "--latent-dim", "0"], "--latent-dim"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--model", "gan"], "'ae', 'vae'"),
    (["train", "--dataset", "cifar"], "'mnist', 'fashion-mnist'"),
    (["sample", "x.pt", "--n", "0"], "--n"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, needle):
    assert_one_line_error(run_cli(*args), 2, needle)


def test_damaged_checkpoints_are_one_line_runtime_errors(vae_ckpt, ae_ckpt, tmp_path):
    missing = tmp_path / "missing.pt"
    assert_one_line_error(run_cli("evaluate", str(missing)), 1, "no checkpoint", "train")

    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(4096))
    assert_one_line_error(run_cli("evaluate", str(noise)), 1, "damaged")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(vae_ckpt.read_bytes()[:5000])
    assert_one_line_error(run_cli("sample", str(truncated)), 1, "truncated")

    other_arch = tmp_path / "other_arch.pt"
    ckpt = torch.load(vae_ckpt, weights_only=True)
    ckpt["model_config"]["latent_dim"] = 7
    torch.save(ckpt, other_arch)  # the checksum, written with the old configuration, catches the edit
    assert_one_line_error(run_cli("evaluate", str(other_arch)), 1, "damaged", "checksum")
    ckpt["checksum"] = checkpoint_checksum(ckpt)  # as a tool would that also rewrote the checksum
    torch.save(ckpt, other_arch)
    assert_one_line_error(run_cli("evaluate", str(other_arch)), 1, "architecture")

    assert_one_line_error(run_cli("train", "--resume", str(ae_ckpt), "--model", "vae"), 1,
                          "autoencoder", "VAE")


class Payload:
    """Pickles as a call to os.system: loading it with plain pickle would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "state_dict": {}, "x": Payload(f"touch {marker}")}, evil)
    assert_one_line_error(run_cli("evaluate", str(evil)), 1, "refused")
    assert not marker.exists()


def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(tmp_path):
    out = tmp_path / "interrupted.pt"
    proc = subprocess.Popen([sys.executable, "-m", "vaelib", "train", "--epochs", "1000", "--out",
                             str(out), "--latent-dim", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists(), "no checkpoint appeared within 60 s"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr, stderr
    model, ckpt = load_checkpoint(out)
    assert 1 <= ckpt["epoch"] < 1000 and len(ckpt["history"]["loss"]) == ckpt["epoch"]
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint file was left behind"


def test_divergence_is_reported_and_the_last_good_checkpoint_kept(tmp_path, monkeypatch, capsys):
    out = tmp_path / "diverge.pt"
    real_step = torch.optim.Adam.step

    def step_then_blow_up_once_epoch_one_is_saved(self, *args, **kwargs):
        # A real fault, as a far too large step makes: once the checkpoint of epoch 1 is on disk, the
        # weights turn infinite. What the run reports is vaelib's own finding, in its own words.
        result = real_step(self, *args, **kwargs)
        if out.exists():
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_blow_up_once_epoch_one_is_saved)
    code = cli.main(["train", "--epochs", "3", "--lr", "0.002", "--out", str(out), *SMALL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "epoch 2" in err[0] and "--lr 0.0002" in err[0], err[0]  # a tenth of the rate it ran at
    assert "holds the last completed epoch (1)" in err[0], err[0]
    model, ckpt = load_checkpoint(out)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_evaluate_uses_the_dataset_the_checkpoint_was_trained_on(tmp_path, mnist):
    """Regression: a model fit on Fashion-MNIST in Python used to be evaluated on MNIST."""
    from vaelib import VAE, fit, load_dataset
    from vaelib.data import DEBIAN_FASHION_DIR

    if not (DEBIAN_FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    fashion = load_dataset("fashion-mnist", root=tmp_path, download=False, verbose=False)
    fit(VAE(latent_dim=2, hidden=(16,)), fashion, epochs=1, n_train=256, progress=False,
        checkpoint=tmp_path / "f.pt")
    proc = run_cli("evaluate", str(tmp_path / "f.pt"), "--iw-samples", "0", "--n-test", "100", "--json")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["dataset"] == "fashion-mnist"


def test_evaluate_asks_for_the_dataset_when_the_checkpoint_does_not_name_it(tmp_path, mnist):
    from vaelib import VAE, fit

    fit(VAE(latent_dim=2, hidden=(16,)), mnist.train.images[:256], epochs=1, progress=False,
        checkpoint=tmp_path / "bare.pt")
    assert_one_line_error(run_cli("evaluate", str(tmp_path / "bare.pt")), 1, "--dataset")
    proc = run_cli("evaluate", str(tmp_path / "bare.pt"), "--dataset", "mnist", "--iw-samples", "0",
                   "--json")
    assert proc.returncode == 0 and last_json(proc.stdout)["dataset"] == "mnist"


def test_only_vaelibs_own_errors_become_one_line_messages(tmp_path, monkeypatch):
    """A setting that cannot work is a vaelib error and one line; a bug, here a ValueError raised inside training,
    keeps its traceback instead of passing for a message written for the user."""
    monkeypatch.setenv("VAELIB_OFFLINE", "maybe")
    assert_one_line_error(run_cli("train", "--epochs", "1", "--out", str(tmp_path / "a.pt"), *SMALL), 1,
                          "VAELIB_OFFLINE='maybe' is neither on nor off")
    monkeypatch.setenv("VAELIB_OFFLINE", "1")

    def broken(*args, **kwargs):
        raise ValueError("a bug inside vaelib")

    monkeypatch.setattr(cli, "fit", broken)
    with pytest.raises(ValueError, match="a bug inside vaelib"):
        cli.main(["train", "--epochs", "1", "--out", str(tmp_path / "b.pt"), *SMALL])
