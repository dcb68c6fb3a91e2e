"""Models (vaelib.models): shapes, validation, the logvar clamp, presets and configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaelib.losses import bernoulli_nll, gaussian_kl
from vaelib.models import LOGVAR_RANGE, PRESETS, VAE, Autoencoder, ModelConfig, VAEOutput, build_model, count_parameters


def _linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.fixture
def x():
    return torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_vae_shapes(arch, x):
    torch.manual_seed(0)
    model = build_model(kind="vae", arch=arch, latent_dim=3, hidden=(16,))
    assert isinstance(model, VAE)
    out = model(x)
    assert isinstance(out, VAEOutput)
    assert out.logits.shape == (5, 1, 28, 28)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 3)
    mu, logvar = model.encode(x)
    torch.testing.assert_close(mu, out.mu)
    assert model.decode(torch.zeros(2, 3)).shape == (2, 1, 28, 28)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    # reconstruct decodes the posterior mean: deterministic, and equal to sigmoid(decode(mu)).
    torch.testing.assert_close(rec, torch.sigmoid(model.decode(mu)).detach())
    samples = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_autoencoder_shapes(arch, x):
    torch.manual_seed(0)
    model = build_model(kind="ae", arch=arch, latent_dim=2, hidden=(16,))
    assert isinstance(model, Autoencoder) and not isinstance(model, VAE)
    z = model.encode(x)
    assert z.shape == (5, 2)
    assert model(x).shape == (5, 1, 28, 28)
    torch.testing.assert_close(model(x), model.decode(z))
    assert model.reconstruct(x).shape == x.shape


def test_vae_forward_samples_z_from_q(x):
    """z = mu + sigma * eps: with the global seed fixed, z is reproducible and centred on mu."""
    torch.manual_seed(0)
    model = build_model(kind="vae", latent_dim=2, hidden=(8,))
    mu, logvar = model.encode(x)
    torch.manual_seed(1)
    z1 = model(x).z
    torch.manual_seed(1)
    z2 = model(x).z
    torch.testing.assert_close(z1, z2)
    torch.manual_seed(1)
    eps = torch.randn(mu.shape)
    torch.testing.assert_close(z1, mu + torch.exp(0.5 * logvar) * eps)


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("bad", [(5, 784), (5, 28, 28), (5, 1, 32, 32), (5, 3, 28, 28)])
def test_wrong_input_shape_raises_a_clear_value_error(kind, arch, bad):
    model = build_model(kind=kind, arch=arch, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"expected images of shape \[batch, 1, 28, 28\].*got"):
        model(torch.zeros(bad))
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.zeros(bad))


def test_non_tensor_input_raises_value_error():
    model = build_model(kind="vae", latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="expected images"):
        model.encode([[0.0] * 784])


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("bad", [(3, 5), (3,), (3, 4, 1)])
def test_wrong_latent_size_raises_a_clear_value_error(kind, bad):
    model = build_model(kind=kind, latent_dim=4, hidden=(8,))
    with pytest.raises(ValueError, match=r"expected codes z of shape \[batch, 4\]"):
        model.decode(torch.zeros(bad))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("bias, expected", [(1e4, LOGVAR_RANGE[1]), (-1e4, LOGVAR_RANGE[0])])
def test_logvar_is_clamped_to_logvar_range(arch, bias, expected, x):
    model = build_model(kind="vae", arch=arch, latent_dim=3, hidden=(8,))
    last = [m for m in model.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias[3:] = bias  # the second half of the output is logvar
    mu, logvar = model.encode(x)
    assert torch.equal(logvar, torch.full_like(logvar, expected))
    out = model(x)
    assert torch.isfinite(out.z).all() and torch.isfinite(out.logits).all()


def test_logvar_inside_the_range_is_untouched(x):
    model = build_model(kind="vae", latent_dim=3, hidden=(8,))
    raw = model.encoder(x)[:, 3:]
    assert raw.abs().max() < 10  # a fresh model's raw output is well inside the range
    torch.testing.assert_close(model.encode(x)[1], raw)


def test_preset_vae_784_400_20_has_the_canonical_layer_sizes():
    model = build_model("vae-784-400-20")
    assert isinstance(model, VAE)
    assert model.config.latent_dim == 20
    # Encoder 784 -> 400 -> (mu, logvar) of 20 each; decoder 20 -> 400 -> 784.
    assert _linear_sizes(model.encoder) == [(784, 400), (400, 40)]
    assert _linear_sizes(model.decoder) == [(20, 400), (400, 784)]
    expected = (784 * 400 + 400) + (400 * 40 + 40) + (20 * 400 + 400) + (400 * 784 + 784)
    assert count_parameters(model) == expected


def test_other_presets():
    ae = build_model("ae-784-400-20")
    assert isinstance(ae, Autoencoder) and not isinstance(ae, VAE)
    assert _linear_sizes(ae.encoder) == [(784, 400), (400, 20)]
    conv = build_model("conv-vae")
    assert isinstance(conv, VAE) and conv.config.arch == "conv"
    assert any(isinstance(m, nn.Conv2d) for m in conv.modules())
    assert conv(torch.zeros(2, 1, 28, 28)).mu.shape == (2, 20)
    assert set(PRESETS) >= {"vae-784-400-20", "ae-784-400-20", "conv-vae"}


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="vae-784-400-20"):
        build_model("vae-big")


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="gan"), "unknown model 'gan'.*ae, vae"),
    (dict(arch="rnn"), "unknown architecture 'rnn'.*mlp, conv"),
    (dict(latent_dim=0), "latent_dim must be a positive integer"),
    (dict(latent_dim=2.5), "latent_dim must be a positive integer"),
    (dict(hidden=(16, 0)), "hidden sizes must be positive"),
    (dict(arch="conv", image_shape=(1, 30, 30)), "divisible by 4"),
])
def test_model_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_model_config_round_trips_through_a_dict():
    cfg = ModelConfig(kind="ae", arch="conv", latent_dim=7, hidden=[32, 16], image_shape=[1, 28, 28])
    assert cfg.hidden == (32, 16) and cfg.image_shape == (1, 28, 28)
    d = cfg.to_dict()
    assert d["hidden"] == [32, 16]
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig.from_dict({**d, "extra": 1}) == cfg


def test_deeper_mlp_uses_every_hidden_size():
    model = build_model(kind="vae", latent_dim=5, hidden=(64, 32))
    assert _linear_sizes(model.encoder) == [(784, 64), (64, 32), (32, 10)]
    assert _linear_sizes(model.decoder) == [(5, 32), (32, 64), (64, 784)]


# --- one interface for every model -----------------------------------------------------------------

def test_a_model_class_refuses_a_config_of_the_other_kind():
    with pytest.raises(ValueError, match="build_model"):
        VAE(ModelConfig(kind="ae"))
    with pytest.raises(ValueError, match="build_model"):
        Autoencoder(ModelConfig(kind="vae"))
    with pytest.raises(ValueError, match="either a ModelConfig or keyword"):
        VAE(ModelConfig(), latent_dim=3)
    assert VAE(latent_dim=3).config.kind == "vae" and Autoencoder(latent_dim=3).config.kind == "ae"


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_every_model_answers_the_same_calls(kind, x):
    torch.manual_seed(0)
    model = build_model(kind=kind, latent_dim=3, hidden=(16,))
    terms = model.loss_terms(x, beta=2.0, generator=torch.Generator().manual_seed(0))
    n = len(x)
    for name in ("loss", "elbo", "recon", "kl", "sigma"):
        assert getattr(terms, name).shape == (n,), name
    assert terms.kl_per_dim.shape == (n, 3)
    torch.testing.assert_close(terms.loss, terms.recon + 2.0 * terms.kl)
    torch.testing.assert_close(terms.elbo, -(terms.recon + terms.kl))
    assert model.code(x).shape == (n, 3)
    assert model.reconstruct(x).shape == x.shape
    assert model.variational == (kind == "vae")


def test_the_autoencoder_is_the_case_with_no_kl(x):
    torch.manual_seed(0)
    ae = Autoencoder(latent_dim=3, hidden=(16,))
    terms = ae.loss_terms(x, beta=5.0)
    assert (terms.kl == 0).all() and (terms.kl_per_dim == 0).all() and (terms.sigma == 0).all()
    torch.testing.assert_close(terms.loss, bernoulli_nll(ae(x), x))
    torch.testing.assert_close(ae.code(x), ae.encode(x))
    with pytest.raises(ValueError, match="no logvar"):
        ae.posterior(x)


def test_the_vae_terms_are_the_elbo_at_one_reparameterized_sample(x):
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, hidden=(16,))
    terms = vae.loss_terms(x, beta=0.5, generator=torch.Generator().manual_seed(7))
    mu, logvar = vae.posterior(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    logits = vae.decode(mu + torch.exp(0.5 * logvar) * eps)
    torch.testing.assert_close(terms.recon, bernoulli_nll(logits, x))
    torch.testing.assert_close(terms.kl, gaussian_kl(mu, logvar))
    torch.testing.assert_close(terms.sigma, torch.exp(0.5 * logvar).mean(1))
    torch.testing.assert_close(terms.loss, terms.recon + 0.5 * terms.kl)
    torch.testing.assert_close(vae.code(x), mu)


def test_build_model_refuses_a_preset_or_a_config_with_settings_of_its_own():
    """A preset names its sizes: "vae-784-400-20" with latent_dim=2 would be a model its name does not describe."""
    from vaelib.errors import ConfigError, VaelibError

    for config in ("vae-784-400-20", PRESETS["vae-784-400-20"]):
        with pytest.raises(ConfigError, match="latent_dim=2; pass one or the other") as info:
            build_model(config, latent_dim=2)
        assert isinstance(info.value, VaelibError)
    model = build_model(kind="vae", latent_dim=2)  # the settings alone
    assert model.config.latent_dim == 2 and model.encode(torch.rand(1, 1, 28, 28))[0].shape == (1, 2)
    assert build_model("vae-784-400-20").config.latent_dim == 20


def test_every_model_is_a_model_and_the_base_declares_the_interface():
    """Model is abstract: a subclass that leaves out one of the calls every caller relies on cannot be built."""
    from vaelib.models import Model

    assert isinstance(build_model(kind="ae", latent_dim=2), Model) and isinstance(build_model(), Model)
    assert Model.__abstractmethods__ == {"loss_terms", "code", "posterior"}
    assert callable(Model.decode)  # one decoder for every kind, defined on the base
    with pytest.raises(TypeError, match="abstract"):
        Model()

    class NoPosterior(Model):
        kind, variational = "vae", True

        def loss_terms(self, x, beta=1.0, *, generator=None, validate=True):
            raise NotImplementedError

        def code(self, x):
            raise NotImplementedError

    with pytest.raises(TypeError, match="posterior"):
        NoPosterior()


def test_a_model_too_large_for_memory_is_an_out_of_memory_error(monkeypatch):
    """The allocator's own failure, raised by a real allocation: PyTorch's error names no setting."""
    from vaelib.errors import OutOfMemory

    real = torch.nn.Linear.__init__

    def fails_to_allocate(self, a, b, *args, **kwargs):
        if a * b > 10**6:
            torch.empty(2**62, dtype=torch.uint8)  # more than any machine has: the allocator refuses
        real(self, a, b, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Linear, "__init__", fails_to_allocate)
    with pytest.raises(OutOfMemory, match="more than this machine's memory holds"):
        build_model(kind="vae", latent_dim=2, hidden=(4096,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_images_of_another_float_type_are_a_clear_error(dtype, mnist_small):
    from vaelib.evaluation import evaluate
    from vaelib.training import fit

    model = build_model(kind="vae", latent_dim=2, hidden=(8,))
    images = mnist_small[:64].to(dtype)
    with pytest.raises(ValueError, match=f"dtype torch.float32.*got {dtype}"):
        fit(model, images, epochs=1, progress=False)
    with pytest.raises(ValueError, match=f"got {dtype}"):
        evaluate(model, images)


def test_a_vae_with_a_fixed_sigma_gives_every_cloud_that_width():
    import math
    from vaelib.errors import ConfigError
    model = build_model(ModelConfig(kind="vae", latent_dim=3, sigma=0.5))
    mu, logvar = model.posterior(torch.rand(4, 1, 28, 28))
    assert mu.shape == logvar.shape == (4, 3)
    torch.testing.assert_close(torch.exp(0.5 * logvar), torch.full((4, 3), 0.5))
    assert math.isclose(model.loss_terms(torch.rand(4, 1, 28, 28)).sigma[0].item(), 0.5, rel_tol=1e-6)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    assert "sigma" not in ModelConfig(kind="vae").to_dict()  # a learned sigma keeps the record it had
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(ConfigError, match="fixed sigma"):
            ModelConfig(kind="vae", sigma=bad)
    with pytest.raises(ConfigError, match="fixed sigma"):
        ModelConfig(kind="ae", sigma=1.0)
