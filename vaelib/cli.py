"""The command line: ``python -m vaelib {train,evaluate,sample,bench}``.

Errors are one line with no traceback: exit code 2 for usage errors, 1 for runtime errors. Ctrl-C exits
with 130, SIGTERM with 143 and SIGHUP (the terminal closed) with 129, each after the save under way.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tqdm.auto import tqdm

from vaelib import bench, book
from vaelib.callbacks import OnEpoch, SaveCheckpoint
from vaelib.checkpoints import check_writable, interrupts_deferred, load_checkpoint
from vaelib.console import Output, tell
from vaelib.data import DATASETS
from vaelib.device import get_device
from vaelib.errors import TrainingDiverged, UsageError, VaelibError
from vaelib.evaluation import bits_per_dim, evaluate
from vaelib.files import locked, target, write_atomic
from vaelib.models import ARCHS, KINDS, build_model
from vaelib.plots import image_grid
from vaelib.recipe import SCHEDULES, TrainConfig
from vaelib.training import fit, seed_everything

PROG, USAGE, RUNTIME = "python -m vaelib", 2, 1


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


# How each stop is told and its exit code (128 + the signal's number, as a shell reports it).
STOPS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}
if hasattr(signal, "SIGHUP"):
    STOPS[signal.SIGHUP] = ("hung up (the terminal closed)", 129)
_stopping = False


def _stop(signum, frame):
    """The first Ctrl-C, SIGTERM or SIGHUP stops the run; those that come while it is stopping are
    ignored, so that the stop (the save under way, the message) is never itself broken off."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


def _how(e: KeyboardInterrupt) -> tuple[str, int]:
    return STOPS[e.signum if isinstance(e, Terminated) else signal.SIGINT]


def _device(text: str) -> str:
    """A --device value this vaelib knows (cpu, cuda, cuda:N); whether the machine has it is checked later."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"vaelib runs on cpu or cuda, not {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(USAGE)


# Bounds that keep a run within what can work: a model that fits in memory, a seed NumPy accepts.
MAX_LATENT, MAX_HIDDEN, MAX_SAMPLES, MAX_SEED = 1024, 16_384, 10_000, 2**32 - 1


def _int(minimum: int, maximum: int | None = None, what: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}{what}, got {value:,}")
        return value
    return parse


_positive_int = _int(1)


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
    # A new run takes the settings left out from the book's recipe, RECIPE; with --resume, from the checkpoint,
    # and a different value is refused, except for --epochs, --lr and --device, which a resumed run may change.
    t.add_argument("--model", choices=KINDS, help=_default("model"))
    t.add_argument("--arch", choices=ARCHS, help=_default("arch"))
    t.add_argument("--dataset", choices=DATASETS, help="default: $VAELIB_DATASET or mnist")
    t.add_argument("--latent-dim", type=_int(1, MAX_LATENT), help=_default("latent_dim"))
    t.add_argument("--hidden", type=_int(1, MAX_HIDDEN), nargs="+", help=_default("hidden"))
    t.add_argument("--beta", type=_number(0, strict=False), help=_default("beta"))
    t.add_argument("--epochs", type=_int(1, 100_000), help="epochs in total (" + _default("epochs") + ", or the "
                   "resumed run's own)")
    t.add_argument("--lr", type=_number(0, strict=True), help="the learning rate (the peak of a cosine "
                   "schedule); " + _default("lr"))
    t.add_argument("--schedule", choices=SCHEDULES, help="cosine: warm up, then decay to 0 at the last epoch; "
                   "or constant; " + _default("schedule"))
    t.add_argument("--batch-size", type=_int(1, 65_536), help=_default("batch_size"))
    t.add_argument("--n-train", type=_positive_int, help="train on a fixed random subset of this many images")
    t.add_argument("--seed", type=_int(0, MAX_SEED), help=_default("seed"))
    t.add_argument("--device", type=_device, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--out", type=Path, help="checkpoint path (default: MODEL-DATASET.pt, or the --resume path)")
    t.add_argument("--resume", type=Path, help="continue training a checkpoint up to --epochs in total")
    t.add_argument("--overwrite", action="store_true", help="replace a checkpoint that --out already holds")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    e = sub.add_parser("evaluate", help="test-set ELBO, log-likelihood and active units")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: the dataset the model was trained on")
    e.add_argument("--iw-samples", type=_int(0, 100_000), default=50,
                   help="importance samples K for the log-likelihood estimate (0: skip)")
    e.add_argument("--n-test", type=_positive_int, default=None, help="evaluate on the first N only")
    e.add_argument("--json", action="store_true", help="end with one JSON line of the metrics")

    s = sub.add_parser("sample", help="decode codes drawn from N(0, I) into an image grid")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("--n", type=_int(1, MAX_SAMPLES, " images in one grid"), default=64)
    s.add_argument("--seed", type=_int(0, MAX_SEED), default=0)
    s.add_argument("--out", type=Path, default=Path("samples.png"))

    b = sub.add_parser("bench", help="training speed against the common recipe and the roofline")
    b.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    b.add_argument("--epochs", type=_positive_int, default=1)
    b.add_argument("--device", type=_device, default="cpu")
    b.add_argument("--n-train", type=_positive_int, default=None, help="time on a subset only")
    b.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    return parser


# What a new run trains with: the book's recipe (vaelib.book), a named override of vaelib's (TrainConfig).
RECIPE = book.READER
# The settings the train command takes, by argument name; "model" is the ModelConfig's kind.
MODEL_SETTINGS = {"model": "kind", "arch": "arch", "latent_dim": "latent_dim", "hidden": "hidden"}
RUN_SETTINGS = ("epochs", "batch_size", "lr", "beta", "seed", "n_train", "schedule")
RESUMED_MAY_CHANGE = ("epochs", "lr")


def _setting(config: TrainConfig, name: str):
    """The value of the train argument ``name`` in ``config``."""
    return getattr(config.model, MODEL_SETTINGS[name]) if name in MODEL_SETTINGS else getattr(config, name)


def _default(name: str) -> str:
    value = _setting(RECIPE, name)
    return "default: " + (" ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"
                          if isinstance(value, float) else str(value))


def _new_config(args: argparse.Namespace) -> TrainConfig:
    """RECIPE with the settings given on the command line."""
    model = {field: getattr(args, name) for name, field in MODEL_SETTINGS.items() if getattr(args, name) is not None}
    run = {name: getattr(args, name) for name in RUN_SETTINGS if getattr(args, name) is not None}
    return replace(RECIPE, model=replace(RECIPE.model, **model), dataset=args.dataset or book.dataset_name(), **run)


def _resumed_config(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    """The checkpoint's recipe with the changes a resumed run may make; any other change is refused."""
    if config.dataset is None:  # trained on images passed to fit: the checkpoint's data record decides
        if args.dataset is None:
            raise UsageError(f"{args.resume} does not record which dataset it was trained on; pass the one "
                             "it was, --dataset mnist or --dataset fashion-mnist")
        config = replace(config, dataset=args.dataset)
    for name in ("dataset", *MODEL_SETTINGS, *RUN_SETTINGS):
        asked, kept = getattr(args, name), _setting(config, name)
        if name not in RESUMED_MAY_CHANGE and asked is not None and \
                (tuple(asked) if isinstance(asked, list) else asked) != kept:
            raise UsageError(f"--{name.replace('_', '-')} cannot change when resuming ({args.resume} was trained "
                             f"with {list(kept) if isinstance(kept, tuple) else kept}); start a new run with "
                             "another --out instead")
    return replace(config, **{k: getattr(args, k) for k in RESUMED_MAY_CHANGE if getattr(args, k) is not None})


def _train(args: argparse.Namespace) -> int:
    device = get_device(args.device)
    out = args.out or args.resume or Path(f"{args.model or RECIPE.model.kind}-{args.dataset or book.dataset_name()}.pt")
    # The run holds its checkpoint's lock from before it reads a checkpoint to resume until it ends, so a
    # second run of the same file is refused rather than training on a copy that the first replaces.
    check_writable(out)
    with locked(out, wait=False):
        return _train_locked(args, device, out)


def _train_locked(args: argparse.Namespace, device: torch.device, out: Path) -> int:
    resume = None
    if args.resume is not None:
        model, resume = load_checkpoint(args.resume, device=device, expect_kind=args.model)
        config = _resumed_config(args, TrainConfig.from_dict(resume["train_config"]))
        if resume["epoch"] >= config.epochs:
            print(f"{args.resume} already holds {resume['epoch']} epochs; pass --epochs N (more than "
                  f"{resume['epoch']}) to train further")
            return 0
    else:
        config = _new_config(args)
        seed_everything(config.seed)
        model = build_model(config.model)
    if out.is_file() and out != args.resume and not args.overwrite:
        raise UsageError(f"{out} already holds a checkpoint; continue it with --resume {out}, choose "
                         "another --out, or pass --overwrite to replace it")

    data = book.dataset(config.dataset)
    saver = SaveCheckpoint(out, overwrite=args.overwrite, resume=resume)

    def report(epoch: int, history: dict) -> None:
        with interrupts_deferred():  # Ctrl-C inside tqdm.write would leave tqdm's lock broken
            tqdm.write(f"epoch {epoch:3d}/{config.epochs}  loss {history['loss'][-1]:8.2f}  "
                       f"recon {history['recon'][-1]:8.2f}  kl {history['kl'][-1]:7.2f}  "
                       f"sigma {history['mean_sigma'][-1]:.3f}  "
                       f"({history['samples_per_s'][-1]:,.0f} images/s)  saved {out}")

    def kept() -> str:
        if saver.last_saved:
            return f"{out} holds the last completed epoch ({saver.last_saved}) and loads normally"
        if resume is not None:
            return f"{args.resume} still holds its {resume['epoch']} epochs"
        return "nothing was saved"

    try:
        history = fit(model, data, config, device=device, resume=resume, callbacks=[saver, OnEpoch(report)],
                      progress=not args.no_progress and book.show_progress())
    except KeyboardInterrupt as e:
        how, code = _how(e)
        start = out if saver.last_saved else args.resume
        hint = f"; continue with: python -m vaelib train --resume {shlex.quote(str(start))} " \
            f"--epochs {config.epochs}" if start is not None else ""
        tell(f"\n{how}: {kept()}{hint}")
        return code
    except TrainingDiverged as e:
        tell(f"{PROG}: error: training diverged: {e}; {kept()}")
        return RUNTIME

    metrics = evaluate(model, data.test.images)
    final = {"epochs": len(history["loss"]), "train_loss": history["loss"][-1],
             "train_elbo": history["elbo"][-1] if model.variational else None,
             "test_elbo": metrics.get("elbo"), "test_recon": metrics["recon"],
             "test_kl": metrics.get("kl"), "active_units": metrics.get("active_units"),
             "mean_sigma": history["mean_sigma"][-1], "checkpoint": str(out),
             "seconds": sum(history["seconds"])}
    print(json.dumps(final))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
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
        if m["active_units"] is None:
            print(f"  active units           -- of {m['latent_dim']} (need at least 2 test images)")
        else:
            print(f"  active units        {m['active_units']:6d} of {m['latent_dim']}")
    if args.json:
        print(json.dumps(result))
    return 0


def _sample(args: argparse.Namespace) -> int:
    matplotlib.use("Agg")  # no window: the figure only goes to a file
    # The image is written to exactly --out, in the format its suffix names (PNG without one).
    target(args.out)  # a folder or a device is refused before any work
    fmt = args.out.suffix[1:].lower() or "png"
    if fmt not in FigureCanvasAgg.get_supported_filetypes():
        raise UsageError(f"cannot write a {fmt!r} image; end --out with .png, .pdf, .svg or .jpg")
    model, _ = load_checkpoint(args.checkpoint, device=get_device())
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    fig = image_grid(images, nrow=min(8, args.n), title=f"{args.n} samples from N(0, I)")
    try:
        write_atomic(args.out, lambda f: fig.savefig(f, dpi=100, format=fmt))
    except OSError as e:
        raise VaelibError(f"could not write {args.out}: {e.strerror or e}; any image there is kept") from None
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    result = bench.run(dataset=args.dataset, epochs=args.epochs, device=args.device,
                       n_train=args.n_train)
    print(bench.table(result))
    if args.json:
        print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None, *, program: bool = False) -> int:
    """Run the command line; return the exit code. With ``program=True`` (``python -m vaelib``) Ctrl-C,
    SIGTERM and SIGHUP are ignored once the command is done: the exit that follows (PyTorch's teardown
    takes up to a second) is then never broken off by a traceback or a kill with another exit code."""
    global _stopping
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "evaluate": _evaluate, "sample": _sample, "bench": _bench}
    previous = {}
    if threading.current_thread() is threading.main_thread():
        _stopping = False
        previous = {s: signal.signal(s, _stop) for s in STOPS}
    output = sys.stdout = Output(sys.stdout)
    try:
        code = commands[args.command](args)
        output.flush()
        if output.error is not None:
            tell(f"{PROG}: error: could not write the output: {output.error.strerror or output.error}")
            return RUNTIME
        return code
    except UsageError as e:
        tell(f"{PROG}: error: {e}")
        return USAGE
    except VaelibError as e:
        tell(f"{PROG}: error: {e}")
        return RUNTIME
    except KeyboardInterrupt as e:
        how, code = _how(e)
        tell(f"\n{how}")
        return code
    finally:
        output.flush()
        sys.stdout = output.original
        if program:
            for s in previous:  # SIG_IGN, not a Python handler: the interpreter's teardown keeps it
                signal.signal(s, signal.SIG_IGN)
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)
