"""The command line: ``python -m vaelib {train,evaluate,sample,bench}``.

Errors are one line with no traceback: exit code 2 for usage errors, 1 for runtime errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from vaelib.data import DATASETS
from vaelib.errors import CheckpointError, TrainingDiverged, VaelibError
from vaelib.models import ARCHS, KINDS

USAGE, RUNTIME = 2, 1


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _number(minimum: float, strict: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} "
                                             f"{minimum:g}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vaelib", description="Train, evaluate and sample VAEs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train an autoencoder or a VAE and save a checkpoint")
    t.add_argument("--model", choices=KINDS, default=None, help="default: vae")
    t.add_argument("--arch", choices=ARCHS, default="mlp")
    t.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: $VAELIB_DATASET or mnist")
    t.add_argument("--latent-dim", type=_positive_int, default=20)
    t.add_argument("--hidden", type=_positive_int, nargs="+", default=[400])
    t.add_argument("--beta", type=_number(0, strict=False), default=1.0)
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs in total (default 10, or the resumed run's own)")
    t.add_argument("--lr", type=_number(0, strict=True), default=1e-3)
    t.add_argument("--batch-size", type=_positive_int, default=128)
    t.add_argument("--n-train", type=_positive_int, default=None,
                   help="train on a fixed random subset of this many images")
    t.add_argument("--seed", type=_non_negative_int, default=0)
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--out", type=Path, default=None,
                   help="checkpoint path (default: MODEL-DATASET.pt, or the --resume path)")
    t.add_argument("--resume", type=Path, default=None,
                   help="continue training a checkpoint up to --epochs in total")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    e = sub.add_parser("evaluate", help="test-set ELBO, log-likelihood and active units")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: the dataset the model was trained on")
    e.add_argument("--iw-samples", type=_non_negative_int, default=50,
                   help="importance samples K for the log-likelihood estimate (0: skip)")
    e.add_argument("--n-test", type=_positive_int, default=None, help="evaluate on the first N only")
    e.add_argument("--json", action="store_true", help="end with one JSON line of the metrics")

    s = sub.add_parser("sample", help="decode codes drawn from N(0, I) into an image grid")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("--n", type=_positive_int, default=64)
    s.add_argument("--seed", type=_non_negative_int, default=0)
    s.add_argument("--out", type=Path, default=Path("samples.png"))

    b = sub.add_parser("bench", help="training speed against the common recipe and the roofline")
    b.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    b.add_argument("--epochs", type=_positive_int, default=1)
    b.add_argument("--device", default="cpu")
    b.add_argument("--n-train", type=_positive_int, default=None, help="time on a subset only")
    b.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    return parser


def _train(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from vaelib import book
    from vaelib.callbacks import OnEpoch
    from vaelib.checkpoints import load_checkpoint
    from vaelib.evaluation import evaluate
    from vaelib.models import ModelConfig, build_model
    from vaelib.training import TrainConfig, fit, get_device, seed_everything

    device = get_device(args.device)
    resume = None
    if args.resume is not None:
        model, resume = load_checkpoint(args.resume, device=device, expect_kind=args.model)
        config = TrainConfig.from_dict(resume["train_config"])
        config = replace(config, epochs=args.epochs or config.epochs)
        out = args.out or args.resume
        if resume["epoch"] >= config.epochs:
            print(f"{args.resume} already holds {resume['epoch']} epochs; pass --epochs N (more than "
                  f"{resume['epoch']}) to train further")
            return 0
    else:
        config = TrainConfig(
            model=ModelConfig(kind=args.model or "vae", arch=args.arch, latent_dim=args.latent_dim,
                              hidden=tuple(args.hidden)),
            dataset=args.dataset or book.dataset_name(), epochs=args.epochs or 10,
            batch_size=args.batch_size, lr=args.lr, beta=args.beta, seed=args.seed,
            n_train=args.n_train)
        out = args.out or Path(f"{config.model.kind}-{config.dataset}.pt")
        seed_everything(config.seed)
        model = build_model(config.model)

    data = book.dataset(config.dataset)

    def report(epoch: int, history: dict) -> None:
        tqdm.write(f"epoch {epoch:3d}/{config.epochs}  loss {history['loss'][-1]:8.2f}  "
                   f"recon {history['recon'][-1]:8.2f}  kl {history['kl'][-1]:7.2f}  "
                   f"sigma {history['mean_sigma'][-1]:.3f}  "
                   f"({history['samples_per_s'][-1]:,.0f} images/s)  saved {out}")

    try:
        history = fit(model, data, config, device=device, checkpoint=out, resume=resume,
                      progress=not args.no_progress and book.show_progress(), callbacks=[OnEpoch(report)])
    except KeyboardInterrupt:
        done = _epochs_in(out)
        if done:
            print(f"\ninterrupted: {out} holds the last completed epoch ({done}) and loads normally; "
                  f"continue with: python -m vaelib train --resume {out} --epochs {config.epochs}",
                  file=sys.stderr)
        else:
            print("\ninterrupted before the first epoch completed; nothing was saved", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        done = _epochs_in(out)
        kept = f"; the last good checkpoint ({done} epochs) is kept at {out}" if done else ""
        print(f"{_prog()}: error: training diverged: {e}{kept}", file=sys.stderr)
        return RUNTIME

    with torch.no_grad():
        metrics = evaluate(model, data.test.images)
    final = {"epochs": len(history["loss"]), "train_loss": history["loss"][-1],
             "train_elbo": history["elbo"][-1] if model.variational else None,
             "test_elbo": metrics.get("elbo"), "test_recon": metrics["recon"],
             "test_kl": metrics.get("kl"), "active_units": metrics.get("active_units"),
             "mean_sigma": history["mean_sigma"][-1], "checkpoint": str(out),
             "seconds": sum(history["seconds"])}
    print(json.dumps(final))
    return 0


def _epochs_in(path: Path) -> int:
    from vaelib.checkpoints import load_checkpoint

    try:
        return load_checkpoint(path)[1]["epoch"]
    except CheckpointError:
        return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vaelib import book
    from vaelib.checkpoints import load_checkpoint
    from vaelib.evaluation import bits_per_dim, evaluate
    from vaelib.training import get_device

    model, ckpt = load_checkpoint(args.checkpoint, device=get_device())
    dataset = args.dataset or ckpt["train_config"].get("dataset")
    if dataset is None:
        raise VaelibError(f"{args.checkpoint} does not record which dataset it was trained on; "
                          "pass --dataset mnist or --dataset fashion-mnist")
    data = book.dataset(dataset)
    images = data.test.images[:args.n_test] if args.n_test else data.test.images
    is_vae = model.variational
    m = evaluate(model, images, iw_samples=args.iw_samples if is_vae else 0)
    result = {"elbo": m.get("elbo"), "recon": m["recon"], "kl": m.get("kl"),
              "iw_loglik": m.get("iw_loglik"), "iw_samples": m.get("iw_samples"),
              "active_units": m.get("active_units"), "latent_dim": m["latent_dim"],
              "dataset": data.name, "n_test": m["n"], "model": model.config.kind}
    print(f"{args.checkpoint}: {model.config.kind.upper()} with {m['latent_dim']} latent dimensions, "
          f"{data.name} test set ({m['n']:,} images), nats per image")
    print(f"  reconstruction NLL  {m['recon']:9.2f}")
    if is_vae:
        print(f"  KL to the prior     {m['kl']:9.2f}")
        print(f"  ELBO                {m['elbo']:9.2f}   ({bits_per_dim(m['elbo']):.3f} bits/dim)")
        if "iw_loglik" in m:
            print(f"  log p(x), K={m['iw_samples']:<5d}  {m['iw_loglik']:9.2f}   "
                  f"({bits_per_dim(m['iw_loglik']):.3f} bits/dim)")
        print(f"  active units        {m['active_units']:6d} of {m['latent_dim']}")
    if args.json:
        print(json.dumps(result))
    return 0


def _sample(args: argparse.Namespace) -> int:
    import matplotlib
    import torch

    matplotlib.use("Agg")
    from vaelib.checkpoints import load_checkpoint
    from vaelib.plots import image_grid
    from vaelib.training import get_device

    model, _ = load_checkpoint(args.checkpoint, device=get_device())
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    fig = image_grid(images, nrow=min(8, args.n), title=f"{args.n} samples from N(0, I)")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=100)
    except (OSError, ValueError) as e:
        raise VaelibError(f"could not write {args.out}: {e}") from None
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from vaelib import bench

    result = bench.run(dataset=args.dataset, epochs=args.epochs, device=args.device,
                       n_train=args.n_train)
    print(bench.table(result))
    if args.json:
        print(json.dumps(result))
    return 0


def _prog() -> str:
    return "python -m vaelib"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "evaluate": _evaluate, "sample": _sample, "bench": _bench}
    try:
        return commands[args.command](args)
    except (VaelibError, ValueError) as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return RUNTIME
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
