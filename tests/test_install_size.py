"""The README's install size: the numbers it states are measured the way it says (``du -sh``), on this
environment when it holds the same (CUDA) build of PyTorch; a CPU-only build brings no CUDA libraries."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sysconfig.get_paths()["purelib"])
CUDA_FOLDERS = ("nvidia", "triton")
TOLERANCE = 0.2


def _gib(*paths: Path) -> float:
    """Disk usage as ``du`` counts it (what ``du -sh`` shows), in GiB; 0 for paths that do not exist."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0.0
    out = subprocess.run(["du", "-sk", "--total", *existing], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0]) / 1024**2


def _readme_numbers() -> tuple[float, float]:
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    m = re.search(r"takes \*\*([\d.]+) GB\*\*, of which \*\*([\d.]+) GB\*\* are the CUDA libraries", text)
    assert m, ("README.md no longer states the install size as "
               "'takes **X GB**, of which **Y GB** are the CUDA libraries'")
    return float(m.group(1)), float(m.group(2))


def test_the_readme_states_how_the_size_was_measured():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "du -sh .venv" in text and "download.pytorch.org/whl/cpu" in text


def test_the_readme_install_size_matches_this_environment():
    total, cuda = _readme_numbers()
    measured_cuda = _gib(*(SITE / name for name in CUDA_FOLDERS))
    if measured_cuda == 0:
        pytest.skip("this environment has a CPU-only PyTorch; the README's numbers are for the CUDA build")
    measured_total = _gib(Path(sys.prefix))
    assert abs(measured_total - total) <= TOLERANCE * total, \
        f"README says {total} GB, `du -sh {sys.prefix}` gives {measured_total:.1f} GB: update README.md"
    assert abs(measured_cuda - cuda) <= TOLERANCE * cuda, \
        f"README says the CUDA libraries take {cuda} GB, they take {measured_cuda:.1f} GB here: update README.md"


def test_a_cpu_only_pytorch_brings_no_cuda_libraries():
    import torch

    if not torch.__version__.endswith("+cpu"):
        pytest.skip(f"this environment has torch {torch.__version__}, not a CPU-only build")
    present = [name for name in CUDA_FOLDERS if (SITE / name).exists()]
    assert not present, f"a CPU-only torch, yet {present} are installed in {SITE}"
