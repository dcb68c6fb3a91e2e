"""Helpers shared by the training, checkpoint and book tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from vaelib.models import build_model
from vaelib.training import fit, seed_everything

# Every per-epoch value that depends only on the maths (not on the wall clock).
HISTORY_KEYS = ("loss", "recon", "kl", "elbo", "mean_sigma", "kl_per_dim")


def train(cfg, images, *, seed=0, **kwargs):
    seed_everything(seed)
    model = build_model(cfg)
    kwargs.setdefault("batch_size", 64)
    history = fit(model, images, seed=seed, progress=False, device="cpu", **kwargs)
    return model, history


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def maths(history):
    return {k: history[k] for k in HISTORY_KEYS}


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def one_chapter_book(folder: Path, notebook, tools: Path) -> Path:
    """``folder`` as a Sphinx project whose one page is ``notebook`` (an nbformat notebook, not executed),
    built with MyST-NB and the book's prose extension from ``tools``."""
    import nbformat

    nbformat.write(notebook, folder / "chapter.ipynb")
    (folder / "index.md").write_text("# Book\n\n```{toctree}\nchapter\n```\n")
    (folder / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tools)!r})
        extensions = ["myst_nb", "book_prose"]
        nb_execution_mode = "off"
        exclude_patterns = ["_build"]
    """))
    return folder
