"""Two chapters as a learner runs them: a real Jupyter Lab (with jupyterlab-myst) in Chromium, Run All, in
quick mode. After the run, a learner must see the lesson, not the machinery:

- no raw MyST in the rendered Markdown (roles, directive fences, targets);
- every number of the text evaluated in the learner's own kernel, none left as an expression or an error;
- the book's checks and bookkeeping folded to their one ``#@title`` line, and no cell that failed;
- the caption under each figure rendered.

Lab serves a copy of the chapters, so it never writes into the repository, with its own settings, on a free
local port. The kernel reads the models that ``make book-quick`` cached, offline. Screenshots of each
chapter after Run All are saved in the test's temporary folder. ``$VAELIB_LAB_CHAPTERS`` names other
chapters to run (file names, separated by spaces).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from book_site import SOURCE

pytestmark = pytest.mark.browser

BIN = Path(sys.executable).parent
# Two chapters by default; VAELIB_LAB_CHAPTERS="04_narrow_variance.ipynb 05_kl_fix.ipynb" runs others instead.
CHAPTERS = os.environ.get("VAELIB_LAB_CHAPTERS", "06_reparameterization.ipynb 03_vae_encoder.ipynb").split()
RUN_TIMEOUT_S = 420
RAW_MYST = re.compile(r"\{(?:eval|glue|cite|numref|ref)[:a-z]*\}`|^\s*(?:`{3,}|:{3,})\{|^\([\w-]+\)=\s*$", re.M)

# Every cell's state, read from Lab's DOM (windowing is off, so every cell is in the page).
CELLS = r"""() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')].map(cell => ({
  kind: cell.classList.contains('jp-CodeCell') ? 'code' : (cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw'),
  prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
  collapsed: cell.querySelector('.jp-InputPlaceholder') !== null,
  editorShown: [...cell.querySelectorAll('.jp-InputArea-editor')].some(e => e.offsetParent !== null),
  text: cell.innerText,
  markdown: cell.classList.contains('jp-MarkdownCell') ? cell.innerText : '',
  // jupyterlab-myst shows an inline expression that failed as an error span in the rendered text
  evalErrors: [...cell.querySelectorAll('.myst [data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.innerText),
  errors: [...cell.querySelectorAll('.jp-OutputArea-output')].filter(o => /Traceback \(most recent call last\)/.test(o.innerText)).length,
  images: cell.querySelectorAll('.jp-OutputArea-output img, .jp-OutputArea-output svg').length,
}))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not (BIN / "jupyter-lab").exists():
        pytest.fail("Jupyter Lab is not installed: `make install` (requirements.txt lists jupyterlab)")
    home = tmp_path_factory.mktemp("lab")
    root = home / "chapters"
    shutil.copytree(SOURCE / "chapters", root)
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell in the page (no windowing), so the whole chapter can be read from the DOM.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    (home / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # figures as a learner sees them
    env.update(JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               VAELIB_QUICK="1", VAELIB_OFFLINE="1", TQDM_DISABLE="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = home / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 90 s:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_all(browser, lab, chapter: str) -> list[dict]:
    url, token, home = lab
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        # a workspace of its own, so that no other chapter is open beside it
        page.goto(f"{url}/lab/workspaces/{Path(chapter).stem}/tree/{chapter}?reset&token={token}", timeout=90_000)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
        # the kernel is up before Run All, and Run All is asked again if no cell was queued
        page.wait_for_function("() => /Idle/.test((document.querySelector('#jp-main-statusbar') || {}).innerText)",
                               timeout=120_000)
        for _ in range(3):
            page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
            page.click("li.lm-Menu-item:has-text('Run All Cells')")
            try:
                page.wait_for_function(r"""() => [...document.querySelectorAll(
                    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]
                    .some(p => /\[[\d*]+\]/.test(p.textContent))""", timeout=30_000)
                break
            except Exception:  # playwright's TimeoutError
                continue
        # Run All queues every cell; the run is over when the kernel is idle again and no cell waits. (A
        # folded cell shows no prompt; if one fails, its error shows and Lab runs none of the cells after it.)
        deadline, idle_polls = time.monotonic() + RUN_TIMEOUT_S, 0
        while idle_polls < 2:
            if time.monotonic() > deadline:
                page.screenshot(path=str(home / f"{Path(chapter).stem}-unfinished.png"), full_page=True)
                prompts = [c["prompt"] for c in page.evaluate(CELLS) if c["kind"] == "code"]
                pytest.fail(f"{chapter}: Run All did not finish within {RUN_TIMEOUT_S} s; status bar "
                            f"{page.inner_text('#jp-main-statusbar')!r}, prompts {prompts}; see {home}")
            time.sleep(2)
            cells = page.evaluate(CELLS)
            busy = any("*" in c["prompt"] for c in cells if c["kind"] == "code")
            started = any(re.search(r"\[[\d*]+\]", c["prompt"]) for c in cells if c["kind"] == "code")
            idle = "Idle" in page.inner_text("#jp-main-statusbar")
            idle_polls = idle_polls + 1 if (started and idle and not busy) else 0
        time.sleep(3)  # the last Markdown cells evaluate their numbers
        page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")  # solutions
        time.sleep(1)
        cells = page.evaluate(CELLS)
        shot = home / f"{Path(chapter).stem}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"{chapter} after Run All: {shot}")
        return cells
    finally:
        page.close()


@pytest.fixture(scope="module")
def runs(browser, lab):
    return {chapter: _run_all(browser, lab, chapter) for chapter in CHAPTERS}


def _sources(chapter: str) -> list[dict]:
    return json.loads((SOURCE / "chapters" / chapter).read_text(encoding="utf-8"))["cells"]


def _where(chapter: str, index: int, cell: dict) -> str:
    first = "".join(cell["source"]).strip().splitlines()[0][:70] if "".join(cell["source"]).strip() else ""
    return f"{chapter}, cell {index} ({first!r})"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_cell_ran_without_an_error(runs, chapter):
    cells, sources = runs[chapter], _sources(chapter)
    assert len(cells) == len(sources), f"{chapter}: Lab shows {len(cells)} cells, the notebook has {len(sources)}"
    problems = [f"{_where(chapter, i, s)}: prompt {c['prompt']!r}, {c['errors']} error output(s)"
                for i, (c, s) in enumerate(zip(cells, sources)) if c["kind"] == "code"
                and ((not c["collapsed"] and not re.search(r"\[\d+\]", c["prompt"])) or c["errors"])]
    assert not problems, "cells that did not run cleanly:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_markdown_is_rendered_with_the_runs_numbers(runs, chapter):
    cells, sources = runs[chapter], _sources(chapter)
    problems, numbers = [], 0
    for index, (cell, source) in enumerate(zip(cells, sources)):
        if source["cell_type"] != "markdown":
            continue
        shown, text = cell["markdown"], "".join(source["source"])
        raw = RAW_MYST.findall(shown)
        if raw:
            problems.append(f"{_where(chapter, index, source)}: raw MyST on screen: {raw}")
        quoted = re.findall(r"\{eval\}`([^`]+)`", text)
        numbers += len(quoted)
        if cell["evalErrors"] or (quoted and "glued." in shown):
            problems.append(f"{_where(chapter, index, source)}: a number is not evaluated: "
                            f"{cell['evalErrors'] or shown[:300]!r}")
        if quoted and not re.search(r"\d", shown):
            problems.append(f"{_where(chapter, index, source)}: no number on screen: {shown[:300]!r}")
        if "figure-caption" in source["metadata"].get("tags", []) and not shown.startswith("Figure."):
            problems.append(f"{_where(chapter, index, source)}: the caption is not rendered: {shown[:100]!r}")
    assert numbers > 5, f"{chapter}: only {numbers} numbers in the text"
    assert not problems, "Markdown problems in Jupyter Lab:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_check_or_bookkeeping_is_in_sight(runs, chapter):
    cells, sources = runs[chapter], _sources(chapter)
    problems = []
    for index, (cell, source) in enumerate(zip(cells, sources)):
        text = "".join(source["source"])
        if source["cell_type"] != "code" or not re.search(r"# claim:|^assert |vaelib\.book\.glue\(", text, re.M):
            continue
        if not cell["collapsed"] or cell["editorShown"]:
            problems.append(f"{_where(chapter, index, source)}: its code is on screen")
        elif re.search(r"# claim:|assert |glue\(", cell["text"]):
            problems.append(f"{_where(chapter, index, source)}: folded, but shows {cell['text'][:120]!r}")
    assert not problems, "book machinery in sight:\n  " + "\n  ".join(problems)


def test_figures_are_drawn_with_their_captions_under_them(runs):
    cells, sources = runs[CHAPTERS[0]], _sources(CHAPTERS[0])
    captioned = [i for i, s in enumerate(sources) if "figure-caption" in s["metadata"].get("tags", [])]
    assert captioned
    missing = [_where(CHAPTERS[0], i - 1, sources[i - 1]) for i in captioned if not cells[i - 1]["images"]]
    assert not missing, "figures Lab did not draw above their captions:\n  " + "\n  ".join(missing)


def test_a_broken_number_or_an_unfolded_check_would_be_seen():
    """The checks above can fail: the patterns they use catch an unevaluated expression, raw MyST and a
    visible assertion."""
    assert RAW_MYST.findall("KL {eval}`f\"{glued.x}\"` and {cite:t}`kingma2013auto`")
    assert RAW_MYST.findall("```{admonition} Key idea\n:class: tip\n")
    assert not RAW_MYST.findall("A `code` span, $x^{2}$, 3.1 nats.")
    assert re.search(r"# claim:|assert |glue\(", "#@title Check\n# claim: x\nassert a > b")
