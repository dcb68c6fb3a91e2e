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

from vaelib import book
from vaelib.recipe import WARMUP_FRACTION

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("reader", "quick")
# mybinder.org gives a session at most 2 GB of memory; 2,000 MB is the stricter reading of "2 GB".
BINDER_MB = 2000
# The time budget of one reader-mode chapter on two cores, cold model cache.
CHAPTER_BUDGET_S = 60
# How much worse than the old recipe a model may score (nats per image): the target of time_to_quality.py.
TTQ_MARGIN = 1.0


class ClaimError(Exception):
    """A sentence of the Running page is no longer true of the benchmark results."""


def load(results: Path = RESULTS) -> dict:
    """The result files: ``chapters`` (rows of the current recipe), ``baseline`` (rows of an older one,
    measured in the same run), ``examples`` (PyTorch's own VAE example, timed in the same run), ``bench``,
    ``build`` and ``time_to_quality`` (dicts)."""
    out = {}
    for name in ("chapters", "bench", "build", "time_to_quality"):
        path = results / f"{name}.json"
        if not path.is_file():
            raise ClaimError(f"running_numbers: {path} is missing; benchmarks/README.md says how to measure it")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    failed = [f"{r['chapter']} ({r['mode']})" for r in out["chapters"] if "error" in r]
    if failed:
        raise ClaimError(f"running_numbers: chapters.json records failed runs: {', '.join(failed)}")
    out["baseline"] = [r for r in out["chapters"] if r.get("recipe") == "baseline"]
    out["examples"] = [r for r in out["chapters"] if r.get("recipe") == "pytorch/examples"]
    out["chapters"] = [r for r in out["chapters"] if r.get("recipe") is None]
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


def models_table() -> str:
    """The Markdown table of the book's models (``vaelib.book.BOOK_MODELS``): each one's name, words, colour
    in every figure, and recipe in reader mode."""
    from matplotlib.colors import to_hex

    lines = ["| model | in the text and legends | colour | latent size | KL weight beta | network | "
             "epochs (reader mode, full dataset) |", "| :--- | :--- | :--- | ---: | ---: | :--- | ---: |"]
    for name, m in book.BOOK_MODELS.items():
        r = book.config(**m.recipe)
        beta = "none (autoencoder)" if r.model.kind == "ae" else f"{r.beta:g}"
        swatch = f'<span style="color:{to_hex(m.colour)}" aria-hidden="true">&#9632;</span>'
        lines.append(f"| `{name}` | {m.words} | {swatch} {m.colour.removeprefix('tab:')} | {r.model.latent_dim} | "
                     f"{beta} | {r.model.arch.upper()}, hidden {', '.join(map(str, r.model.hidden))} | "
                     f"{m.recipe['epochs']} |")
    return "\n".join(lines)


def recipe_table(ttq: dict) -> str:
    """The Markdown table of time to quality: each book model under the old recipe and the book's."""
    lines = ["| model | old recipe: epochs | training time | time to target | test score | book recipe: "
             "epochs | training time | test score | change in score |",
             "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in ttq["models"].items():
        old, new = _old_and_book(name, m)
        lines.append(f"| `{name}` | {old['epochs']} | {old['seconds']:.0f} s | {old['seconds_to_target']:.0f} s | "
                     f"{old['score']:.1f} | {new['epochs']} | {new['seconds']:.0f} s | {new['score']:.1f} | "
                     f"{new['score'] - old['score']:+.1f} |")
    return "\n".join(lines)


def _old_and_book(name: str, m: dict) -> tuple[dict, dict]:
    """A model's run under the old recipe, and its candidate run of the book's recipe (``vaelib.book``)."""
    book_run = (book.BOOK_MODELS[name].recipe["epochs"], book.BOOK_LR, book.BOOK_BATCH_SIZE)
    new = [r for r in m["runs"][1:] if (r["epochs"], r["lr"], r["batch_size"]) == book_run]
    if not new:
        raise ClaimError(f"running_numbers: time_to_quality.json has no run of {name} with the book's recipe "
                         f"(epochs, peak rate, batch) = {book_run}; benchmarks/README.md says how to measure it")
    return m["runs"][0], new[0]


def _fewest_epochs(m: dict, lr: float) -> float:
    """The fewest candidate epochs at peak rate ``lr`` (book batch size) that reached the target, or inf."""
    return min((r["epochs"] for r in m["runs"][1:] if r["lr"] == lr and r["batch_size"] == book.BOOK_BATCH_SIZE
                and r["score"] >= m["target"]), default=float("inf"))


def _candidate_rates(ttq: dict) -> list[float]:
    """The candidate peak learning rates measured for every model."""
    rates = [{r["lr"] for r in m["runs"][1:]} for m in ttq["models"].values()]
    return sorted(set.intersection(*rates))


def _epochs_in_all(ttq: dict, lr: float) -> float:
    return sum(_fewest_epochs(m, lr) for m in ttq["models"].values())


def chapters_against_baseline(rows: list[dict], baseline: list[dict], titles: dict[str, str]) -> str:
    """Reader mode, chapter by chapter: the baseline revision's time beside the current one."""
    def seconds(r: dict | None) -> str:
        return f"{r['seconds']:.0f} s" if r else "not measured"

    lines = ["| chapter | old recipe | book recipe |", "| :--- | ---: | ---: |"]
    for stem, title in titles.items():
        lines.append(f"| {int(stem[:2])}. [{title}]({stem}.ipynb) | {seconds(_row(baseline, stem, 'reader'))} | "
                     f"{seconds(_row(rows, stem, 'reader'))} |")
    lines.append(f"| **all chapters** | {sum(r['seconds'] for r in baseline):.0f} s | "
                 f"{sum(r['seconds'] for r in rows if r['mode'] == 'reader'):.0f} s |")
    return "\n".join(lines)


def substitutions(results: Path = RESULTS, repository_url: str = "", branch: str = "main") -> dict[str, str]:
    """Every ``{{ run_... }}`` of chapters/running.md, as the text it stands for."""
    data = load(results)
    rows, bench, build, ttq = data["chapters"], data["bench"], data["build"], data["time_to_quality"]
    baseline = data["baseline"]
    if len(data["examples"]) != 1:
        raise ClaimError("running_numbers: chapters.json needs one timing of PyTorch's VAE example "
                         "(benchmarks/chapters.py --examples-epochs 50)")
    examples = data["examples"][0]
    old, new = _old_and_book("vae-20d", ttq["models"]["vae-20d"])
    titles = chapter_titles()
    by_mode = {m: [r for r in rows if r["mode"] == m] for m in MODES}
    slowest = max(by_mode["reader"], key=lambda r: r["seconds"])
    reader_s, baseline_s = sum(r["seconds"] for r in by_mode["reader"]), sum(r["seconds"] for r in baseline)
    datasets = {r.get("dataset", "mnist") for r in rows}
    names = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
    readme = "benchmarks/README.md"
    if repository_url:
        readme = f"[benchmarks/README.md]({repository_url.rstrip('/')}/blob/{branch}/benchmarks/README.md)"
    return {
        "run_machine": bench["machine"],
        "run_dataset": " and ".join(names.get(d, d) for d in sorted(datasets)),
        "run_table": chapter_table(rows, titles),
        "run_reader_total_min": f"{reader_s / 60:.0f}",
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
        "run_reader_total_s": f"{reader_s:.0f}",
        "run_examples_s": f"{examples['seconds']:.0f}",
        "run_examples_epochs": f"{examples['epochs']}",
        "run_book_examples_epochs": f"{reader_s / (examples['seconds'] / examples['epochs']):.0f}",
        "run_baseline_table": chapters_against_baseline(rows, baseline, titles),
        "run_baseline_total_s": f"{baseline_s:.0f}",
        "run_baseline_slowest_s": f"{max(r['seconds'] for r in baseline):.0f}",
        "run_baseline_revision": baseline[0]["revision"],
        "run_budget_chapter_s": f"{CHAPTER_BUDGET_S}",
        "run_reader_share": f"{reader_s / baseline_s:.0%}",
        "run_recipe_table": recipe_table(ttq),
        "run_models_table": models_table(),
        "run_recipe_lr": f"{new['lr']:g}",
        "run_recipe_batch": f"{new['batch_size']}",
        "run_recipe_warmup": f"{WARMUP_FRACTION:.0%}",
        "run_recipe_old_epochs": f"{old['epochs']}",
        "run_recipe_old_lr": f"{old['lr']:g}",
        "run_ttq_dataset": names.get(ttq["dataset"], ttq["dataset"]),
        "run_ttq_n_train": f"{ttq['n_train']:,}",
        "run_ttq_n_test": f"{ttq['n_test']:,}",
        "run_ttq_margin": f"{TTQ_MARGIN:g} nat",
        "run_ttq_candidates": _candidate_epochs(ttq),
        "run_ttq_rates": _words([f"{lr:g}" for lr in _candidate_rates(ttq)]),
        "run_ttq_epochs_by_rate": _words([f"{_epochs_in_all(ttq, lr):.0f} at {lr:g}"
                                          for lr in _candidate_rates(ttq)], "and"),
        "run_ttq_higher_rates": _words([f"{lr:g}" for lr in _candidate_rates(ttq) if lr > book.BOOK_LR]),
    }


def _words(items: list, last: str = "or") -> str:
    """["4", "5", "6"] -> "4, 5 or 6"."""
    items = [str(i) for i in items]
    return ", ".join(items[:-1]) + f" {last} {items[-1]}" if len(items) > 1 else items[0]


def _candidate_epochs(ttq: dict) -> str:
    """The candidate lengths, in words: "4, 6, 8, 10 or 12 epochs (4, 6 or 8 for conv-vae-20d)"."""
    lengths = {name: {r["epochs"] for r in m["runs"][1:]} for name, m in ttq["models"].items()}
    common = max(lengths.values(), key=len)
    others = [f"{_words(sorted(e))} for {name}" for name, e in lengths.items() if e != common]
    return _words(sorted(common)) + " epochs" + (f" ({'; '.join(others)})" if others else "")


# The claims chapters/running.md makes, each a test on the results; claims/running.yml quotes the sentences.
CLAIMS: dict[str, Callable[[dict], bool]] = {
    "every-chapter-fits-binder": lambda d: max(r["peak_mb"] for r in d["chapters"]) < BINDER_MB,
    "one-kernel-at-a-time": lambda d: min(r["peak_mb"] for r in d["chapters"]) > BINDER_MB / 2,
    "quick-mode-under-a-minute": lambda d: max(r["seconds"] for r in d["chapters"] if r["mode"] == "quick") < 60,
    "reader-chapters-within-budget": lambda d: max(r["seconds"] for r in d["chapters"] if r["mode"] == "reader")
                                               <= CHAPTER_BUDGET_S,
    "book-faster-than-before": lambda d: sum(r["seconds"] for r in d["chapters"] if r["mode"] == "reader")
                                         < sum(r["seconds"] for r in d["baseline"]),
    "no-model-a-nat-worse": lambda d: all(
        _old_and_book(n, m)[1]["score"] >= _old_and_book(n, m)[0]["score"] - TTQ_MARGIN
        for n, m in d["time_to_quality"]["models"].items()),
    "book-epochs-are-the-fewest": lambda d: all(
        book.BOOK_MODELS[n].recipe["epochs"] == _fewest_epochs(m, book.BOOK_LR)
        for n, m in d["time_to_quality"]["models"].items()),
    "higher-peaks-need-fewer-epochs": lambda d: all(
        _epochs_in_all(d["time_to_quality"], lr) < _epochs_in_all(d["time_to_quality"], book.BOOK_LR)
        for lr in _candidate_rates(d["time_to_quality"]) if lr > book.BOOK_LR),
    # A rebuild still prints the PDF (about half a minute); the cold book, which runs every notebook and
    # trains, took over three minutes. Under 45 s leaves no room for the chapters' runs.
    "rebuild-runs-nothing": lambda d: d["build"]["reader_book_rebuild_s"] < 45,
    "vaelib-edit-reruns-chapters": lambda d: d["build"]["reader_book_after_vaelib_edit_s"]
                                             > 3 * d["build"]["reader_book_rebuild_s"],  # a rebuild prints the PDF too
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
