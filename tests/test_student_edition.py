"""The student edition (``VAELIB_STUDENT=1``, ``make book-student``): the HTML and the reader notebooks without
the exercises' solutions, with the exercises and their checks; the regular book keeps every solution."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import one_chapter_book

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import book_prose  # noqa: E402  (tools/ is a folder of scripts, not a package)
import reader_notebooks as rn  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
# How a chapter writes a solution, found without the code under test: a collapsed "Solution" admonition.
SOLUTION = re.compile(r"\A\s*(`{3,}|:{3,})\{admonition\}\s*Solution\s*\n:class: dropdown", re.M)
CHECK = re.compile(r"vaelib\.exercises\.check\(")


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _chapter(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_the_switch_is_read_by_the_books_policy_module(monkeypatch):
    from vaelib import book

    monkeypatch.delenv("VAELIB_STUDENT", raising=False)
    assert not book.student_edition()
    monkeypatch.setenv("VAELIB_STUDENT", "1")
    assert book.student_edition()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_solution_of_a_chapter_is_found(chapter):
    cells = _chapter(chapter).cells
    found = [i for i, c in enumerate(cells) if rn.is_solution(c)]
    written = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and SOLUTION.match(_text(c))]
    assert found == written and len(found) >= 1 + len([c for c in cells if CHECK.search(_text(c))]), chapter.name


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_student_notebook_keeps_the_exercises_and_checks_but_no_solution(chapter):
    regular = _chapter(chapter)
    student = rn.without_solutions(_chapter(chapter))
    kept = json.dumps([_text(c) for c in student.cells])
    solutions = [_text(c) for c in regular.cells if SOLUTION.match(_text(c))]
    assert solutions and not any(SOLUTION.match(_text(c)) for c in student.cells)
    assert "{admonition} Solution" not in kept
    # The lesson: the chapter less its solutions and the hidden cells after the Exercises heading.
    at = next(i for i, c in enumerate(regular.cells) if "## Exercises" in _text(c))
    lesson_text = "\n".join(_text(c) for i, c in enumerate(regular.cells) if not SOLUTION.match(_text(c))
                            and not (i > at and "remove-cell" in c.metadata.get("tags", [])))
    rest = "\n".join(_text(c) for c in student.cells)
    for solution in solutions:  # no line of a solution survives, unless the lesson itself says it too
        lines = {line.strip() for line in solution.split("\n") if len(line.strip()) > 20}
        survivors = [line for line in lines if line in rest and line not in lesson_text]
        assert not survivors, f"{chapter.name}: solution text left in the student edition: {survivors[:3]}"
    # Nothing hidden after the Exercises heading (the code and numbers behind the solutions) remains.
    heading = next(i for i, c in enumerate(student.cells) if "## Exercises" in _text(c))
    assert not [c for c in student.cells[heading:] if "remove-cell" in c.metadata.get("tags", [])]
    # Every exercise, stub and check stays, in order.
    def lesson(nb):
        return [c.id for c in nb.cells if not SOLUTION.match(_text(c))
                and not (c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", []))]
    assert lesson(student) == lesson(regular)
    assert sum(bool(CHECK.search(_text(c))) for c in student.cells) == \
        sum(bool(CHECK.search(_text(c))) for c in regular.cells) >= 2


def test_the_book_hides_solutions_without_changing_a_code_cell():
    """The execution cache keys on the code cells, so the student edition runs no notebook again."""
    for chapter in CHAPTERS:
        regular = json.loads(chapter.read_text(encoding="utf-8"))
        student = book_prose.hide_solutions(json.loads(chapter.read_text(encoding="utf-8")))
        assert [c for c in student["cells"] if c["cell_type"] == "code"] == \
            [c for c in regular["cells"] if c["cell_type"] == "code"]
        assert len(student["cells"]) == len(regular["cells"])
        assert not any(SOLUTION.match(_text(c)) for c in student["cells"])


def test_the_regular_reader_notebook_keeps_every_solution():
    nb = _chapter(CHAPTERS[0])
    for cell in nb.cells:
        cell.metadata.pop("user_expressions", None)
        if cell.cell_type == "markdown":  # the reader notebook needs the run's numbers; these stand in
            cell.source = rn.INLINE.sub("1.0", cell.source)
    out = rn.reader(nb, site="https://example.org/book/", labels={}, commit=None)
    n = sum(bool(SOLUTION.match(_text(c))) for c in _chapter(CHAPTERS[0]).cells)
    assert sum("<summary><b>Solution</b></summary>" in c.source for c in out.cells) == n


# --- the book build, both ways, in one build folder ------------------------------------------------

SECRET = "THE-ANSWER-IS-FORTY-TWO"


def _mini_book(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "src"
    tmp_path.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\n## Summary\n\nIt ends.\n\n## Exercises\n\n1. **Think.** Why?"),
        nbformat.v4.new_markdown_cell(f"```{{admonition}} Solution\n:class: dropdown\n\n**1.** {SECRET} one.\n```"),
        nbformat.v4.new_markdown_cell("**2. Write it.** Write `answer()`."),
        nbformat.v4.new_code_cell("def answer():\n    # TODO: replace this line\n    raise NotImplementedError"),
        nbformat.v4.new_code_cell('vaelib.exercises.check("ch1_answer", answer)'),
        nbformat.v4.new_markdown_cell(f"````{{admonition}} Solution\n:class: dropdown\n\n```python\n"
                                      f"def answer():\n    return '{SECRET} two'\n```\n````"),
    ]
    return one_chapter_book(tmp_path, nb, ROOT / "tools")


def _build_html(src: Path, student: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "VAELIB_STUDENT"}
    if student:
        env["VAELIB_STUDENT"] = "1"
    out = src.parent / "out" / "html"  # outside the source: MyST-NB writes jupyter_execute/ beside it
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(src), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return (out / "chapter.html").read_text(encoding="utf-8")


def test_the_student_build_leaves_out_the_solutions_and_the_regular_build_keeps_them(tmp_path):
    src = _mini_book(tmp_path)
    regular = _build_html(src, student=False)
    assert regular.count(SECRET) == 2 and regular.count(">Solution<") == 2
    # The same build folder: switching the edition makes Sphinx read the notebook again.
    student = _build_html(src, student=True)
    assert SECRET not in student and "Solution" not in student
    text = re.sub(r"<[^>]+>", "", student)  # the page's text, without the syntax highlighting's spans
    for kept in ("Write it.", "def answer():", "raise NotImplementedError", 'vaelib.exercises.check("ch1_answer"',
                 "Why?"):
        assert kept in text.replace("&quot;", '"'), kept
    assert SECRET in _build_html(src, student=False)


def test_the_makefile_builds_the_student_edition_from_the_books_execution_cache():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = make.split("\nbook-student:", 1)[1].split("\n\n", 1)[0]
    assert recipe.startswith(" book\n"), "the student edition starts from the regular book's run"
    assert "cp -a _build/.jupyter_cache _build/student/_build/.jupyter_cache" in recipe
    assert "VAELIB_STUDENT=1" in recipe and "finish_book,_build/student,VAELIB_STUDENT=1" in recipe
    assert "\t$(2) $(BIN)/python tools/executed_notebooks.py" in make, "the reader notebooks follow the switch"


# --- the built books, when both are there (make book, make book-student) ------------------------------

REGULAR_HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
STUDENT_HTML = Path(os.environ.get("STUDENT_BOOK_HTML", ROOT / "_build" / "student" / "_build" / "html"))


@pytest.mark.skipif(not (REGULAR_HTML / "chapters").is_dir() or not (STUDENT_HTML / "chapters").is_dir(),
                    reason="build the book and its student edition first: make book-student")
def test_the_built_student_edition_has_no_solution_and_the_regular_book_has_them_all():
    n = sum(bool(SOLUTION.match(_text(c))) for nb in CHAPTERS for c in _chapter(nb).cells)
    for html, expected in ((REGULAR_HTML, n), (STUDENT_HTML, 0)):
        pages = [p.read_text(encoding="utf-8") for p in sorted((html / "chapters").glob("0*.html"))]
        downloads = [nbformat.read(p, as_version=4) for p in sorted((html / "_sources" / "chapters").glob("0*.ipynb"))]
        assert len(pages) == len(downloads) == len(CHAPTERS)
        assert sum(p.count('<p class="admonition-title">Solution</p>') for p in pages) == expected, html
        assert sum(c.source.count("<summary><b>Solution</b></summary>") for nb in downloads for c in nb.cells) \
            == expected, html
        assert sum(c.source.startswith("vaelib.exercises.check(") for nb in downloads for c in nb.cells) == \
            sum(len(CHECK.findall(_text(c))) for nb in CHAPTERS for c in _chapter(nb).cells)
        assert (html / "chapters" / "course.html").is_file()
