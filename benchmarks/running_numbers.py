"""The numbers on the book's "Running this book" page, read from the benchmark results.

``chapters/running.md`` is a plain Markdown page, so it has no launch buttons (it describes the machines
the chapters run on; it runs nothing itself). Its measured numbers are MyST substitutions, ``{{ run_... }}``,
that this Sphinx extension fills from ``benchmarks/results/*.json`` when the book is built: nothing on the
page is typed by hand. The claims the page makes about those numbers are checked here as well
(:data:`CLAIMS`, listed with their sentences in ``claims/running.yml``); a claim the results no longer
support stops the build with a one-line error.

``_config.yml`` loads it: ``sphinx.local_extensions`` puts this folder on the path, and
``sphinx.config.extensions`` names ``running_numbers``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("reader", "quick")
# mybinder.org gives a session at most 2 GB of memory; 2,000 MB is the stricter reading of "2 GB".
BINDER_MB = 2000


class ClaimError(Exception):
    """A sentence of the Running page is no longer true of the benchmark results."""


def load(results: Path = RESULTS) -> dict:
    """The three result files: ``chapters`` (rows), ``bench`` and ``build`` (dicts)."""
    out = {}
    for name in ("chapters", "bench", "build"):
        path = results / f"{name}.json"
        if not path.is_file():
            raise ClaimError(f"running_numbers: {path} is missing; benchmarks/README.md says how to measure it")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    failed = [f"{r['chapter']} ({r['mode']})" for r in out["chapters"] if "error" in r]
    if failed:
        raise ClaimError(f"running_numbers: chapters.json records failed runs: {', '.join(failed)}")
    return out


def chapter_titles(root: Path = ROOT) -> dict[str, str]:
    """Each chapter notebook's stem and the text of its first ``# `` heading."""
    titles = {}
    for nb in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        m = re.search(r"^# (.+)$", text, re.M)
        titles[nb.stem] = m.group(1).strip() if m else nb.stem
    return titles


def _row(rows: list[dict], chapter: str, mode: str) -> dict | None:
    return next((r for r in rows if r["chapter"] == chapter and r["mode"] == mode), None)


def chapter_table(rows: list[dict], titles: dict[str, str]) -> str:
    """The Markdown table: each chapter's wall time and peak kernel memory, in reader and quick mode."""
    lines = ["| chapter | reader mode: time | reader mode: peak memory | quick mode: time | quick mode: peak memory |",
             "| :--- | ---: | ---: | ---: | ---: |"]
    for stem, title in titles.items():
        cells = []
        for mode in MODES:
            r = _row(rows, stem, mode)
            cells += [f"{r['seconds']:.0f} s", f"{r['peak_mb']:,.0f} MB"] if r else ["not measured", ""]
        lines.append(f"| {int(stem[:2])}. [{title}]({stem}.ipynb) | " + " | ".join(cells) + " |")
    totals = []
    for mode in MODES:
        done = [r for r in rows if r["mode"] == mode]
        totals += [f"{sum(r['seconds'] for r in done) / 60:.1f} min", f"{max(r['peak_mb'] for r in done):,.0f} MB"]
    lines.append("| **all chapters** (time: sum; memory: largest) | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def substitutions(results: Path = RESULTS, repository_url: str = "", branch: str = "main") -> dict[str, str]:
    """Every ``{{ run_... }}`` of chapters/running.md, as the text it stands for."""
    data = load(results)
    rows, bench, build = data["chapters"], data["bench"], data["build"]
    titles = chapter_titles()
    by_mode = {m: [r for r in rows if r["mode"] == m] for m in MODES}
    slowest = max(by_mode["reader"], key=lambda r: r["seconds"])
    datasets = {r.get("dataset", "mnist") for r in rows}
    names = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
    readme = "benchmarks/README.md"
    if repository_url:
        readme = f"[benchmarks/README.md]({repository_url.rstrip('/')}/blob/{branch}/benchmarks/README.md)"
    return {
        "run_machine": bench["machine"],
        "run_dataset": " and ".join(names.get(d, d) for d in sorted(datasets)),
        "run_table": chapter_table(rows, titles),
        "run_reader_total_min": f"{sum(r['seconds'] for r in by_mode['reader']) / 60:.0f}",
        "run_reader_slowest_s": f"{slowest['seconds']:.0f}",
        "run_reader_slowest": f"[{titles.get(slowest['chapter'], slowest['chapter'])}]({slowest['chapter']}.ipynb)",
        "run_quick_total_s": f"{sum(r['seconds'] for r in by_mode['quick']):.0f}",
        "run_peak_max_mb": f"{max(r['peak_mb'] for r in rows):,.0f}",
        "run_peak_min_mb": f"{min(r['peak_mb'] for r in rows):,.0f}",
        "run_build_tests_min": f"{build['quick_validation_and_build_s'] / 60:.0f}",
        "run_build_cold_min": f"{build['reader_book_cold_s'] / 60:.0f}",
        "run_build_rebuild_s": f"{build['reader_book_rebuild_s']:.0f}",
        "run_build_vaelib_edit_s": f"{build['reader_book_after_vaelib_edit_s']:.0f}",
        "run_benchmarks_readme": readme,
    }


# The claims chapters/running.md makes, each a test on the results; claims/running.yml quotes the sentences.
CLAIMS: dict[str, Callable[[dict], bool]] = {
    "every-chapter-fits-binder": lambda d: max(r["peak_mb"] for r in d["chapters"]) < BINDER_MB,
    "one-kernel-at-a-time": lambda d: min(r["peak_mb"] for r in d["chapters"]) > BINDER_MB / 2,
    "quick-mode-under-a-minute": lambda d: max(r["seconds"] for r in d["chapters"] if r["mode"] == "quick") < 60,
    "rebuild-runs-nothing": lambda d: d["build"]["reader_book_rebuild_s"] < 30,
    "vaelib-edit-reruns-chapters": lambda d: d["build"]["reader_book_after_vaelib_edit_s"]
                                             > 10 * d["build"]["reader_book_rebuild_s"],
}


def check_claims(results: Path = RESULTS) -> None:
    """Raise :class:`ClaimError` naming every claim of the page that the results do not support."""
    data = load(results)
    failed = [name for name, holds in CLAIMS.items() if not holds(data)]
    if failed:
        raise ClaimError(f"running_numbers: chapters/running.md claims what {results} no longer shows: "
                         f"{', '.join(failed)} (see CLAIMS in benchmarks/running_numbers.py)")


def _fill(app, config) -> None:
    from sphinx.errors import ExtensionError

    options = config.html_theme_options or {}
    try:
        check_claims()
        values = substitutions(repository_url=options.get("repository_url", ""),
                               branch=options.get("repository_branch", "") or "main")
    except ClaimError as e:
        raise ExtensionError(str(e)) from None
    config.myst_substitutions = {**(config.myst_substitutions or {}), **values}


def setup(app):
    app.connect("config-inited", _fill)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
