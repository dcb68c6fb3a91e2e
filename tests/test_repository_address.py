"""One repository address: ``repository.url`` in ``_config.yml`` is the only place it is set.

Jupyter Book derives the Binder and Colab links and the repository and issues buttons from it (the
browser checks in tests/browser/ look at them on the built pages). Everything else that names the
repository must agree with it: the Colab install cell of every chapter, the README, CITATION.cff,
CONTRIBUTING.md, the intro and binder/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
# Files that name the book's repository and no other one.
ONLY_THE_BOOK = ["README.md", "CITATION.cff", "CONTRIBUTING.md"]
# Files that must name it at least once.
MUST_NAME_IT = ["README.md", "CITATION.cff", "CONTRIBUTING.md"]
# Addresses derived from the repository, anywhere: GitHub, Binder, Colab, the published book.
DERIVED = [
    re.compile(r"https://github\.com/(?P<org>[\w-]+)/(?P<repo>[\w-]+(?:\.(?!git\b)[\w-]+)*)"),
    re.compile(r"https://mybinder\.org/v2/gh/(?P<org>[\w.-]+)/(?P<repo>[\w.-]+)/(?P<branch>[\w.-]+)"),
    re.compile(r"https://colab\.research\.google\.com/github/"
               r"(?P<org>[\w.-]+)/(?P<repo>[\w.-]+)/blob/(?P<branch>[\w.-]+)"),
    re.compile(r"https://(?P<org>[\w-]+)\.github\.io/(?P<repo>[\w.-]+)"),
]
COLAB_INSTALL = re.compile(r"git\+(?P<url>https://[^\s\"'@]+?)(?:\.git)?@(?P<branch>[\w./-]+)")


@pytest.fixture(scope="module")
def repo():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)/?", cfg["url"])
    assert m, f"_config.yml repository.url is not a GitHub repository address: {cfg['url']!r}"
    reader = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"][
        "reader_notebooks_branch"]
    return {"url": cfg["url"].rstrip("/"), "org": m.group(1), "repo": m.group(2), "branch": cfg.get("branch", "main"),
            "reader_branch": reader}


def _addresses(text: str):
    """(matched text, org, repo, branch or None) of every derived address in ``text``."""
    for pattern in DERIVED:
        for m in pattern.finditer(text):
            yield m.group(0), m.group("org"), m.group("repo"), m.groupdict().get("branch")


def _colab_cell(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert code and "google.colab" in code[0], f"{notebook.name}: the first code cell is not the Colab install cell"
    return code[0]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapters_colab_cell_installs_from_the_books_repository(notebook, repo):
    cell = _colab_cell(notebook)
    installs = list(COLAB_INSTALL.finditer(cell))
    assert len(installs) == 1, f"{notebook.name}: expected one `git+URL@BRANCH` install, found {len(installs)}"
    url, branch = installs[0].group("url").rstrip("/"), installs[0].group("branch")
    assert (url, branch) == (repo["url"], repo["branch"]), \
        f"{notebook.name}: Colab installs from {url}@{branch}, _config.yml says {repo['url']}@{repo['branch']}"


@pytest.mark.parametrize("name", MUST_NAME_IT)
def test_the_repository_files_name_the_book_repository(name, repo):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert repo["url"] in text, f"{name} does not give the repository address {repo['url']}"


def _files_to_scan():
    files = [ROOT / n for n in ONLY_THE_BOOK] + [ROOT / "intro.md"] + sorted((ROOT / "binder").iterdir())
    files += CHAPTERS + sorted((ROOT / "chapters").glob("*.md"))
    return [f for f in files if f.is_file()]


def test_every_derived_address_points_at_the_book(repo):
    """Binder and Colab links and the published book's address name the repository of _config.yml; so
    does every GitHub address in the README, CITATION.cff and CONTRIBUTING.md (they name no other)."""
    wrong = []
    for path in _files_to_scan():
        text = path.read_text(encoding="utf-8")
        for found, org, name, branch in _addresses(text):
            is_github_page = found.startswith("https://github.com/")
            if is_github_page and path.name not in ONLY_THE_BOOK and path.parent.name != "binder":
                continue  # chapters may cite other repositories (e.g. PyTorch's examples)
            # Colab opens the reader notebooks (tools/reader_notebooks.py), on their own branch
            expected = repo["reader_branch"] if found.startswith("https://colab.") else repo["branch"]
            if (org.lower(), name) != (repo["org"].lower(), repo["repo"]) or branch not in (None, expected):
                wrong.append(f"{path.relative_to(ROOT)}: {found}")
    assert not wrong, f"addresses that disagree with _config.yml ({repo['url']}, branch {repo['branch']}):\n  " + \
        "\n  ".join(wrong)


def test_binder_runs_the_checkout_it_was_launched_from():
    """Binder builds the commit its link names; postBuild installs vaelib from that checkout, not from a URL
    that could point elsewhere, and keeps the CPU-only PyTorch of binder/requirements.txt."""
    post_build = (ROOT / "binder" / "postBuild").read_text(encoding="utf-8")
    installs = [line for line in post_build.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all(re.search(r"(?:-e|--editable) \.(?:\s|$)", line) for line in installs), installs
    assert all("--no-deps" in line for line in installs), installs
    requirements = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    pins = re.findall(r"^torch==([\d.]+)\+cpu$", requirements, re.M)
    assert len(pins) == 1, f"binder/requirements.txt: no CPU-only torch pin: {pins}"
    reader = (ROOT / "requirements-reader.txt").read_text(encoding="utf-8")
    assert re.search(rf"^torch=={re.escape(pins[0])}$", reader, re.M), \
        f"binder/requirements.txt pins torch {pins[0]}, requirements-reader.txt another version"
