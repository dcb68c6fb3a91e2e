"""The book's policy (vaelib.book): its switches, its models and the trained-model cache."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from helpers import maths, same_weights, train

import vaelib.book as vbook
from vaelib import book
import vaelib.callbacks as vcallbacks
from vaelib.book import train_or_load
from vaelib.checkpoints import load_checkpoint
from vaelib.models import VAE
from vaelib.recipe import TrainConfig

# --- train_or_load --------------------------------------------------------------------------------

@pytest.fixture
def fit_calls(monkeypatch):
    """Records every call of fit made by train_or_load (its resume argument included)."""
    calls = []
    real = vbook.fit

    def spy(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return real(*args, **kwargs)

    monkeypatch.setattr(vbook, "fit", spy)
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
    assert same_weights(m1, m2) and h2 == h1
    assert isinstance(m2, VAE) and not m2.training

    # The model is the one a plain fit on the same subset gives.
    ref, ref_h = train(tiny_config, mnist.train.subset(256, seed=0).images, epochs=2)
    assert same_weights(ref, m2) and maths(ref_h) == maths(h2)


def test_train_or_load_retrains_when_the_config_changes(tmp_path, mnist, tiny_config, fit_calls):
    train_or_load(_config(tiny_config), mnist, cache=tmp_path, device="cpu", progress=False)
    m_beta, _ = train_or_load(_config(tiny_config, beta=0.5), mnist, cache=tmp_path, device="cpu",
                              progress=False)
    m_n, _ = train_or_load(_config(tiny_config, n_train=128), mnist, cache=tmp_path, device="cpu",
                           progress=False)
    assert fit_calls == [None, None, None]
    assert len(list(tmp_path.iterdir())) == 3
    assert not same_weights(m_beta, m_n)


def test_train_or_load_keys_on_the_data_not_on_how_it_arrived(tmp_path, mnist, tiny_config,
                                                              fit_calls):
    """The first run downloads the data, later ones read the cache: the same images, the same model."""
    downloaded = dataclasses.replace(mnist, source="torchvision download")
    cached = dataclasses.replace(mnist, source="cache")
    m1, _ = train_or_load(_config(tiny_config), downloaded, cache=tmp_path, device="cpu",
                          progress=False)
    m2, _ = train_or_load(_config(tiny_config), cached, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None]
    assert same_weights(m1, m2)
    # ... but other images (here: the fixed-binarized digits) are another model.
    binary = dataclasses.replace(mnist, train=dataclasses.replace(
        mnist.train, images=torch.bernoulli(mnist.train.images, generator=torch.Generator().manual_seed(0))))
    train_or_load(_config(tiny_config), binary, cache=tmp_path, device="cpu", progress=False)
    assert fit_calls == [None, None]


def test_an_interrupted_cache_entry_resumes(tmp_path, mnist, tiny_config, fit_calls, monkeypatch):
    cfg = _config(tiny_config, epochs=4)
    real_save = vcallbacks.save_checkpoint

    def interrupt_after_epoch_two(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if kwargs.get("epoch") == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(vcallbacks, "save_checkpoint", interrupt_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(cfg, mnist, cache=tmp_path / "a", device="cpu", progress=False)
    monkeypatch.setattr(vcallbacks, "save_checkpoint", real_save)
    (entry,) = (tmp_path / "a").iterdir()
    assert load_checkpoint(entry)[1]["epoch"] == 2

    model, history = train_or_load(cfg, mnist, cache=tmp_path / "a", device="cpu", progress=False)
    assert len(fit_calls) == 2 and fit_calls[1] is not None and fit_calls[1]["epoch"] == 2
    assert load_checkpoint(entry)[1]["epoch"] == 4

    straight, straight_h = train_or_load(cfg, mnist, cache=tmp_path / "b", device="cpu",
                                         progress=False)
    assert maths(history) == maths(straight_h)
    assert same_weights(model, straight)


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
    assert same_weights(m1, m2)
    assert load_checkpoint(entry)[1]["epoch"] == 2


def test_train_or_load_rejects_data_for_another_dataset(tmp_path, mnist, tiny_config):
    cfg = TrainConfig(model=tiny_config, dataset="fashion-mnist", epochs=1)
    with pytest.raises(ValueError, match="fashion-mnist.*mnist"):
        train_or_load(cfg, mnist, cache=tmp_path, device="cpu", progress=False)


def test_train_or_load_uses_the_vaelib_data_folder_by_default(mnist, tiny_config, vaelib_env):
    cfg = _config(tiny_config, epochs=1, n_train=64)
    train_or_load(cfg, mnist, device="cpu", progress=False)
    assert any(p.suffix == ".pt" for p in (Path(os.environ["VAELIB_DATA"]) / "models").iterdir())


# --- the switches --------------------------------------------------------------------------------

def test_the_switches_follow_the_environment(monkeypatch, tmp_path):
    for name in ("VAELIB_QUICK", "VAELIB_DATASET", "VAELIB_DATA", "VAELIB_OFFLINE", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    assert not vbook.is_quick() and not vbook.offline() and vbook.show_progress()
    assert vbook.dataset_name() == "mnist"
    assert vbook.cache_dir() == Path.home() / ".cache" / "vaelib"
    monkeypatch.setenv("VAELIB_QUICK", "1")
    monkeypatch.setenv("VAELIB_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("VAELIB_DATASET", "Fashion_MNIST")
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    assert vbook.is_quick() and vbook.offline() and not vbook.show_progress()
    assert vbook.dataset_name() == "fashion-mnist" and vbook.cache_dir() == tmp_path
    monkeypatch.setenv("VAELIB_DATASET", "cifar10")
    with pytest.raises(Exception, match="cifar10"):
        vbook.dataset_name()


def test_the_book_dataset_obeys_the_switches(monkeypatch, tmp_path):
    monkeypatch.setenv("VAELIB_OFFLINE", "1")
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    monkeypatch.setenv("VAELIB_DATASET", "mnist")
    calls = []
    monkeypatch.setattr(vbook, "load_dataset", lambda name, **kw: calls.append((name, kw)))
    vbook.dataset()
    vbook.dataset("fashion-mnist", verbose=False)
    assert calls == [("mnist", dict(root=tmp_path, download=False)),
                     ("fashion-mnist", dict(root=tmp_path, download=False, verbose=False))]


def test_quick_mode_shrinks_the_recipe(monkeypatch):
    monkeypatch.delenv("VAELIB_QUICK", raising=False)
    reader = vbook.config(**vbook.BOOK_MODELS["vae-20d"].recipe)
    monkeypatch.setenv("VAELIB_QUICK", "1")
    quick = vbook.config(**vbook.BOOK_MODELS["vae-20d"].recipe)
    assert (reader.epochs, reader.n_train) == (vbook.BOOK_MODELS["vae-20d"].recipe["epochs"], None)
    assert (reader.schedule, reader.lr, reader.batch_size) == ("cosine", vbook.BOOK_LR, vbook.BOOK_BATCH_SIZE)
    assert (quick.epochs, quick.n_train) == (vbook.QUICK_EPOCHS, vbook.QUICK_N_TRAIN)
    assert (quick.schedule, quick.lr) == (vbook.QUICK.schedule, vbook.QUICK_LR) == ("constant", TrainConfig().lr)
    assert dataclasses.replace(quick, epochs=reader.epochs, n_train=None, schedule=reader.schedule,
                               lr=reader.lr) == reader
    assert vbook.config(**vbook.BOOK_MODELS["vae-2d-nokl"].recipe).beta == 0.0
    assert vbook.config(**vbook.BOOK_MODELS["vae-20d"].recipe, lr=2e-3, schedule="constant").lr == 2e-3


def test_the_book_epochs_of_each_model_are_the_fewest_the_benchmark_found_good_enough():
    """Each model's reader-mode epochs are justified by benchmarks/results/time_to_quality.json: at the
    book's peak rate and batch size, the run of that length reached the old recipe's test score to within
    1 nat, and no shorter one did."""
    import json
    from pathlib import Path
    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                          / "time_to_quality.json").read_text())
    assert set(results["models"]) == set(vbook.BOOK_MODELS)
    for name, spec in vbook.BOOK_MODELS.items():
        measured = results["models"][name]
        old, *candidates = measured["runs"]
        assert old["schedule"] == "constant" and measured["target"] == pytest.approx(old["score"] - 1)
        assert all((c["schedule"], c["batch_size"]) == ("cosine", vbook.BOOK_BATCH_SIZE) for c in candidates)
        good = sorted(c["epochs"] for c in candidates
                      if c["lr"] == vbook.BOOK_LR and c["score"] >= measured["target"])
        assert good and good[0] == spec.recipe["epochs"], (name, good)


def test_the_offline_subset_keeps_the_constant_recipe(tmp_path, mnist, tiny_config, monkeypatch):
    """On the 5,000-digit offline subset a config with the book's schedule trains at a constant rate."""
    assert mnist.offline_subset
    fit_calls, real = [], vbook.fit
    monkeypatch.setattr(vbook, "fit", lambda model, data, config, **kw: fit_calls.append(config)
                        or real(model, data, config, **kw))
    cfg = dataclasses.replace(_config(tiny_config, epochs=1, n_train=64), schedule=vbook.READER.schedule,
                              lr=vbook.BOOK_LR)
    vbook.train_or_load(cfg, mnist, cache=tmp_path, progress=False)
    trained = fit_calls[-1]
    assert (trained.schedule, trained.lr) == (vbook.SUBSET.schedule, vbook.SUBSET.lr) == ("constant", 1e-3)
    own = dataclasses.replace(cfg, lr=2e-3)  # a recipe of the caller's own is left alone
    vbook.train_or_load(own, mnist, cache=tmp_path, progress=False)
    assert (fit_calls[-1].schedule, fit_calls[-1].lr) == ("cosine", 2e-3)
    # The full dataset, with the same images, keeps the book's schedule: the flag decides, not the source's name.
    full = dataclasses.replace(mnist, offline_subset=False)
    vbook.train_or_load(cfg, full, cache=tmp_path, progress=False)
    assert (fit_calls[-1].schedule, fit_calls[-1].lr) == ("cosine", vbook.BOOK_LR)


def test_the_cache_key_changes_with_every_setting_the_data_and_the_checkpoint_format(tiny_config, monkeypatch):
    cfg = TrainConfig(model=tiny_config, dataset="fashion-mnist", epochs=3, n_train=100)
    assert vbook.cache_key(cfg) == vbook.cache_key(TrainConfig.from_dict(cfg.to_dict()))
    keys = {vbook.cache_key(cfg), vbook.cache_key(cfg, "other data")}
    for change in (dict(epochs=4), dict(beta=0.5), dict(lr=2e-3), dict(seed=1), dict(n_train=None),
                   dict(batch_size=64), dict(binarize="dynamic"), dict(dataset="mnist"),
                   dict(schedule="cosine"), dict(model=dataclasses.replace(tiny_config, latent_dim=5))):
        keys.add(vbook.cache_key(dataclasses.replace(cfg, **change)))
    monkeypatch.setattr(vbook, "CHECKPOINT_FORMAT", vbook.CHECKPOINT_FORMAT + 1)
    keys.add(vbook.cache_key(cfg))
    assert len(keys) == 13


def test_an_unknown_book_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown book model 'vae-3d'.*vae-20d"):
        vbook.model("vae-3d")


def test_clamp_words_count_the_widths_the_clamp_set():
    from vaelib.models import LOGVAR_RANGE
    floor = LOGVAR_RANGE[0]
    assert vbook.clamp_words(torch.tensor([floor - 5.0, floor + 1])).startswith("none") is False
    assert vbook.clamp_words(torch.tensor([floor, floor, floor, -1.0])).startswith("75% of its test σs sit on that floor")
    assert vbook.clamp_words(torch.tensor([floor + 0.5, -1.0])).startswith("none of its test σs has reached")
    one_in_ten_thousand = torch.cat([torch.full((1,), floor), torch.zeros(9999)])
    assert vbook.clamp_words(one_in_ten_thousand).startswith("0.01% of its")

def test_vaelib_data_with_a_tilde_is_under_the_home_folder(tmp_path, monkeypatch, mnist, tiny_config):
    from vaelib.recipe import TrainConfig as Config

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VAELIB_DATA", "~/vdata")
    monkeypatch.chdir(work)
    assert book.cache_dir() == home / "vdata"
    book.train_or_load(Config(model=tiny_config, dataset="mnist", epochs=1, n_train=128), mnist,
                       device="cpu", progress=False)
    assert list(work.iterdir()) == [] and len(list((home / "vdata" / "models").glob("*.pt"))) == 1


@pytest.mark.parametrize("value, on", [("1", True), ("on", True), ("y", True), ("Yes", True), ("TRUE", True),
                                       ("0", False), ("off", False), ("n", False), ("", False)])
def test_switches_take_the_usual_words(monkeypatch, value, on):

    monkeypatch.setenv("VAELIB_QUICK", value)
    assert book.is_quick() is on


@pytest.mark.parametrize("value", ["2", "enabled", "o n"])
def test_a_switch_that_is_neither_on_nor_off_is_refused(monkeypatch, value):

    monkeypatch.setenv("VAELIB_QUICK", value)
    with pytest.raises(ValueError, match="VAELIB_QUICK.*neither on nor off"):
        book.is_quick()


def test_at_most_caps_the_training_images_and_leaves_a_smaller_recipe_as_it_is(mnist, tiny_config):
    assert len(mnist.train) == 4000  # the offline subset
    every = _config(tiny_config, n_train=None)
    assert book.at_most(every, mnist, 1000).n_train == 1000
    assert book.at_most(every, mnist, 6000) is every           # there are only 4,000: the same recipe, same cache key
    fewer = _config(tiny_config, n_train=300)
    assert book.at_most(fewer, mnist, 1000) is fewer


def test_images_words_say_how_many_of_the_training_images_a_recipe_uses(mnist, tiny_config):
    assert book.images_words(_config(tiny_config, n_train=None), mnist) == "all 4,000 training images"
    assert book.images_words(_config(tiny_config, n_train=6000), mnist) == "all 4,000 training images"
    assert book.images_words(_config(tiny_config, n_train=1500), mnist) == "1,500 of the 4,000 training images"
