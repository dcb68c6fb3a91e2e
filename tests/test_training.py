"""Training (vaelib.training): fit, reproducibility, checkpoints, resuming, divergence, the model cache."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib.training as vtraining
from vaelib.data import Dataset
from vaelib.errors import CheckpointError, DataError, TrainingDiverged
from vaelib.evaluation import evaluate
from vaelib.losses import bernoulli_nll, gaussian_kl_per_dim
from vaelib.models import VAE, Autoencoder, ModelConfig, build_model
from vaelib.training import (TrainConfig, fit, get_device, is_quick, load_checkpoint,
                             save_checkpoint, seed_everything, train_or_load)

# Every per-epoch value that depends only on the maths (not on the wall clock).
HISTORY_KEYS = ("loss", "recon", "kl", "elbo", "mean_sigma", "kl_per_dim")


def _train(cfg, images, *, seed=0, **kwargs):
    seed_everything(seed)
    model = build_model(cfg)
    kwargs.setdefault("batch_size", 64)
    history = fit(model, images, seed=seed, progress=False, device="cpu", **kwargs)
    return model, history


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _maths(history):
    return {k: history[k] for k in HISTORY_KEYS}


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- fit ------------------------------------------------------------------------------------------

def test_training_lowers_the_loss_on_real_digits(mnist, mnist_small):
    cfg = ModelConfig(kind="vae", latent_dim=8, hidden=(64,))
    held_out = mnist.test.images[:300]
    seed_everything(0)
    model = build_model(cfg)
    before = evaluate(model, held_out)
    history = fit(model, mnist_small, epochs=6, batch_size=64, lr=3e-3, progress=False, device="cpu")
    after = evaluate(model, held_out)
    assert len(history["loss"]) == 6
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
    # Training generalises: the held-out ELBO improves by a wide margin too.
    assert after["elbo"] > before["elbo"] + 150, (before, after)
    assert not model.training  # fit leaves the model in eval mode


def test_autoencoder_training_lowers_the_reconstruction_cost(mnist_small):
    cfg = ModelConfig(kind="ae", latent_dim=8, hidden=(64,))
    seed_everything(0)
    model = build_model(cfg)
    x = mnist_small[:256]
    before = bernoulli_nll(model(x), x).mean().item()
    history = fit(model, mnist_small, epochs=4, lr=3e-3, progress=False, device="cpu")
    after = bernoulli_nll(model(x), x).mean().item()
    assert after < 0.6 * before
    assert history["recon"][-1] < history["recon"][0]
    assert history["kl"] == [0.0] * 4 and history["mean_sigma"] == [0.0] * 4
    assert history["elbo"] == [-r for r in history["recon"]]


def test_history_bookkeeping_matches_an_independent_evaluation(mnist_small, tiny_config):
    """With a negligible learning rate the weights do not move, so each epoch's means must equal the
    same quantities computed directly from the model."""
    x = mnist_small[:256]
    model, history = _train(tiny_config, x, epochs=1, lr=1e-12, beta=0.5)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        kl_dims = gaussian_kl_per_dim(mu, logvar).mean(0)
        sigma = torch.exp(0.5 * logvar).mean()
    torch.testing.assert_close(torch.tensor(history["kl_per_dim"][0]), kl_dims, rtol=1e-4, atol=1e-5)
    assert history["kl"][0] == pytest.approx(kl_dims.sum().item(), rel=1e-4)
    assert history["mean_sigma"][0] == pytest.approx(sigma.item(), rel=1e-4)
    # recon uses one sample of z per image; compare with an independent evaluation's estimate.
    ev = evaluate(model, x)
    assert history["recon"][0] == pytest.approx(ev["recon"], rel=0.005)
    assert history["loss"][0] == pytest.approx(history["recon"][0] + 0.5 * history["kl"][0], rel=1e-5)
    assert history["elbo"][0] == pytest.approx(-(history["recon"][0] + history["kl"][0]), rel=1e-6)
    assert history["seconds"][0] > 0
    assert history["samples_per_s"][0] == pytest.approx(256 / history["seconds"][0])


def test_same_seed_gives_identical_history_and_weights(mnist_small, tiny_config):
    for binarize in (None, "dynamic"):
        m1, h1 = _train(tiny_config, mnist_small, epochs=3, binarize=binarize)
        m2, h2 = _train(tiny_config, mnist_small, epochs=3, binarize=binarize)
        assert _maths(h1) == _maths(h2)
        assert _same_weights(m1, m2)


def test_different_seed_gives_a_different_history(mnist_small, tiny_config):
    m1, h1 = _train(tiny_config, mnist_small, epochs=2, seed=0)
    m2, h2 = _train(tiny_config, mnist_small, epochs=2, seed=1)
    assert h1["loss"] != h2["loss"]
    assert not _same_weights(m1, m2)


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(124)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) != a


def test_device_and_quick_switches(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not is_quick()
    monkeypatch.setenv("VAELIB_QUICK", "1")
    assert is_quick()


# --- API validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("images, message", [
    (torch.full((8, 1, 28, 28), 2.0), r"\[0, 1\]"),
    (torch.full((8, 1, 28, 28), -1.0), r"\[0, 1\]"),
    (torch.zeros(8, 1, 28, 28, dtype=torch.uint8), "float tensor.*x.float\\(\\) / 255"),
    (torch.full((8, 1, 28, 28), float("nan")), "NaN"),
])
def test_fit_rejects_bad_images_with_a_clear_message(images, message, tiny_config):
    model = build_model(tiny_config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        fit(model, images, epochs=1, progress=False, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(epochs=-3), "epochs must be a positive integer"),
    (dict(epochs=2.5), "epochs must be a positive integer"),
    (dict(epochs="3"), "epochs must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=1.5), "batch_size must be a positive integer"),
    (dict(lr=0), "lr must be a positive number"),
    (dict(lr=-1e-3), "lr must be a positive number"),
    (dict(lr=float("nan")), "lr must be a positive number"),
    (dict(lr=float("inf")), "lr must be a positive number"),
    (dict(beta=-1.0), "beta must be a finite number >= 0"),
    (dict(beta=float("nan")), "beta must be a finite number >= 0"),
])
def test_fit_rejects_bad_hyperparameters(kwargs, message, tiny_config):
    with pytest.raises(ValueError, match=message):
        fit(build_model(tiny_config), torch.rand(8, 1, 28, 28), progress=False, device="cpu",
            **kwargs)
    with pytest.raises(ValueError, match=message):
        TrainConfig(model=tiny_config, **kwargs)


def test_fit_rejects_images_of_the_wrong_shape(tiny_config):
    with pytest.raises(ValueError, match="expected images of shape"):
        fit(build_model(tiny_config), torch.rand(8, 784), epochs=1, progress=False, device="cpu")


def test_train_config_validation_and_round_trip(tiny_config):
    with pytest.raises(DataError, match="unknown dataset"):
        TrainConfig(dataset="svhn")
    with pytest.raises(ValueError, match="n_train must be positive"):
        TrainConfig(n_train=0)
    cfg = TrainConfig(model=tiny_config, dataset="Fashion_MNIST", epochs=3, n_train=100)
    assert cfg.dataset == "fashion-mnist"
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.key() == cfg.key()
    # The key changes with every field, and with the data it is trained on.
    keys = {cfg.key(), cfg.key("other data")}
    for change in (dict(epochs=4), dict(beta=0.5), dict(lr=2e-3), dict(seed=1), dict(n_train=None),
                   dict(batch_size=64), dict(binarize="dynamic"), dict(dataset="mnist"),
                   dict(model=dataclasses.replace(tiny_config, latent_dim=5))):
        keys.add(dataclasses.replace(cfg, **change).key())
    assert len(keys) == 11


# --- checkpoints ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_small, tiny_config):
    """A VAE trained 2 epochs with a checkpoint, and the path of that checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "vae.pt"
    model, history = _train(tiny_config, mnist_small, epochs=2, checkpoint=path)
    return model, history, path


def _outputs(model, x):
    with torch.no_grad():
        if isinstance(model, VAE):
            mu, logvar = model.encode(x)
            return mu, logvar, model.decode(mu), model.reconstruct(x)
        z = model.encode(x)
        return z, model.decode(z), model.reconstruct(x)


@pytest.mark.parametrize("kind, arch", [("vae", "mlp"), ("ae", "mlp"), ("vae", "conv")])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, mnist_small, kind, arch):
    cfg = ModelConfig(kind=kind, arch=arch, latent_dim=3, hidden=(16,))
    x = mnist_small[:32]
    model, history = _train(cfg, x, epochs=1, batch_size=16)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, history, TrainConfig(model=cfg))
    loaded, ckpt = load_checkpoint(path, expect_kind=kind)
    assert type(loaded) is type(model) and loaded.config == cfg
    assert not loaded.training
    assert _same_weights(model, loaded)
    for a, b in zip(_outputs(model, x), _outputs(loaded, x)):
        assert torch.equal(a, b)
    assert ckpt["history"] == history and ckpt["epoch"] == 1
    assert TrainConfig.from_dict(ckpt["train_config"]) == TrainConfig(model=cfg)
    assert _temp_files(path.parent) == []


def test_fit_writes_a_checkpoint_every_epoch(trained, tiny_config):
    model, history, path = trained
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["history"] == history
    assert ckpt["optimizer"] is not None and ckpt["rng_state"].dtype == torch.uint8
    assert _same_weights(model, loaded)
    assert [p.name for p in path.parent.iterdir()] == ["vae.pt"]


def _corrupting_save(raise_what):
    real_save = torch.save

    def fake_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(1000)  # half a file on disk ...
        raise raise_what   # ... and then the crash

    return fake_save


@pytest.mark.parametrize("crash", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, trained, monkeypatch,
                                                                   tiny_config, crash):
    model, history, _ = trained
    path = save_checkpoint(tmp_path / "m.pt", model, history, TrainConfig(model=tiny_config))
    good = path.read_bytes()
    other = build_model(tiny_config)
    monkeypatch.setattr(torch, "save", _corrupting_save(crash))
    with pytest.raises(type(crash)):
        save_checkpoint(path, other, history, TrainConfig(model=tiny_config))
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert _temp_files(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    loaded, _ = load_checkpoint(path)
    assert _same_weights(loaded, model)


def test_a_crash_on_the_first_save_leaves_no_file(tmp_path, trained, monkeypatch, tiny_config):
    model, history, _ = trained
    monkeypatch.setattr(torch, "save", _corrupting_save(RuntimeError("disk went away")))
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "m.pt", model, history, TrainConfig(model=tiny_config))
    assert list(tmp_path.iterdir()) == []


class _Malicious:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_malicious_payload_really_runs_code_under_plain_pickle(tmp_path):
    """Guard for the test below: the payload is dangerous when loaded without weights_only."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Malicious(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_a_checkpoint_with_pickled_code_is_refused_and_its_code_never_runs(tmp_path, trained,
                                                                          container):
    model, _, good_path = trained
    marker = tmp_path / "pwned"
    payload = {"format_version": 1, "model_config": model.config.to_dict(),
               "state_dict": model.state_dict(), "history": _Malicious(marker)}
    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert not marker.exists()
    if container == "torch.save":
        assert "pickled" in str(info.value) and "none of its code was run" in str(info.value)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*train one"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint


@pytest.mark.parametrize("content", ["random", "empty", "text", "truncated", "zip-header-only",
                                     "flipped"])
def test_damaged_checkpoints_raise_checkpoint_error(tmp_path, trained, content):
    good = trained[2].read_bytes()
    data = {
        "random": np.random.default_rng(0).bytes(4096),
        "empty": b"",
        "text": b"format_version: 1\n",
        "truncated": good[: len(good) // 2],
        "zip-header-only": good[:64],
        "flipped": good[:200] + bytes(b ^ 0xFF for b in good[200:400]) + good[400:],
    }[content]
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    if content != "flipped":  # flipping bytes may hit the pickle itself rather than the zip
        assert "damaged" in str(info.value)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_weights_for_another_architecture_raise_checkpoint_error(tmp_path, trained):
    path = _rewrite(trained[2], tmp_path / "x.pt",
                    lambda c: c["model_config"].update(latent_dim=c["model_config"]["latent_dim"] + 1))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_checkpoint(path)
    path = _rewrite(trained[2], tmp_path / "y.pt", lambda c: c["model_config"].update(hidden=[33]))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_checkpoint(path)


def test_another_model_kind_raises_checkpoint_error(tmp_path, trained, mnist_small):
    with pytest.raises(CheckpointError, match="holds a VAE, but this needs an autoencoder"):
        load_checkpoint(trained[2], expect_kind="ae")
    ae = build_model(kind="ae", latent_dim=2, hidden=(8,))
    path = save_checkpoint(tmp_path / "ae.pt", ae, {"loss": []}, TrainConfig(model=ae.config))
    with pytest.raises(CheckpointError, match="holds an autoencoder, but this needs a VAE"):
        load_checkpoint(path, expect_kind="vae")
    assert isinstance(load_checkpoint(path, expect_kind="ae")[0], Autoencoder)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(format_version=99), "format 99"),
    (lambda c: c.pop("state_dict"), "not a vaelib checkpoint"),
    (lambda c: c["model_config"].pop("latent_dim"), "damaged model configuration"),
    (lambda c: c["model_config"].update(kind="gan"), "damaged model configuration"),
    (lambda c: c["state_dict"][next(iter(c["state_dict"]))].fill_(float("nan")), "NaN"),
])
def test_edited_checkpoints_raise_checkpoint_error(tmp_path, trained, edit, message):
    path = _rewrite(trained[2], tmp_path / "e.pt", edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_torch_file_that_is_not_a_vaelib_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "w.pt")
    torch.save([1, 2, 3], tmp_path / "l.pt")
    for name in ("w.pt", "l.pt"):
        with pytest.raises(CheckpointError, match="not a vaelib checkpoint"):
            load_checkpoint(tmp_path / name)


# --- resuming -------------------------------------------------------------------------------------

@pytest.mark.parametrize("binarize", [None, "dynamic"])
def test_resume_gives_the_same_history_as_a_straight_run(tmp_path, mnist_small, tiny_config,
                                                         binarize):
    straight_model, straight = _train(tiny_config, mnist_small, epochs=4, binarize=binarize)

    path = tmp_path / "half.pt"
    _train(tiny_config, mnist_small, epochs=2, binarize=binarize, checkpoint=path)
    model, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2
    torch.manual_seed(999)  # whatever happened in between must not matter
    resumed = fit(model, mnist_small, epochs=4, batch_size=64, seed=0, binarize=binarize,
                  progress=False, device="cpu", resume=ckpt, checkpoint=path)
    assert len(resumed["loss"]) == 4
    assert _maths(resumed) == _maths(straight)
    assert _same_weights(model, straight_model)
    assert load_checkpoint(path)[1]["epoch"] == 4


# --- divergence -----------------------------------------------------------------------------------

def test_nan_weights_after_epoch_one_raise_and_keep_the_last_good_checkpoint(tmp_path, mnist_small,
                                                                            tiny_config):
    path = tmp_path / "run.pt"
    snapshot = {}

    def poison(epoch, history):
        if epoch == 1:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    seed_everything(0)
    model = build_model(tiny_config)
    with pytest.raises(TrainingDiverged, match="(?i)lower learning rate") as info:
        fit(model, mnist_small, epochs=3, batch_size=64, progress=False, device="cpu",
            checkpoint=path, on_epoch=poison)
    assert "epoch 2" in str(info.value)
    kept, ckpt = load_checkpoint(path)  # would raise CheckpointError on NaN weights
    assert ckpt["epoch"] == 1 and len(ckpt["history"]["loss"]) == 1
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    assert all(torch.equal(snapshot[k], v) for k, v in kept.state_dict().items())
    assert _temp_files(tmp_path) == []


def test_a_nan_loss_stops_training_before_any_weight_is_touched(tmp_path, mnist_small, tiny_config,
                                                                monkeypatch):
    real = vtraining.bernoulli_nll
    calls = {"n": 0}
    n_batches_per_epoch = -(-len(mnist_small) // 64)

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        recon = real(*args, **kwargs)
        if calls["n"] == n_batches_per_epoch + 1:  # the first batch of epoch 2
            return recon * float("nan")
        return recon

    monkeypatch.setattr(vtraining, "bernoulli_nll", nan_in_epoch_two)
    path = tmp_path / "run.pt"
    seed_everything(0)
    model = build_model(tiny_config)
    with pytest.raises(TrainingDiverged, match="(?i)nan.*lower learning rate"):
        fit(model, mnist_small, epochs=3, batch_size=64, progress=False, device="cpu",
            checkpoint=path)
    kept, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert _same_weights(model, kept)  # the NaN batch changed nothing


def test_a_huge_learning_rate_diverges_with_advice(tmp_path, mnist_small, tiny_config):
    path = tmp_path / "run.pt"
    seed_everything(0)
    model = build_model(tiny_config)
    with pytest.raises(TrainingDiverged, match="(?i)lower learning rate") as info:
        fit(model, mnist_small, epochs=3, batch_size=64, lr=1e30, progress=False, device="cpu",
            checkpoint=path)
    assert "1e+29" in str(info.value)  # a concrete, lower value to try
    if path.exists():  # any checkpoint that was written holds finite weights
        kept, _ = load_checkpoint(path)
        assert all(torch.isfinite(p).all() for p in kept.parameters())
    assert _temp_files(tmp_path) == []


# --- train_or_load --------------------------------------------------------------------------------

@pytest.fixture
def fit_calls(monkeypatch):
    """Records every call of fit made by train_or_load (its resume argument included)."""
    calls = []
    real = vtraining.fit

    def spy(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return real(*args, **kwargs)

    monkeypatch.setattr(vtraining, "fit", spy)
    return calls


def _config(tiny_config, **kw):
    return TrainConfig(model=tiny_config, dataset="mnist", epochs=kw.pop("epochs", 2), batch_size=64,
                       n_train=kw.pop("n_train", 256), **kw)


def test_train_or_load_trains_once_then_loads(tmp_path, mnist, tiny_config, fit_calls):
    cfg = _config(tiny_config)
    m1, h1 = train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None] and len(h1["loss"]) == 2
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("vae-")

    m2, h2 = train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None]  # loaded, not trained again
    assert _same_weights(m1, m2) and h2 == h1
    assert isinstance(m2, VAE) and not m2.training

    # The model is the one a plain fit on the same subset gives.
    ref, ref_h = _train(tiny_config, mnist.train.subset(256, seed=0).images, epochs=2)
    assert _same_weights(ref, m2) and _maths(ref_h) == _maths(h2)


def test_train_or_load_retrains_when_the_config_changes(tmp_path, mnist, tiny_config, fit_calls):
    train_or_load(_config(tiny_config), mnist, cache=tmp_path, device="cpu", progress=False)
    m_beta, _ = train_or_load(_config(tiny_config, beta=0.5), mnist, cache=tmp_path, device="cpu",
                              progress=False)
    m_n, _ = train_or_load(_config(tiny_config, n_train=128), mnist, cache=tmp_path, device="cpu",
                           progress=False)
    assert fit_calls == [None, None, None]
    assert len(list(tmp_path.iterdir())) == 3
    assert not _same_weights(m_beta, m_n)


def test_train_or_load_keys_on_the_data_not_on_how_it_arrived(tmp_path, mnist, tiny_config,
                                                              fit_calls):
    """The first run downloads the data, later ones read the cache: the same images, the same model."""
    downloaded = dataclasses.replace(mnist, source="torchvision download")
    cached = dataclasses.replace(mnist, source="cache")
    m1, _ = train_or_load(_config(tiny_config), downloaded, cache=tmp_path, device="cpu",
                          progress=False)
    m2, _ = train_or_load(_config(tiny_config), cached, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None]
    assert _same_weights(m1, m2)
    # ... but other images (here: the fixed-binarized digits) are another model.
    binary = dataclasses.replace(mnist, train=dataclasses.replace(
        mnist.train, images=torch.bernoulli(mnist.train.images, generator=torch.Generator().manual_seed(0))))
    train_or_load(_config(tiny_config), binary, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None, None]


def test_an_interrupted_cache_entry_resumes(tmp_path, mnist, tiny_config, fit_calls, monkeypatch):
    cfg = _config(tiny_config, epochs=4)
    real_save = vtraining.save_checkpoint

    def interrupt_after_epoch_two(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if kwargs.get("epoch") == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(vtraining, "save_checkpoint", interrupt_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(cfg, mnist, cache=tmp_path / "a", device="cpu", progress=False)
    monkeypatch.setattr(vtraining, "save_checkpoint", real_save)
    (entry,) = (tmp_path / "a").iterdir()
    assert load_checkpoint(entry)[1]["epoch"] == 2

    model, history = train_or_load(cfg, mnist, cache=tmp_path / "a", device="cpu", progress=False)
    assert len(fit_calls) == 2 and fit_calls[1] is not None and fit_calls[1]["epoch"] == 2
    assert load_checkpoint(entry)[1]["epoch"] == 4

    straight, straight_h = train_or_load(cfg, mnist, cache=tmp_path / "b", device="cpu",
                                         progress=False)
    assert _maths(history) == _maths(straight_h)
    assert _same_weights(model, straight)


def test_a_damaged_cache_entry_is_reported_and_retrained(tmp_path, mnist, tiny_config, fit_calls,
                                                         capsys):
    cfg = _config(tiny_config)
    m1, _ = train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(entry.read_bytes()[:500])
    capsys.readouterr()
    m2, _ = train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)
    assert "ignoring a damaged cached model" in capsys.readouterr().out
    assert fit_calls == [None, None]
    assert _same_weights(m1, m2)
    assert load_checkpoint(entry)[1]["epoch"] == 2


def test_train_or_load_rejects_data_for_another_dataset(tmp_path, mnist, tiny_config):
    cfg = TrainConfig(model=tiny_config, dataset="fashion-mnist", epochs=1)
    with pytest.raises(ValueError, match="fashion-mnist.*mnist"):
        train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)


def test_train_or_load_uses_the_vaelib_data_folder_by_default(mnist, tiny_config, vaelib_env):
    cfg = _config(tiny_config, epochs=1, n_train=64)
    train_or_load(cfg, mnist, device="cpu", progress=False)
    assert any(p.suffix == ".pt" for p in (Path(os.environ["VAELIB_DATA"]) / "models").iterdir())
