"""The "Running this book" page (chapters/running.md): a Markdown page, so it shows no launch buttons, whose
numbers all come from benchmarks/results through benchmarks/running_numbers.py, and whose claims are
listed in claims/running.yml and checked on those results."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "chapters" / "running.md"
sys.path.insert(0, str(ROOT / "benchmarks"))
import running_numbers  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def _prose(text: str) -> str:
    """The page without its code blocks, whitespace squashed."""
    return re.sub(r"\s+", " ", re.sub(r"```.*?```", " ", text, flags=re.S))


def test_the_page_is_in_the_table_of_contents_and_every_page_there_exists():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert re.search(r"file: chapters/running$", toc, re.M)
    missing = [f for f in re.findall(r"file: (\S+)$", toc, re.M)
               if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert missing == [], f"_toc.yml names pages that do not exist: {missing}"


def test_the_page_is_plain_markdown_so_it_has_no_launch_buttons():
    """sphinx-book-theme adds launch buttons to notebooks only: .ipynb pages and Markdown pages whose front
    matter has a kernelspec (MyST notebooks). This page reads local files and must not offer them."""
    text = PAGE.read_text(encoding="utf-8")
    assert not text.startswith("---"), "no front matter: a jupytext/kernelspec header makes it a notebook"
    assert "{code-cell}" not in text and "kernelspec" not in text


def test_the_extension_is_loaded_by_the_book():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    sphinx = config["sphinx"]
    assert sphinx["local_extensions"]["running_numbers"] == "benchmarks"
    assert "running_numbers" in sphinx["config"]["extensions"]


def test_every_substitution_on_the_page_is_filled():
    names = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", PAGE.read_text(encoding="utf-8")))
    values = running_numbers.substitutions(repository_url="https://github.com/o/r")
    assert names, "the page has no {{ run_... }} numbers"
    assert names <= set(values), f"undefined on the page: {names - set(values)}"
    assert set(values) <= names, f"computed but never shown: {set(values) - names}"


def test_no_measured_number_is_typed_into_the_page():
    prose = _prose(PAGE.read_text(encoding="utf-8"))
    prose = re.sub(r"\{\{.*?\}\}", " ", prose)
    typed = re.findall(r"\b\d[\d,.]*\s*(?:s|ms|min|minutes|seconds|MB|GB|%)\b", prose)
    # Binder's memory limit is a property of mybinder.org, not a measurement of the book.
    assert [t for t in typed if t != "2 GB"] == [], typed


def test_the_numbers_are_the_results():
    rows = [r for r in json.loads((running_numbers.RESULTS / "chapters.json").read_text())
            if r.get("recipe") is None]  # the old recipe and the yardstick have rows of their own
    values = running_numbers.substitutions()
    assert values["run_peak_max_mb"] == f"{max(r['peak_mb'] for r in rows):,.0f}"
    table = values["run_table"]
    for r in rows:
        assert f"{r['seconds']:.0f} s" in table and f"{r['peak_mb']:,.0f} MB" in table
    assert table.count("\n") == len(running_numbers.chapter_titles()) + 2  # header, rule, chapters, total


def test_the_page_lists_every_book_model_with_its_colour_words_and_epochs():
    from matplotlib.colors import to_hex
    from vaelib import book

    table = running_numbers.substitutions()["run_models_table"]
    assert "{{ run_models_table }}" in PAGE.read_text()
    rows = table.splitlines()[2:]
    assert len(rows) == len(book.BOOK_MODELS)
    for row, (name, m) in zip(rows, book.BOOK_MODELS.items()):
        assert row.startswith(f"| `{name}` | {m.words} |") and to_hex(m.colour) in row, row
        assert row.endswith(f"| {m.recipe['epochs']} |"), row


def test_each_claim_is_in_the_ledger_on_the_page_and_holds():
    ledger = yaml.safe_load((ROOT / "claims" / "running.yml").read_text(encoding="utf-8"))
    prose = _prose(PAGE.read_text(encoding="utf-8"))
    ids = [entry["id"] for entry in ledger]
    assert sorted(ids) == sorted(running_numbers.CLAIMS), "claims/running.yml and CLAIMS must list the same ids"
    for entry in ledger:
        assert re.sub(r"\s+", " ", entry["says"]) in prose, f"{entry['id']}: {entry['says']!r} is not on the page"
    running_numbers.check_claims()  # raises if the results no longer support one


def test_a_claim_the_results_contradict_stops_the_build(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(running_numbers.RESULTS, results)
    rows = json.loads((results / "chapters.json").read_text())
    current = next(r for r in rows if r.get("recipe") is None)
    current["peak_mb"] = 2500.0  # more than Binder's 2 GB
    (results / "chapters.json").write_text(json.dumps(rows))
    with pytest.raises(running_numbers.ClaimError, match="every-chapter-fits-binder"):
        running_numbers.check_claims(results)
    (results / "build.json").unlink()
    with pytest.raises(running_numbers.ClaimError, match="build.json is missing"):
        running_numbers.check_claims(results)


def test_the_yardstick_is_measured_in_the_same_results(tmp_path):
    values = running_numbers.substitutions()
    rows = json.loads((running_numbers.RESULTS / "chapters.json").read_text())
    examples = next(r for r in rows if r.get("recipe") == "pytorch/examples")
    reader = sum(r["seconds"] for r in rows if r["mode"] == "reader" and r.get("recipe") is None)
    assert values["run_book_examples_epochs"] == f"{reader / examples['seconds'] * examples['epochs']:.0f}"
    results = tmp_path / "results"
    shutil.copytree(running_numbers.RESULTS, results)
    (results / "chapters.json").write_text(json.dumps([r for r in rows if r is not examples]))
    with pytest.raises(running_numbers.ClaimError, match="--examples-epochs"):
        running_numbers.substitutions(results)


def test_the_readme_and_the_introduction_state_the_measured_chapter_times():
    rows = [r for r in json.loads((running_numbers.RESULTS / "chapters.json").read_text())
            if r["mode"] == "reader" and r.get("recipe") is None]
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    m = re.search(r"each chapter took at most (\d+) s and all seven together (\d+) s", readme)
    assert m, "the README no longer states the reader-mode chapter times"
    assert (int(m[1]), int(m[2])) == (round(max(r["seconds"] for r in rows)), round(sum(r["seconds"] for r in rows)))
    intro = (ROOT / "intro.md").read_text(encoding="utf-8")
    assert "{{ run_reader_slowest_s }} s per chapter and {{ run_reader_total_s }} s" in re.sub(r"\s+", " ", intro)


def test_the_command_line_docs_state_the_books_recipe():
    from vaelib import book
    readme = re.sub(r"\s+", " ", (ROOT / "CLI.md").read_text(encoding="utf-8"))
    assert f"warms up to a peak of {book.BOOK_LR:g} and decays along a cosine" in readme
    epochs = sorted({m.recipe["epochs"] for name, m in book.BOOK_MODELS.items() if not name.startswith("conv")})
    assert f"the book's own models train for {' or '.join(map(str, epochs))}." in readme, epochs
