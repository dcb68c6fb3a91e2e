"""Wall time and peak memory of every chapter, each executed in a fresh kernel.

    python benchmarks/chapters.py                       # quick and reader mode, cold model cache
    python benchmarks/chapters.py --mode quick --dataset mnist
    python benchmarks/chapters.py --json results.json
    python benchmarks/chapters.py --dataset fashion-mnist --baseline bdfdfcb   # beside an older revision
    python benchmarks/chapters.py --mode reader --dataset fashion-mnist --examples-epochs 50

Each notebook runs in its own process (nbclient, a fresh ``python3`` kernel); the peak resident memory
is the kernel's (``ru_maxrss`` of the finished child). "Cold" means an empty model cache in a fresh
``$VAELIB_DATA`` folder, shared by the chapters of one mode in book order, as a reader would have it.

``--baseline REV`` first runs, in reader mode, the chapters of git revision ``REV`` (the book and its
``vaelib``, checked out in a temporary worktree) the same way, so that an old recipe and the current one
are measured in one run on one machine; its rows carry ``"recipe": "baseline"`` and the revision.

``--examples-epochs N`` then trains PyTorch's own VAE example (pytorch/examples' ``vae/main.py``: its model,
loss and ``DataLoader``, :func:`vaelib.bench.train_baseline`) for N epochs on the same training images, in a
fresh process, as a yardstick for the book's time measured in the same run; its row carries
``"recipe": "pytorch/examples"`` and the epochs, and counts the training loop only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ONE = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
t0 = time.perf_counter()
NotebookClient(nb, timeout=900, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
seconds = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))
"""
RUN_EXAMPLES = r"""
import json, resource, sys
from vaelib import bench, book
data = book.dataset()
_, samples_per_s = bench.train_baseline(data, int(sys.argv[1]))
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": int(sys.argv[1]) * len(data.train) / samples_per_s, "peak_mb": peak_mb}))
"""


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


@contextlib.contextmanager
def checkout(revision: str):
    """The repository at ``revision``, in a temporary git worktree."""
    with tempfile.TemporaryDirectory(prefix="vaelib-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), revision],
                       check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def run_mode(mode: str, dataset: str | None, root: Path = ROOT, recipe: dict | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaelib-bench-") as cache:
        env = {**os.environ, "VAELIB_DATA": cache, "VAELIB_QUICK": "1" if mode == "quick" else "0",
               "TQDM_DISABLE": "1"}
        if root != ROOT:  # the kernels import that revision's vaelib, ahead of the installed one
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        if dataset:
            env["VAELIB_DATASET"] = dataset
        name = env.get("VAELIB_DATASET", "mnist")
        for nb in chapters(root):
            rows.append(_measure([RUN_ONE, str(nb), str(nb.parent)], env,
                                 {"chapter": nb.stem, "mode": mode, "dataset": name, **(recipe or {})}))
            print(_row(rows[-1]), flush=True)
    return rows


def _measure(script: list[str], env: dict, row: dict) -> dict:
    """``row`` with what ``python -c script...`` printed as JSON on its last line, or with its error."""
    proc = subprocess.run([sys.executable, "-c", *script], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {**row, "error": tail[0][:200]}
    return {**row, **json.loads(proc.stdout.strip().splitlines()[-1])}


def run_examples(epochs: int, dataset: str | None) -> dict:
    """PyTorch's own VAE example trained for ``epochs`` epochs, in a fresh process: its training time."""
    env = {**os.environ, "TQDM_DISABLE": "1", **({"VAELIB_DATASET": dataset} if dataset else {})}
    return _measure([RUN_EXAMPLES, str(epochs)], env,
                    {"chapter": f"pytorch/examples vae, {epochs} epochs", "mode": "reader",
                     "dataset": env.get("VAELIB_DATASET", "mnist"), "recipe": "pytorch/examples", "epochs": epochs})


def _row(r: dict) -> str:
    mode = r["mode"] + (f" ({r['revision']})" if r.get("recipe") == "baseline" else "")
    if "error" in r:
        return f"| {r['chapter']} | {mode} | failed: {r['error']} | |"
    return f"| {r['chapter']} | {mode} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["quick", "reader", "both"], default="both")
    parser.add_argument("--dataset", default=None, help="sets VAELIB_DATASET for the kernels")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="first run the chapters of this git revision, for comparison")
    parser.add_argument("--examples-epochs", metavar="N", type=int, default=None,
                        help="then time N epochs of PyTorch's own VAE example, as a yardstick")
    args = parser.parse_args()
    modes = ["quick", "reader"] if args.mode == "both" else [args.mode]
    print(f"dataset: {args.dataset or os.environ.get('VAELIB_DATASET', 'mnist')}, "
          f"{os.cpu_count()} CPUs\n")
    print("| chapter | mode | wall time (s) | peak kernel memory (MB) |")
    print("| --- | --- | ---: | ---: |")
    rows = []
    if args.baseline:
        revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                                  capture_output=True, text=True, check=True).stdout.strip()
        with checkout(revision) as tree:
            rows += [r for mode in modes if mode == "reader"  # quick mode's recipe is a test setting
                     for r in run_mode(mode, args.dataset, tree, {"recipe": "baseline", "revision": revision})]
    rows += [r for mode in modes for r in run_mode(mode, args.dataset)]
    if args.examples_epochs:
        rows.append(run_examples(args.examples_epochs, args.dataset))
        print(_row(rows[-1]), flush=True)
    for recipe in ["baseline", None] if args.baseline else [None]:
        for mode in modes:
            done = [r for r in rows if r["mode"] == mode and r.get("recipe") == recipe and "error" not in r]
            if done:
                print(f"| **all chapters** | {mode}{' (baseline)' if recipe else ''} | "
                      f"{sum(r['seconds'] for r in done):.1f} | {max(r['peak_mb'] for r in done):.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
