"""tools/reader_notebooks.py: a chapter as the notebook Colab, classic Jupyter and any viewer render."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reader_notebooks as rn  # noqa: E402  (tools/ is a folder of scripts, not a package)

SITE = "https://org.github.io/book/"
LABELS = {"kl-closed-form": "chapters/appendix_math.html#kl-closed-form"}


def _result(expression: str, text: str) -> dict:
    return {"expression": expression, "result": {"status": "ok", "data": {"text/plain": repr(text)}, "metadata": {}}}


def test_numbers_come_from_the_books_run():
    results = [_result('f"{glued.ch_x:.0%}"', "25%"), _result('f"{glued.ch_names}"', "coat, bag")]
    text = 'x is {eval}`f"{glued.ch_x:.0%}"` for {eval}`f"{glued.ch_names}"`.'
    assert rn.fill_numbers(text, results) == "x is 25% for coat, bag."
    with pytest.raises(ValueError, match="no result from the book's run"):
        rn.fill_numbers('{eval}`f"{glued.ch_y}"`', results)


def test_admonitions_become_quotes_and_dropdowns_details():
    text = "\n".join(["Before.", "", "```{admonition} Key idea", ":class: tip", "Sigma **falls**.", "Twice.",
                      "```", "", "````{admonition} Solution", ":class: dropdown", "Run:", "", "```python",
                      "print(1)", "```", "````", "", "```{note}", "A note.", "```"])
    out = rn.directives_to_markdown(text)
    assert "> **Key idea**\n>\n> Sigma **falls**.\n> Twice." in out
    assert "<details><summary><b>Solution</b></summary>\n\nRun:\n\n```python\nprint(1)\n```\n\n</details>" in out
    assert "> **Note**\n>\n> A note." in out
    assert not rn.leftover_myst(out)


@pytest.mark.parametrize("text, message", [
    ("```{admonition} Open\n:class: tip\nnever closed", "never closed"),
    ("```{figure} x.png\nA figure.\n```", "no plain-Markdown form for the 'figure' directive"),
])
def test_a_directive_with_no_plain_form_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        rn.directives_to_markdown(text)


def test_links_point_at_the_published_book():
    text = ("(my-label)=\n## Title\n\nSee [chapter 3](03_vae_encoder.ipynb), [the closed form](#kl-closed-form), "
            "[Kingma and Welling (2013)](references.md#kingma2013auto), [notation](notation.md) and "
            "[PyTorch](https://pytorch.org).")
    out = rn.links_to_book(text, SITE, LABELS)
    assert '<a id="my-label"></a>\n## Title' in out
    assert f"[chapter 3]({SITE}chapters/03_vae_encoder.html)" in out
    assert f"[the closed form]({SITE}chapters/appendix_math.html#kl-closed-form)" in out
    assert f"[Kingma and Welling (2013)]({SITE}chapters/references.html#kingma2013auto)" in out
    assert f"[notation]({SITE}chapters/notation.html)" in out and "[PyTorch](https://pytorch.org)" in out
    with pytest.raises(ValueError, match="names no label"):
        rn.links_to_book("[x](#nowhere)", SITE, LABELS)


def test_leftover_myst_finds_roles_fences_and_targets():
    assert rn.leftover_myst("{cite:t}`kingma2013auto` and {eval}`x`") == ["{cite:t}`kingma2013auto`", "{eval}`x`"]
    assert rn.leftover_myst("```{margin}\nx\n```\n(lab)=\n") == ["```{margin}", "(lab)="]
    assert rn.leftover_myst("A `code` span, $x^{2}$, and ```python") == []


def _chapter() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    install = nbformat.v4.new_code_cell('#@title On Colab\nif "google.colab" in sys.modules:\n'
                                        '    %pip install -q "vaelib @ git+https://github.com/org/book@main"')
    prose = nbformat.v4.new_markdown_cell('KL is {eval}`f"{glued.ch_kl:.1f}"` nats ([closed form](#kl-closed-form)).')
    prose.metadata["user_expressions"] = [_result('f"{glued.ch_kl:.1f}"', "3.1")]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), install, prose,
                nbformat.v4.new_code_cell("glue('ch_kl', 3.14)")]
    return nb


def test_reader_notebook_is_plain_pinned_and_says_whose_numbers_it_shows():
    sha = "0123456789abcdef0123456789abcdef01234567"
    nb = rn.reader(_chapter(), site=SITE, labels=LABELS, commit=sha)
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "code", "markdown", "code"]
    assert nb.cells[1].source == rn.BOOKS_NUMBERS and nb.cells[1].id == "books-numbers"
    assert f"git+https://github.com/org/book@{sha}" in nb.cells[2].source
    assert nb.cells[3].source == f"KL is 3.1 nats ([closed form]({SITE}chapters/appendix_math.html#kl-closed-form))."
    assert "user_expressions" not in nb.cells[3].metadata
    assert nb.cells[4].source == "glue('ch_kl', 3.14)"  # code is untouched


def test_a_reader_notebook_with_myst_left_is_an_error():
    nb = _chapter()
    nb.cells[2].source += " See {numref}`fig-x`."
    with pytest.raises(ValueError, match=r"chapter\.ipynb, cell 2: MyST left in the reader notebook"):
        rn.reader(nb, site=SITE, labels=LABELS, commit=None, name="chapter.ipynb")
