"""The numbers in the chapters' prose: one source that Jupyter Lab, the HTML book and the downloads all show.

A code cell hands a value to the text with ``vaelib.book.glue(name, value)``; the Markdown quotes it as
``{eval}`f"{glued.name:.1f}"```. In Jupyter Lab (jupyterlab-myst) that expression runs in the reader's
kernel; in the book build ``tools/book_prose.py`` fills it in from the notebook's glue records; in the
executed download ``tools/executed_notebooks.py`` stores it where jupyterlab-myst keeps its results.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import one_chapter_book

import vaelib.book as vbook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import book_prose  # noqa: E402  (tools/ is a folder of scripts, not a package)
import executed_notebooks as en  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
INLINE = re.compile(r"\{eval\}`([^`]+)`")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _hidden(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "remove-cell" in cell["metadata"].get("tags", [])


# --- vaelib.book.glued ------------------------------------------------------------------------------

def test_glue_hands_the_value_to_glued_as_a_plain_number():
    import torch

    value = vbook.glue("test_prose_value", torch.tensor(0.25))
    assert value == 0.25 and type(value) is float
    assert vbook.glued.test_prose_value == 0.25
    assert f"{vbook.glued.test_prose_value:.0%}" == "25%"
    assert "test_prose_value" in dir(vbook.glued)


@pytest.mark.parametrize("display", [False, True])
def test_glue_records_the_value_as_myst_nb_glue_does(display):
    """The book build reads glue records with MyST-NB; vaelib writes them itself, so they must be the same."""
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output
    from myst_nb import glue as myst_glue

    start_ipython()
    with capture_output() as ours:
        vbook.glue("test_prose_record", 0.25, display=display)
    with capture_output() as theirs:
        myst_glue("test_prose_record", 0.25, display=display)
    assert [(o.data, o.metadata) for o in ours.outputs] == [(o.data, o.metadata) for o in theirs.outputs]
    assert len(ours.outputs) == 1 and ours.outputs[0].metadata["scrapbook"]["name"] == "test_prose_record"


def test_glue_outside_ipython_prints_nothing(capsys, monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # a plain Python process, as in a script
    assert vbook.glue("test_prose_quiet", 1.5) == 1.5
    assert capsys.readouterr().out == ""


def test_a_value_not_glued_yet_says_to_run_the_cells_above():
    with pytest.raises(AttributeError, match="run the cells above"):
        vbook.glued.test_prose_never_glued


def test_glued_is_read_only_and_names_must_be_identifiers():
    with pytest.raises(AttributeError, match="read-only"):
        vbook.glued.test_prose_value = 1
    with pytest.raises(ValueError, match="not a valid name"):
        vbook.glue("ch5 kl", 1.0)


# --- the one form of inline expression --------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ('f"{glued.ch5_kl:.1f}"', ("ch5_kl", ".1f")),
    ('f"{glued.ch6_ratio:,.0f}"', ("ch6_ratio", ",.0f")),
    ('f"{glued.ch4_names}"', ("ch4_names", "")),
])
def test_parse_reads_name_and_format(expression, expected):
    assert book_prose.parse(expression) == expected


@pytest.mark.parametrize("expression", [
    "glued.ch5_kl", 'f"{ch5_kl:.1f}"', 'f"{glued.ch5_kl:.1f} nats"', 'f"{glued.ch5_kl + 1}"',
    "__import__('os')", 'f"{glued.ch5_kl!r}"',
])
def test_parse_refuses_every_other_form(expression):
    with pytest.raises(ValueError, match="can only quote a glued value"):
        book_prose.parse(expression)


# --- the chapters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_markdown_holds_only_what_jupyter_lab_renders(chapter):
    """No glue or cite roles (jupyterlab-myst shows them raw); every inline expression has the book's form."""
    for index, cell in enumerate(_cells(chapter)):
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        raw = re.findall(r"\{(?!eval\})[a-z]+(?::[a-z]+)?\}`", text)
        assert not raw, f"{chapter.name}, cell {index}: roles that Jupyter Lab does not render: {raw}"
        for expression in INLINE.findall(text):
            book_prose.parse(expression)


def _glued_names(cells: list[dict]) -> list[re.Pattern]:
    """What the code cells glue: a literal name, or an f-string name as a pattern (``ch4_fall_{d}``)."""
    patterns = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for literal, template in re.findall(r'glue\(\s*(?:"(\w+)"|f"([^"]+)")', _source(cell)):
            name = re.escape(literal) if literal else re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(template))
            patterns.append(re.compile(name))
    return patterns


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_quoted_value_is_glued_above_the_text_that_quotes_it(chapter):
    """In Jupyter Lab a Markdown cell evaluates its numbers when it runs, so a learner who runs the cells one
    by one sees a number only if a code cell above it glued it."""
    cells = _cells(chapter)
    for index, cell in enumerate(cells):
        for expression in INLINE.findall(_source(cell)) if cell["cell_type"] == "markdown" else []:
            name, _ = book_prose.parse(expression)
            assert any(p.fullmatch(name) for p in _glued_names(cells[:index])), \
                f"{chapter.name}, cell {index}: the text quotes glued.{name}, which no code cell above it glues"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_hidden_cells_display_nothing(chapter):
    """A hidden cell that ends in a bare expression (such as a glue call) would print its value under the
    folded cell in Jupyter."""
    import ast

    for index, cell in enumerate(_cells(chapter)):
        text = _source(cell)
        if not _hidden(cell) or "google.colab" in text:
            continue
        last = ast.parse(text).body[-1]
        assert not isinstance(last, ast.Expr) or text.rstrip().endswith(";"), \
            f"{chapter.name}, cell {index}: the hidden cell ends in an expression; end it with ';'"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_books_machinery_is_collapsed_and_out_of_the_lesson(chapter):
    """Hidden cells (checks, glue) are collapsed in Lab and shown as a titled form in Colab; no visible cell
    hands values to the text; the first code cell imports ``glued``, which the text's expressions need."""
    cells = _cells(chapter)
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        text, meta = _source(cell), cell["metadata"]
        first = text.splitlines()[0] if text else ""
        if _hidden(cell):
            assert meta.get("jupyter", {}).get("source_hidden") is True, f"{chapter.name}, cell {index}: not collapsed"
            assert meta.get("cellView") == "form" and first.startswith("#@title "), \
                f"{chapter.name}, cell {index}: a hidden cell needs cellView 'form' and a '#@title' first line"
            assert not meta.get("jupyter", {}).get("outputs_hidden"), \
                f"{chapter.name}, cell {index}: a failing check must stay visible"
        else:
            assert "vaelib.book.glue(" not in text and "# claim:" not in text, \
                f"{chapter.name}, cell {index}: book machinery in a visible cell: {first!r}"
    first_code = next(c for c in cells if c["cell_type"] == "code" and not _hidden(c))
    assert "from vaelib.book import glued" in _source(first_code), chapter.name


# --- the executed download --------------------------------------------------------------------------

def _glue_output(name: str, value) -> nbformat.NotebookNode:
    """The output MyST-NB's ``glue(name, value, display=False)`` records in a notebook."""
    return nbformat.v4.new_output("display_data", data={en.GLUE_PREFIX + "text/plain": repr(value)},
                                  metadata={"scrapbook": {"name": name, "mime_prefix": en.GLUE_PREFIX}})


def test_the_download_carries_the_runs_numbers_for_jupyterlab_myst():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("glue('ch_x', 0.254); glue('ch_names', 'coat, bag')")
    code.outputs = [_glue_output("ch_x", 0.254), _glue_output("ch_names", "coat, bag")]
    prose = nbformat.v4.new_markdown_cell('x is {eval}`f"{glued.ch_x:.0%}"`, names {eval}`f"{glued.ch_names}"`.')
    nb.cells = [code, prose]
    results = en.fill_prose(nb).cells[1].metadata["user_expressions"]
    assert [r["expression"] for r in results] == ['f"{glued.ch_x:.0%}"', 'f"{glued.ch_names}"']
    assert [r["result"]["data"]["text/plain"] for r in results] == ["'25%'", "'coat, bag'"]
    assert all(r["result"]["status"] == "ok" for r in results)


def test_a_download_quoting_a_value_the_run_never_glued_is_an_error():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('{eval}`f"{glued.ch_missing:.1f}"`')]
    with pytest.raises(SystemExit, match="cell 0 quotes glued.ch_missing"):
        en.fill_prose(nb)


# --- the book build ---------------------------------------------------------------------------------

def test_the_book_loads_the_prose_extension():
    import yaml

    sphinx = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]
    assert sphinx["local_extensions"]["book_prose"] == "tools"
    extensions = sphinx["config"]["extensions"]
    assert extensions.index("book_prose") > extensions.index("myst_nb"), "book_prose overrides MyST-NB's {eval}"
    assert sphinx["config"]["bibtex_cite_id"] == "{key}", "the chapters' citation links need the keys as anchors"


def _mini_book(tmp_path: Path, prose: str, extra: list | None = None) -> Path:
    """A one-notebook Sphinx project with the book's prose extension, and the notebook's run stored in it."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell("vaelib.book.glue('ch_x', 0.254)")
    code.outputs = [_glue_output("ch_x", 0.254)]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), code, nbformat.v4.new_markdown_cell(prose),
                *(extra or [])]
    return one_chapter_book(tmp_path, nb, ROOT / "tools")


def _build(src: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(src),
                           str(src / "_build")], capture_output=True, text=True, timeout=300)


def test_the_book_build_fills_in_the_glued_value(tmp_path):
    src = _mini_book(tmp_path, 'Here x is {eval}`f"{glued.ch_x:.0%}"` of the whole.')
    proc = _build(src)
    assert proc.returncode == 0, proc.stderr
    html = (src / "_build" / "chapter.html").read_text(encoding="utf-8")
    assert re.search(r"Here x is <span[^>]*>25%</span> of the whole", html), html[-2000:]


def test_prose_naming_a_value_the_run_never_glued_fails_the_build_with_chapter_cell_and_name(tmp_path):
    src = _mini_book(tmp_path, 'Here x is {eval}`f"{glued.ch_typo:.0%}"`.')
    proc = _build(src)
    assert proc.returncode != 0
    assert re.search(r"chapter\.ipynb, markdown cell 2 \(id [^)]+\): the text quotes glued\.ch_typo",
                     proc.stderr), proc.stderr


def test_prose_of_another_form_fails_the_build(tmp_path):
    src = _mini_book(tmp_path, "Here x is {eval}`ch_x * 2`.")
    proc = _build(src)
    assert proc.returncode != 0 and "can only quote a glued value" in proc.stderr, proc.stderr


# --- captions: under the figure in Jupyter Lab and Colab, in the figure in the book ------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_has_its_caption_cell_right_under_it(chapter):
    cells = _cells(chapter)
    for index, cell in enumerate(cells):
        figure = cell["metadata"].get("mystnb", {}).get("figure") if cell["cell_type"] == "code" else None
        if figure is None:
            continue
        assert "caption" not in figure, f"{chapter.name}, cell {index}: the caption belongs in the cell under it"
        below = cells[index + 1] if index + 1 < len(cells) else {"cell_type": None, "metadata": {}}
        assert below["cell_type"] == "markdown" and book_prose.CAPTION_TAG in below["metadata"].get("tags", []), \
            f"{chapter.name}, cell {index}: a figure without a caption cell under it"
        caption = _source(below)
        assert caption.startswith(book_prose.CAPTION_PREFIX) and len(caption) > 40, (chapter.name, index, caption)
    assert book_prose.captions_into_figures(json.loads(chapter.read_text(encoding="utf-8")))


def _figure_and_caption(caption: str) -> dict:
    figure = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {"name": "fig-x"}}})
    return {"cells": [nbformat.v4.new_markdown_cell("# A chapter"), figure,
                      nbformat.v4.new_markdown_cell(caption, metadata={"tags": ["figure-caption"]})]}


def test_captions_move_into_the_figure_above_and_their_cell_is_hidden():
    nb = book_prose.captions_into_figures(_figure_and_caption("**Figure.** Sigma falls\nin every epoch."))
    assert nb["cells"][1]["metadata"]["mystnb"]["figure"] == {"name": "fig-x", "caption": "Sigma falls in every epoch."}
    assert "remove-cell" in nb["cells"][2]["metadata"]["tags"] and len(nb["cells"]) == 3


def test_a_caption_that_follows_no_figure_or_lacks_its_prefix_is_an_error():
    nb = _figure_and_caption("**Figure.** Orphan.")
    nb["cells"][1]["metadata"] = {}
    with pytest.raises(ValueError, match="cell 2 is a caption .* not a figure"):
        book_prose.captions_into_figures(nb)
    with pytest.raises(ValueError, match="starts with"):
        book_prose.captions_into_figures(_figure_and_caption("Sigma falls."))


PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def test_the_book_shows_the_caption_cell_as_the_figures_numbered_caption(tmp_path):
    figure = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {"name": "fig-x"},
                                                                      "image": {"alt": "One black pixel."}}})
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG_1PX, "text/plain": "<Figure>"})]
    caption = nbformat.v4.new_markdown_cell("**Figure.** The smallest figure there is.",
                                            metadata={"tags": ["figure-caption"]})
    src = _mini_book(tmp_path, "Text.", [figure, caption])
    proc = _build(src)
    assert proc.returncode == 0, proc.stderr
    html = (src / "_build" / "chapter.html").read_text(encoding="utf-8")
    m = re.search(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert m and "The smallest figure there is." in m.group(1), html[-3000:]
    assert "**Figure.**" not in html and html.count("The smallest figure there is.") == 1


def test_a_caption_cell_under_no_figure_fails_the_build(tmp_path):
    caption = nbformat.v4.new_markdown_cell("**Figure.** Orphan.", metadata={"tags": ["figure-caption"]})
    proc = _build(_mini_book(tmp_path, "Text.", [caption]))
    assert proc.returncode != 0 and "chapter.ipynb: cell 3 is a caption" in proc.stderr, proc.stderr


def test_the_download_matches_the_books_run_and_keeps_its_caption_cells(tmp_path):
    """The book ran the notebook with its captions moved into the figures; the download still finds that run,
    and keeps each caption as the visible cell under its figure."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    source = tmp_path / "chapter.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = _figure_and_caption("**Figure.** A caption.")["cells"]
    nbformat.write(nb, source)
    ran = book_prose.captions_into_figures(nbformat.read(source, as_version=4))
    ran.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG_1PX})]
    cache = get_cache(tmp_path / "cache")
    cache.cache_notebook_bundle(CacheBundleIn(ran, str(source)), check_validity=False)
    nb = en.executed(source, cache)
    assert nb.cells[1].outputs[0].data["image/png"] == PNG_1PX
    assert nb.cells[2].metadata["tags"] == ["figure-caption"] and nb.cells[2].source == "**Figure.** A caption."
