"""Time to quality: each book model's test score against wall-clock training time, per recipe.

    python benchmarks/time_to_quality.py --dataset fashion-mnist --json benchmarks/results/time_to_quality.json
    python benchmarks/time_to_quality.py --models vae-20d --epochs 4 6 8   # one model, fewer candidates
    python benchmarks/time_to_quality.py --batch-sizes 128 256 --lrs 0.005 0.008 --epochs 5 6

As in MLPerf's time-to-train, the measure is the wall time a recipe needs to reach a target. The target of
each model is its score under the **old recipe** (constant Adam at 0.001, batch 128, 15 epochs: the book's
recipe before the cosine schedule) minus 1 nat. The old recipe's test score is taken after every
epoch, so its own time to target is known too; each **candidate** (a schedule, a peak learning rate, a
batch size and a number of epochs) is one full run, since a schedule depends on the run's length.

The score is the test value of the objective the model trains on, as an ELBO (higher is better): the ELBO
for a VAE, minus the reconstruction NLL for an autoencoder and for a VAE trained with beta = 0 (whose
ELBO is not what it optimises: chapter 4 shows it falling as sigma shrinks). Training time excludes the
evaluations. ``--json`` merges into an existing file, so the slow convolutional model can be measured in
a run of its own (``--models conv-vae-20d --epochs 4 6 8``). Every run starts from the same seed, on the
full training split, on this machine's CPU threads (or ``--device``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaelib import book  # noqa: E402
from vaelib.callbacks import Callback  # noqa: E402
from vaelib.evaluation import evaluate  # noqa: E402
from vaelib.models import build_model  # noqa: E402
from vaelib.recipe import TrainConfig  # noqa: E402
from vaelib.training import fit, seed_everything  # noqa: E402

# The book's recipe before the schedule, which it keeps on the offline subset of MNIST.
OLD = {k: getattr(book.SUBSET, k) for k in ("schedule", "lr", "batch_size", "epochs")}


def score(model, images: torch.Tensor, beta: float) -> float:
    """The test value of the objective ``model`` trains on, as an ELBO (nats per image, higher is better)."""
    metrics = evaluate(model, images)
    return metrics["elbo"] if model.config.kind == "vae" and beta > 0 else -metrics["recon"]


class _EveryEpoch(Callback):
    """Scores the model after each epoch, outside the training clock."""

    def __init__(self, images: torch.Tensor, beta: float) -> None:
        self.images, self.beta, self.points, self.paused = images, beta, [], 0.0

    def on_epoch_end(self, run, epoch, history) -> None:
        t0 = time.perf_counter()
        run.model.eval()
        self.points.append([sum(history["seconds"]), score(run.model, self.images, self.beta)])
        run.model.train()
        self.paused += time.perf_counter() - t0


def run(config: TrainConfig, data, device: str, curve: bool) -> dict:
    """Train one recipe from scratch; its training seconds, final score and (``curve``) per-epoch scores."""
    seed_everything(config.seed)
    model = build_model(config.model)
    every = [_EveryEpoch(data.test.images, config.beta)] if curve else []
    history = fit(model, data, config, device=device, progress=False, callbacks=every)
    seconds = sum(history["seconds"])
    row = {"schedule": config.schedule, "lr": config.lr, "batch_size": config.batch_size,
           "epochs": config.epochs, "seconds": seconds,
           "score": every[0].points[-1][1] if curve else score(model.cpu(), data.test.images, config.beta)}
    if curve:
        row["curve"] = every[0].points
    return row


def time_to_target(row: dict, target: float) -> float | None:
    """Seconds until ``row`` first scores at least ``target`` (None if it never does)."""
    if "curve" in row:
        return next((s for s, v in row["curve"] if v >= target), None)
    return row["seconds"] if row["score"] >= target else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--models", nargs="+", default=list(book.BOOK_MODELS), choices=list(book.BOOK_MODELS))
    parser.add_argument("--epochs", nargs="+", type=int, default=[4, 6, 8, 10],
                        help="candidate lengths of the cosine schedule")
    parser.add_argument("--old-epochs", type=int, default=OLD["epochs"],
                        help="epochs of the old recipe (default: the book's 15)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[book.BOOK_LR],
                        help="candidate peak learning rates")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the results here; models already in the file and not measured now are kept")
    args = parser.parse_args()
    data = book.dataset(args.dataset)
    results = {"dataset": data.name, "n_train": len(data.train), "n_test": len(data.test),
               "device": args.device, "threads": torch.get_num_threads(),
               "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, PyTorch {torch.__version__}",
               "old_recipe": {k: v for k, v in OLD.items() if k != "epochs"}, "models": {}}
    if args.json and args.json.exists():
        results["models"] = json.loads(args.json.read_text())["models"]
    print(f"{data.name}, {len(data.train):,} training images, {torch.get_num_threads()} threads\n")
    print("| model | recipe | epochs | train s | test score | target | s to target |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models:
        spec = book.BOOK_MODELS[name].recipe
        base = dataclasses.replace(book.config(**{k: v for k, v in spec.items() if k != "epochs"}),
                                   dataset=data.name, n_train=None)
        old = run(dataclasses.replace(base, **{**OLD, "epochs": args.old_epochs}), data, args.device,
                  curve=True)
        target = old["score"] - 1.0
        rows = [old] + [run(dataclasses.replace(base, schedule="cosine", lr=lr, batch_size=b, epochs=e),
                            data, args.device, curve=False)
                        for b in args.batch_sizes for lr in args.lrs for e in args.epochs]
        for row in rows:
            row["seconds_to_target"] = time_to_target(row, target)
            t = row["seconds_to_target"]
            print(f"| {name} | {row['schedule']} {row['lr']:g}, batch {row['batch_size']} | {row['epochs']} | "
                  f"{row['seconds']:.1f} | {row['score']:.2f} | {target:.2f} | "
                  f"{'not reached' if t is None else f'{t:.1f}'} |", flush=True)
        results["models"][name] = {"target": target, "runs": rows}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
