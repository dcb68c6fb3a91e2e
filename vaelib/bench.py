"""``python -m vaelib bench``: vaelib's training speed against the common recipe and the machine's limit.

In one run, on the same data and model (the canonical 784-400-20 VAE) and the same recipe (vaelib's own,
``TrainConfig()``, which is pytorch/examples'):

1. vaelib's own path: in-memory tensors, index slicing, fused Adam (:func:`vaelib.training.fit`);
2. the widely copied recipe: a torchvision dataset with ``ToTensor`` and a ``DataLoader`` doing
   per-sample Python work, and the model and loss of pytorch/examples' ``vae/main.py``;
3. this machine's fp32 matrix-multiply throughput at the model's exact shapes (forward and backward),
   and the samples/s it implies if training were nothing but those multiplies (the roofline).

Ratios are measured in one run, so a busy machine slows all three alike.
"""

from __future__ import annotations

import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelib import book
from vaelib.data import Dataset
from vaelib.evaluation import evaluate
from vaelib.models import VAE, build_model, count_parameters
from vaelib.recipe import TrainConfig
from vaelib.training import fit, seed_everything

# The recipe of pytorch/examples' vae/main.py, its own defaults, kept as that script writes them: the baseline
# is that script, whatever vaelib's recipe becomes. The comparison is like for like only while vaelib's
# recipe (TrainConfig) has the same batch size and rate, which tests/test_bench.py checks.
EXAMPLES_BATCH_SIZE, EXAMPLES_LR = 128, 1e-3


class ExamplesVAE(nn.Module):
    """The model of pytorch/examples ``vae/main.py``, layer for layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def to_vaelib(self) -> VAE:
        """The same weights in a vaelib VAE, so both are evaluated by the same code."""
        vae = build_model("vae-784-400-20")
        enc, dec = vae.encoder[1], vae.decoder[0]
        with torch.no_grad():
            enc[0].weight.copy_(self.fc1.weight)
            enc[0].bias.copy_(self.fc1.bias)
            enc[2].weight.copy_(torch.cat([self.fc21.weight, self.fc22.weight]))
            enc[2].bias.copy_(torch.cat([self.fc21.bias, self.fc22.bias]))
            dec[0].weight.copy_(self.fc3.weight)
            dec[0].bias.copy_(self.fc3.bias)
            dec[2].weight.copy_(self.fc4.weight)
            dec[2].bias.copy_(self.fc4.bias)
        return vae.eval()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _torchvision_dataset(data: Dataset, root: Path):
    """The training split as the torchvision dataset class reads it from its raw files."""
    from torchvision import datasets, transforms

    cls = datasets.MNIST if data.name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True)
    images = (data.train.images[:, 0] * 255).round().to(torch.uint8).numpy()
    _write_idx(raw / "train-images-idx3-ubyte", images)
    _write_idx(raw / "train-labels-idx1-ubyte", data.train.labels.numpy().astype(np.uint8))
    _write_idx(raw / "t10k-images-idx3-ubyte", images[:1])
    _write_idx(raw / "t10k-labels-idx1-ubyte", data.train.labels[:1].numpy().astype(np.uint8))
    return cls(str(root), train=True, download=False, transform=transforms.ToTensor())


def train_baseline(data: Dataset, epochs: int, seed: int = 0) -> tuple[ExamplesVAE, float]:
    """Train with the pytorch/examples recipe; return the model and samples per second."""
    seed_everything(seed)
    model = ExamplesVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=EXAMPLES_LR)
    with tempfile.TemporaryDirectory() as tmp:
        loader = torch.utils.data.DataLoader(_torchvision_dataset(data, Path(tmp)),
                                             batch_size=EXAMPLES_BATCH_SIZE, shuffle=True)
        model.train()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for x, _ in loader:
                optimizer.zero_grad()
                recon, mu, logvar = model(x)
                bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
                kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
                (bce + kld).backward()
                optimizer.step()
        seconds = time.perf_counter() - t0
    return model, epochs * len(data.train) / seconds


def gemm_throughput(model: nn.Module, batch: int, min_seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of the matrix multiplies one training step of ``model`` needs: for each linear
    layer, the forward product and the two backward ones (input and weight gradients)."""
    shapes = []
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            n_in, n_out = layer.in_features, layer.out_features
            shapes += [(batch, n_in, n_out), (batch, n_out, n_in), (n_out, batch, n_in)]
    mats = [(torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b, c in mats:  # warm-up
        torch.mm(a, b, out=c)
    reps, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < min_seconds:
        for _ in range(20):
            for a, b, c in mats:
                torch.mm(a, b, out=c)
        reps += 20
        elapsed = time.perf_counter() - t0
    return reps * flops / elapsed / 1e9


def run(dataset: str = "fashion-mnist", epochs: int = 1, seed: int = 0, device: str = "cpu",
        n_train: int | None = None) -> dict:
    """Run the three measurements; return the figures as a dict."""
    data = book.dataset(dataset)
    data.train = data.train.subset(n_train, seed=seed)
    n_threads = torch.get_num_threads()

    seed_everything(seed)
    model = build_model("vae-784-400-20")
    config = TrainConfig(model=model.config, epochs=epochs, seed=seed)
    history = fit(model, data, config, device=device, progress=False)
    samples_per_s = epochs * len(data.train) / sum(history["seconds"])
    elbo = evaluate(model.cpu(), data.test.images)["elbo"]

    baseline, baseline_samples_per_s = train_baseline(data, epochs, seed)
    baseline_elbo = evaluate(baseline.to_vaelib(), data.test.images)["elbo"]

    gflops = gemm_throughput(model, config.batch_size)
    n_params = count_parameters(model)
    roofline = gflops * 1e9 / (6 * n_params)
    return {
        "dataset": data.name, "n_train": len(data.train), "epochs": epochs, "batch_size": config.batch_size,
        "device": device, "threads": n_threads, "parameters": n_params,
        "samples_per_s": samples_per_s, "baseline_samples_per_s": baseline_samples_per_s,
        "speedup": samples_per_s / baseline_samples_per_s,
        "gemm_gflops": gflops, "roofline_samples_per_s": roofline,
        "roofline_fraction": samples_per_s / roofline,
        "test_elbo": elbo, "baseline_test_elbo": baseline_elbo,
    }


def table(r: dict) -> str:
    rows = [
        ("vaelib (in-memory tensors, fused Adam)", f"{r['samples_per_s']:,.0f}", f"{r['test_elbo']:.2f}"),
        ("torchvision + ToTensor + DataLoader", f"{r['baseline_samples_per_s']:,.0f}",
         f"{r['baseline_test_elbo']:.2f}"),
        ("roofline (fp32 GEMM at the model's shapes)", f"{r['roofline_samples_per_s']:,.0f}", "-"),
    ]
    lines = [f"{r['dataset']}, {r['n_train']:,} images, {r['epochs']} epoch(s), batch {r['batch_size']}, "
             f"{r['threads']} threads, {r['parameters']:,} parameters",
             f"{'training path':<44}{'samples/s':>12}{'test ELBO':>12}"]
    lines += [f"{a:<44}{b:>12}{c:>12}" for a, b, c in rows]
    lines.append(f"speedup over the recipe: {r['speedup']:.1f}x; fraction of roofline: "
                 f"{r['roofline_fraction']:.0%}; GEMM {r['gemm_gflops']:.1f} GFLOP/s")
    return "\n".join(lines)
