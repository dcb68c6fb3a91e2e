"""Checkpoints (vaelib.checkpoints): atomic writes, safe loading, every way a file can be bad."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import same_weights, temp_files, train

from vaelib.checkpoints import checkpoint_checksum, load_checkpoint, save_checkpoint
from vaelib.errors import CheckpointError
from vaelib.models import Autoencoder, ModelConfig, build_model
from vaelib.recipe import TrainConfig
from vaelib.training import fit

# --- checkpoints ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_small, tiny_config):
    """A VAE trained 2 epochs with a checkpoint, and the path of that checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "vae.pt"
    model, history = train(tiny_config, mnist_small, epochs=2, checkpoint=path)
    return model, history, path


def _outputs(model, x):
    with torch.no_grad():
        z = model.code(x)
        return z, model.decode(z), model.reconstruct(x), model.loss_terms(
            x, generator=torch.Generator().manual_seed(0)).loss


@pytest.mark.parametrize("kind, arch", [("vae", "mlp"), ("ae", "mlp"), ("vae", "conv")])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, mnist_small, kind, arch):
    cfg = ModelConfig(kind=kind, arch=arch, latent_dim=3, hidden=(16,))
    x = mnist_small[:32]
    model, history = train(cfg, x, epochs=1, batch_size=16)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, history, TrainConfig(model=cfg))
    loaded, ckpt = load_checkpoint(path, expect_kind=kind)
    assert type(loaded) is type(model) and loaded.config == cfg
    assert not loaded.training
    assert same_weights(model, loaded)
    for a, b in zip(_outputs(model, x), _outputs(loaded, x)):
        assert torch.equal(a, b)
    assert ckpt["history"] == history and ckpt["epoch"] == 1
    assert TrainConfig.from_dict(ckpt["train_config"]) == TrainConfig(model=cfg)
    assert temp_files(path.parent) == []


def test_fit_writes_a_checkpoint_every_epoch(trained, tiny_config):
    model, history, path = trained
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["history"] == history
    assert ckpt["optimizer"] is not None
    assert same_weights(model, loaded)
    assert [p.name for p in path.parent.iterdir()] == ["vae.pt"]


def _corrupting_save(raise_what):
    real_save = torch.save

    def fake_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(1000)  # half a file on disk ...
        raise raise_what   # ... and then the crash

    return fake_save


@pytest.mark.parametrize("crash, raised", [(OSError(28, "No space left on device"), CheckpointError),
                                           (KeyboardInterrupt(), KeyboardInterrupt)])
def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, trained, monkeypatch,
                                                                   tiny_config, crash, raised):
    model, history, _ = trained
    path = save_checkpoint(tmp_path / "m.pt", model, history, TrainConfig(model=tiny_config))
    good = path.read_bytes()
    other = build_model(tiny_config)
    monkeypatch.setattr(torch, "save", _corrupting_save(crash))
    with pytest.raises(raised):
        save_checkpoint(path, other, history, TrainConfig(model=tiny_config))
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert temp_files(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    loaded, _ = load_checkpoint(path)
    assert same_weights(loaded, model)


def test_a_crash_on_the_first_save_leaves_no_file(tmp_path, trained, monkeypatch, tiny_config):
    model, history, _ = trained
    monkeypatch.setattr(torch, "save", _corrupting_save(RuntimeError("disk went away")))
    with pytest.raises(CheckpointError, match="could not write.*disk went away"):
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


def _rewrite(src: Path, dst: Path, edit, checksum: bool = True) -> Path:
    """Edit a checkpoint; with ``checksum``, as a tool would that also rewrites the checksum."""
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    if checksum and "checksum" in ckpt and isinstance(ckpt.get("state_dict"), dict):
        ckpt["checksum"] = checkpoint_checksum(ckpt)
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
    (lambda c: c["model_config"].pop("latent_dim"), "damaged configuration"),
    (lambda c: c["model_config"].update(kind="gan"), "damaged configuration"),
    (lambda c: c["train_config"].update(lr=-1), "damaged configuration"),
    (lambda c: c["state_dict"][next(iter(c["state_dict"]))].fill_(float("nan")), "NaN"),
    (lambda c: c.pop("train_config"), "damaged: it has no 'train_config'"),
    (lambda c: c.pop("checksum"), "damaged: it has no 'checksum'"),
    (lambda c: c.update(epoch="2"), "damaged: its 'epoch' is a str"),
    (lambda c: c.update(epoch=True), "damaged: its 'epoch' is a bool"),
    (lambda c: c.update(history=None), "damaged: its 'history' is a NoneType"),
    (lambda c: c.update(epoch=5), "does not hold the 5 epochs"),
    (lambda c: c["history"].update(kl=None), "history's 'kl' is not a list"),
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




# --- damage inside the tensors ---------------------------------------------------------------------

def _flip_signs(tensor: torch.Tensor, n: int) -> None:
    tensor.view(-1)[:n] *= -1


@pytest.mark.parametrize("where", ["weights", "optimizer moments"])
def test_damage_inside_the_tensors_is_caught_by_the_checksum(tmp_path, trained, where):
    def edit(c):
        if where == "weights":
            _flip_signs(c["state_dict"][next(iter(c["state_dict"]))], 1000)
        else:
            _flip_signs(c["optimizer"]["state"][0]["exp_avg"], 1000)

    path = _rewrite(trained[2], tmp_path / "flipped.pt", edit, checksum=False)
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(path)


def test_a_checkpoint_saved_without_an_optimizer_can_be_resumed(tmp_path, mnist_small, tiny_config):
    model, history = train(tiny_config, mnist_small, epochs=1)
    path = save_checkpoint(tmp_path / "plain.pt", model, history, TrainConfig(model=tiny_config, epochs=1))
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["optimizer"] is None
    more = fit(loaded, mnist_small, TrainConfig.from_dict(ckpt["train_config"]), epochs=2, resume=ckpt,
               batch_size=64, progress=False, device="cpu")
    assert len(more["loss"]) == 2 and more["loss"][1] < more["loss"][0]


def test_stale_temporary_files_of_a_killed_run_are_cleaned_up(tmp_path, trained, tiny_config):
    model, history, _ = trained
    stale = tmp_path / ".m.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "m.pt", model, history, TrainConfig(model=tiny_config))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_a_checkpoint_loads_onto_the_cpu_whatever_device_wrote_it(tmp_path, trained):
    model, ckpt = load_checkpoint(trained[2], device="cpu")
    assert next(model.parameters()).device.type == "cpu"


# --- formats ---------------------------------------------------------------------------------------

def test_a_format_4_checkpoint_still_loads_and_resumes_like_a_straight_run(tmp_path, mnist_small, tiny_config):
    """Format 5 added the schedule's state. A format-4 checkpoint has none: resumed, its schedule starts at
    the step its epochs make, which is where a straight run of the same recipe would be."""
    from vaelib.callbacks import OnEpoch

    straight_model, straight = train(tiny_config, mnist_small, epochs=3, schedule="cosine", lr=3e-3)

    def stop(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, mnist_small, epochs=3, schedule="cosine", lr=3e-3, checkpoint=path,
              callbacks=[OnEpoch(stop)])

    def to_format_4(c):
        del c["scheduler"]
        c["format_version"] = 4

    old = _rewrite(path, tmp_path / "old.pt", to_format_4)
    model, ckpt = load_checkpoint(old)
    assert ckpt["format_version"] == 4 and ckpt["scheduler"] is None
    resumed = fit(model, mnist_small, TrainConfig.from_dict(ckpt["train_config"]), resume=ckpt,
                  progress=False, device="cpu")
    assert resumed["loss"] == straight["loss"] and same_weights(model, straight_model)
    older = _rewrite(path, tmp_path / "older.pt", lambda c: c.update(format_version=3))
    with pytest.raises(CheckpointError, match="format 3, this vaelib reads formats 4 and 5; retrain it"):
        load_checkpoint(older)
