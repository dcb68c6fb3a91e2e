"""Training (vaelib.training): fit, its recipe, reproducibility, resuming and divergence."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from helpers import maths, same_weights, temp_files, train

import vaelib.losses as vlosses
from vaelib.callbacks import OnEpoch
from vaelib.checkpoints import load_checkpoint
from vaelib.errors import DataError, TrainingDiverged
from vaelib.evaluation import evaluate
from vaelib.losses import bernoulli_nll, gaussian_kl_per_dim
from vaelib.models import ModelConfig, build_model
from vaelib.recipe import WARMUP_FRACTION, TrainConfig, lr_factor
from vaelib.training import DivergenceCheck, fit, make_optimizer, make_scheduler, seed_everything

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
    model, history = train(tiny_config, x, epochs=1, lr=1e-12, beta=0.5)
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
        m1, h1 = train(tiny_config, mnist_small, epochs=3, binarize=binarize)
        m2, h2 = train(tiny_config, mnist_small, epochs=3, binarize=binarize)
        assert maths(h1) == maths(h2)
        assert same_weights(m1, m2)


def test_different_seed_gives_a_different_history(mnist_small, tiny_config):
    m1, h1 = train(tiny_config, mnist_small, epochs=2, seed=0)
    m2, h2 = train(tiny_config, mnist_small, epochs=2, seed=1)
    assert h1["loss"] != h2["loss"]
    assert not same_weights(m1, m2)


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(124)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) != a


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
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        TrainConfig(n_train=0)
    cfg = TrainConfig(model=tiny_config, dataset="Fashion_MNIST", epochs=3, n_train=100)
    assert cfg.dataset == "fashion-mnist"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="schedule must be one of constant, cosine"):
        TrainConfig(schedule="linear")
    # A checkpoint written before schedules existed trained at a constant rate, and still loads as such.
    old = {k: v for k, v in cfg.to_dict().items() if k != "schedule"}
    assert TrainConfig.from_dict(old).schedule == "constant"


# --- the learning-rate schedule -------------------------------------------------------------------

def _rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step of the run ``cfg`` describes, read off a real optimizer."""
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_cosine_schedule_warms_up_peaks_and_decays_to_zero():
    cfg = TrainConfig(lr=4e-3, schedule="cosine", epochs=10)
    total = 1000
    warmup = round(WARMUP_FRACTION * total)
    rates = _rates(cfg, total // cfg.epochs)
    assert len(rates) == total
    assert rates[0] == pytest.approx(4e-3 / warmup)  # the first step is small, not zero
    assert all(a < b for a, b in zip(rates[:warmup], rates[1:warmup]))  # a linear warm-up ...
    assert rates[warmup - 1] == pytest.approx(4e-3)  # ... to the peak
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1:]))  # then never rises
    middle = warmup + (total - warmup) // 2
    assert rates[middle - 1] == pytest.approx(2e-3, rel=1e-2)  # half-way down at half-way
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and rates[-2] > 0
    assert set(_rates(TrainConfig(lr=4e-3, epochs=2), 7)) == {4e-3}  # "constant": the rate itself, exactly
    assert _rates(TrainConfig(lr=4e-3, schedule="cosine", epochs=1), 1) == [pytest.approx(4e-3)]  # one step


def test_fit_follows_the_schedule_step_by_step(mnist_small, tiny_config):
    """The rate of each of fit's steps, against the schedule written out here from its description: a linear
    warm-up over the first 5% of the steps, then a half cosine down to 0 at the last step."""
    seen = []

    class Record(OnEpoch):
        def on_fit_start(self, run, first_epoch, batches_per_epoch):
            self.optimizer = run.optimizer
            seen.append(self.optimizer.param_groups[0]["lr"])  # the rate of the first step

        def on_batch_end(self):
            seen.append(self.optimizer.param_groups[0]["lr"])  # after a step: the rate of the next one

    train(tiny_config, mnist_small, epochs=3, batch_size=16, schedule="cosine", lr=2e-3,
          callbacks=[Record(lambda *a: None)])
    assert len(mnist_small) == 512 and WARMUP_FRACTION == 0.05  # so: 96 steps, 5 of them (4.8) warm-up
    assert len(seen) == 97  # the rate of each of the 96 steps, and the one after the last
    seen = np.array(seen[:96])
    # A linear warm-up, from a fifth of the rate to the full rate at the fifth step ...
    np.testing.assert_allclose(seen[:5], [4e-4, 8e-4, 1.2e-3, 1.6e-3, 2e-3], rtol=1e-9)
    # ... then half a cosine: the angle arccos(2 rate / peak - 1) grows by the same step every step,
    # from 0 at the peak to pi at the last step, where the rate is 0.
    angle = np.arccos(np.clip(2 * seen[4:] / 2e-3 - 1, -1, 1))
    np.testing.assert_allclose(np.diff(angle), np.pi / 91, atol=1e-6)
    assert angle[0] == pytest.approx(0, abs=1e-6) and seen[-1] == pytest.approx(0, abs=1e-15)


def test_the_schedule_factor_is_a_function_of_the_step_alone():
    assert [lr_factor("constant", 10, s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert lr_factor("cosine", 100, 0) == pytest.approx(1 / 5) and lr_factor("cosine", 100, 4) == 1.0
    assert lr_factor("cosine", 100, 99) == pytest.approx(0.0, abs=1e-15)


# --- resuming -------------------------------------------------------------------------------------

@pytest.mark.parametrize("binarize, schedule", [(None, "constant"), ("dynamic", "constant"),
                                                (None, "cosine")])
def test_resume_gives_the_same_history_as_a_straight_run(tmp_path, mnist_small, tiny_config,
                                                         binarize, schedule):
    straight_model, straight = train(tiny_config, mnist_small, epochs=4, binarize=binarize,
                                     schedule=schedule)

    path = tmp_path / "half.pt"
    # The first half of a 4-epoch run: interrupted after epoch 2 (the schedule is the 4-epoch one).
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, mnist_small, epochs=4, binarize=binarize, schedule=schedule, checkpoint=path,
              callbacks=[OnEpoch(lambda epoch, history: _stop_after(epoch, 2))])
    model, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2
    torch.manual_seed(999)  # whatever happened in between must not matter
    resumed = fit(model, mnist_small, epochs=4, batch_size=64, seed=0, binarize=binarize,
                  schedule=schedule, progress=False, device="cpu", resume=ckpt, checkpoint=path)
    assert len(resumed["loss"]) == 4
    assert maths(resumed) == maths(straight)
    assert same_weights(model, straight_model)
    assert load_checkpoint(path)[1]["epoch"] == 4


def _stop_after(epoch, last):
    if epoch == last:
        raise KeyboardInterrupt


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
            checkpoint=path, callbacks=[OnEpoch(poison)])
    assert "epoch 2" in str(info.value)
    kept, ckpt = load_checkpoint(path)  # would raise CheckpointError on NaN weights
    assert ckpt["epoch"] == 1 and len(ckpt["history"]["loss"]) == 1
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    assert all(torch.equal(snapshot[k], v) for k, v in kept.state_dict().items())
    assert temp_files(tmp_path) == []


def test_a_nan_loss_stops_training_before_any_weight_is_touched(tmp_path, mnist_small, tiny_config,
                                                                monkeypatch):
    real = vlosses.bernoulli_nll
    calls = {"n": 0}
    n_batches_per_epoch = -(-len(mnist_small) // 64)

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        recon = real(*args, **kwargs)
        if calls["n"] == n_batches_per_epoch + 1:  # the first batch of epoch 2
            return recon * float("nan")
        return recon

    monkeypatch.setattr(vlosses, "bernoulli_nll", nan_in_epoch_two)
    path = tmp_path / "run.pt"
    seed_everything(0)
    model = build_model(tiny_config)
    with pytest.raises(TrainingDiverged, match="(?i)nan.*lower learning rate"):
        fit(model, mnist_small, epochs=3, batch_size=64, progress=False, device="cpu",
            checkpoint=path)
    kept, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert same_weights(model, kept)  # the NaN batch changed nothing


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
    assert temp_files(tmp_path) == []




# --- what fit records -------------------------------------------------------------------------------

def test_the_saved_config_names_the_dataset_really_trained_on(tmp_path, mnist, tiny_config):
    """Regression: fit on a dataset's images used to record ``dataset: mnist`` whatever they were."""
    fashion_like = dataclasses.replace(mnist, name="fashion-mnist")
    model = build_model(tiny_config)
    fit(model, fashion_like, epochs=1, n_train=128, progress=False, device="cpu",
        checkpoint=tmp_path / "f.pt")
    saved = TrainConfig.from_dict(load_checkpoint(tmp_path / "f.pt")[1]["train_config"])
    assert saved.dataset == "fashion-mnist" and saved.n_train == 128 and saved.epochs == 1
    # Bare images carry no name: the checkpoint says so instead of guessing.
    fit(build_model(tiny_config), mnist.train.images[:128], epochs=1, progress=False, device="cpu",
        checkpoint=tmp_path / "t.pt")
    assert load_checkpoint(tmp_path / "t.pt")[1]["train_config"]["dataset"] is None


def test_fit_on_a_dataset_trains_on_the_subset_the_config_names(mnist, tiny_config):
    seed_everything(0)
    a = build_model(tiny_config)
    ha = fit(a, mnist, epochs=1, n_train=200, batch_size=64, progress=False, device="cpu")
    seed_everything(0)
    b = build_model(tiny_config)
    hb = fit(b, mnist.train.subset(200, seed=0).images, epochs=1, batch_size=64, progress=False,
             device="cpu")
    assert maths(ha) == maths(hb) and same_weights(a, b)


def test_fit_leaves_the_global_random_state_alone(mnist_small, tiny_config):
    model = build_model(tiny_config)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    fit(model, mnist_small, epochs=1, binarize="dynamic", progress=False, device="cpu")
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert (np.random.get_state()[1] == before[2]).all()


def test_fit_rejects_a_config_for_another_model_and_unknown_settings(mnist_small, tiny_config):
    model = build_model(tiny_config)
    other = TrainConfig(model=dataclasses.replace(tiny_config, latent_dim=5))
    with pytest.raises(ValueError, match="another model"):
        fit(model, mnist_small, other, progress=False)
    with pytest.raises(TypeError, match="unknown settings.*'learning_rate'"):
        fit(model, mnist_small, learning_rate=1e-3, progress=False)


def test_the_training_loop_reads_nothing_back_from_the_device_per_step(mnist_small, tiny_config,
                                                                         monkeypatch):
    """The divergence check reads its flag once per epoch, not per step: ``Tensor.item`` and ``bool``
    of a device tensor are what force a host sync on a GPU. Four times the steps, the same reads."""
    reads = {"n": 0}
    for name in ("item", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, _real=real: reads.__setitem__("n", reads["n"] + 1) or _real(self))
    counts = []
    for batch_size in (64, 16):
        reads["n"] = 0
        seed_everything(0)
        fit(build_model(tiny_config), mnist_small, epochs=2, batch_size=batch_size, progress=False, device="cpu")
        counts.append(reads["n"])
    assert counts[0] == counts[1], counts


def test_without_a_fused_optimizer_a_nan_loss_is_caught_per_step(tmp_path, mnist_small, tiny_config,
                                                                 monkeypatch):
    import vaelib.training as vtraining
    monkeypatch.setattr(vtraining, "make_optimizer",
                        lambda model, lr, kind: torch.optim.Adam(model.parameters(), lr=lr))
    real = vlosses.bernoulli_nll
    calls = {"n": 0}
    first_of_epoch_two = -(-len(mnist_small) // 64) + 1

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        recon = real(*args, **kwargs)
        return recon * float("nan") if calls["n"] == first_of_epoch_two else recon

    monkeypatch.setattr(vlosses, "bernoulli_nll", nan_in_epoch_two)
    path = tmp_path / "run.pt"
    seed_everything(0)
    model = build_model(tiny_config)
    with pytest.raises(TrainingDiverged, match="(?i)nan.*lower learning rate"):
        fit(model, mnist_small, epochs=3, batch_size=64, progress=False, device="cpu", checkpoint=path)
    kept, ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and calls["n"] == first_of_epoch_two  # stopped at the bad batch itself
    assert same_weights(model, kept)


# --- the loop itself --------------------------------------------------------------------------------

def test_fit_reads_in_one_screen():
    """fit is a loop a reader takes in at once, as pytorch/examples' train loop: at most 50 lines, with its
    signature and docstring."""
    import inspect

    import vaelib.training

    assert len(inspect.getsource(vaelib.training.fit).splitlines()) <= 50


def test_the_fused_adam_kernel_skips_its_update_while_found_inf_is_set():
    """DivergenceCheck relies on this behaviour of the installed PyTorch: a fused Adam whose private
    ``found_inf`` tensor is non-zero leaves the weights and its own state (moments, step count) as they were;
    at zero it steps. This is the hook torch.amp.GradScaler skips steps with; if an upgrade changes it, this
    test fails rather than a diverged run quietly updating its weights."""
    try:
        torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), fused=True)
    except (RuntimeError, TypeError):
        pytest.skip(f"PyTorch {torch.__version__} has no fused Adam on the CPU: DivergenceCheck checks on the host")
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(layer, 0.1)
    assert optimizer.defaults["fused"]

    def step():
        optimizer.zero_grad()
        layer(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()

    def snapshot():
        state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in layer.parameters()]
        return [p.detach().clone() for p in layer.parameters()], state

    step()  # a normal first step, so that the moments exist
    weights, state = snapshot()
    optimizer.found_inf = torch.ones(())
    step()
    after, state_after = snapshot()
    assert all(torch.equal(a, b) for a, b in zip(weights, after))
    assert all(torch.equal(s[k], t[k]) for s, t in zip(state, state_after) for k in s)
    optimizer.found_inf = torch.zeros(())
    step()
    assert not any(torch.equal(a, p) for a, p in zip(weights, layer.parameters()))


def test_the_divergence_check_stops_at_a_nan_loss_with_either_optimizer(tiny_config):
    """A NaN loss is caught either way: by the device flag, read at the end of the epoch, with a fused Adam;
    at once, on the host, without one."""
    for fused in (True, False):
        model = build_model(tiny_config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        check = DivergenceCheck(optimizer, lr=1e-3)
        check.watch(torch.tensor(1.0), epoch=3)
        check.check(model, epoch=3)  # a finite loss passes
        if fused:
            check.watch(torch.tensor(float("nan")), epoch=3)
            assert optimizer.found_inf.item() == 1.0  # from here on the kernel skips every update
            with pytest.raises(TrainingDiverged, match="NaN or infinite in epoch 3.*--lr 0.0001"):
                check.check(model, epoch=3)
        else:
            with pytest.raises(TrainingDiverged, match="became nan in epoch 3.*--lr 0.0001"):
                check.watch(torch.tensor(float("nan")), epoch=3)


def test_a_resumed_run_keeps_its_schedule_and_takes_a_new_peak(tmp_path, mnist_small, tiny_config):
    """The checkpoint holds the schedule's state; resumed, the schedule goes on from that step, at the peak
    and for the length the resumed run asks for (the learning rate is set once, by the scheduler)."""
    path = tmp_path / "run.pt"
    train(tiny_config, mnist_small, epochs=2, schedule="cosine", lr=2e-3, checkpoint=path)
    model, ckpt = load_checkpoint(path)
    steps_per_epoch = -(-len(mnist_small) // 64)
    assert ckpt["format_version"] == 5 and ckpt["scheduler"]["last_epoch"] == 2 * steps_per_epoch
    seen = []

    class First(OnEpoch):
        def on_fit_start(self, run, first_epoch, batches_per_epoch):
            seen.append((first_epoch, run.optimizer.param_groups[0]["lr"], run.scheduler.base_lrs))

    fit(model, mnist_small, TrainConfig.from_dict(ckpt["train_config"]), epochs=4, lr=1e-3, resume=ckpt,
        progress=False, device="cpu", callbacks=[First(lambda *a: None)])
    done, total = 2 * steps_per_epoch, 4 * steps_per_epoch
    warmup = max(1, round(0.05 * total))
    assert seen == [(3, pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * (done - warmup + 1) / (total - warmup)))),
                     [1e-3])]
