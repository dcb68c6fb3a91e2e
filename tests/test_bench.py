"""The benchmark's pieces: the baseline is the same model, and the figures are consistent."""

from __future__ import annotations

import math

import torch

from vaelib import bench


def test_baseline_model_is_the_canonical_vae_with_the_same_weights():
    torch.manual_seed(0)
    base = bench.ExamplesVAE()
    vae = base.to_vaelib()
    x = torch.rand(5, 1, 28, 28)
    h1 = torch.relu(base.fc1(x.view(-1, 784)))
    mu, logvar = vae.encode(x)
    torch.testing.assert_close(mu, base.fc21(h1))
    torch.testing.assert_close(logvar, base.fc22(h1))
    z = torch.randn(5, 20)
    torch.testing.assert_close(torch.sigmoid(vae.decode(z)).view(5, -1),
                               torch.sigmoid(base.fc4(torch.relu(base.fc3(z)))))


def test_gemm_throughput_counts_the_flops_of_every_linear_layer(monkeypatch):
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b, out: calls.append((a.shape, b.shape)) or real_mm(a, b, out=out))
    gflops = bench.gemm_throughput(torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3)),
                                   batch=4, min_seconds=0.01)
    assert math.isfinite(gflops) and gflops > 0
    # three products per layer: forward, input gradient, weight gradient
    assert set(calls) == {((4, 10), (10, 20)), ((4, 20), (20, 10)), ((20, 4), (4, 10)),
                          ((4, 20), (20, 3)), ((4, 3), (3, 20)), ((3, 4), (4, 20))}


def test_both_training_paths_follow_the_same_recipe_to_the_same_quality():
    """The comparison is fair only if the recipe is the same: one epoch on the same 2,000 digits must
    give test ELBOs within a few nats of each other, both far above an untrained model's."""
    r = bench.run(dataset="mnist", epochs=1, n_train=2000)
    assert r["n_train"] == 2000 and r["parameters"] == (784 * 400 + 400) + (400 * 40 + 40) + (20 * 400 + 400) + (400 * 784 + 784)
    assert abs(r["test_elbo"] - r["baseline_test_elbo"]) < 5, r
    assert max(r["test_elbo"], r["baseline_test_elbo"]) < -100
    assert "speedup over the recipe" in bench.table(r)
