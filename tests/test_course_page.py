"""The "Using this book in a course" page (chapters/course.md): in the table of contents after the story, its
running times read from the Running page's results (never typed), and a table that lists every exercise of
every chapter."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "chapters" / "course.md"
sys.path.insert(0, str(ROOT / "tools"))
import course_guide  # noqa: E402  (tools/ is a folder of scripts, not a package)
import running_numbers  # noqa: E402  (course_guide puts benchmarks/ on the path)

from vaelib.exercises import EXERCISES  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))


def _prose(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"```.*?```", " ", text, flags=re.S))


def test_the_page_comes_after_the_story_chapters_and_the_book_loads_its_extension():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    story = [f for f in files if re.match(r"chapters/0\d_", f)]
    assert "chapters/course" in files and files.index("chapters/course") == files.index(story[-1]) + 1
    sphinx = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]
    assert sphinx["local_extensions"]["course_guide"] == "tools"
    assert "course_guide" in sphinx["config"]["extensions"]


def test_every_substitution_on_the_page_is_filled_and_every_value_shown():
    names = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", PAGE.read_text(encoding="utf-8")))
    values = course_guide.substitutions()
    assert names == set(values), (names ^ set(values))


def test_the_page_is_plain_markdown_and_types_no_measured_number():
    text = PAGE.read_text(encoding="utf-8")
    assert not text.startswith("---") and "{code-cell}" not in text
    prose = re.sub(r"\{\{.*?\}\}", " ", _prose(text))
    assert re.findall(r"\b\d[\d,.]*\s*(?:s|ms|min|minutes|seconds|h|hours|MB|GB|%)\b", prose) == []


def test_the_running_times_are_the_running_pages_numbers():
    rows = running_numbers.load()["chapters"]
    table = course_guide.substitutions()["course_sessions"]
    lines = table.split("\n")[2:-1]
    assert len(lines) == len(CHAPTERS) == len(course_guide.SESSIONS)
    for line, chapter in zip(lines, CHAPTERS):
        assert f"({chapter.stem}.ipynb)" in line
        quick, reader = (next(r["seconds"] for r in rows if r["chapter"] == chapter.stem and r["mode"] == mode)
                         for mode in ("quick", "reader"))
        assert line.endswith(f"| {quick:.0f} s / {reader:.0f} s |"), (chapter.stem, line)
    # The Running page's table shows the same per-chapter times.
    running = running_numbers.substitutions()["run_table"]
    for r in rows:
        assert f"{r['seconds']:.0f} s" in running


def test_a_changed_measurement_changes_the_plan(monkeypatch):
    data = running_numbers.load()
    changed = copy.deepcopy(data)
    row = next(r for r in changed["chapters"] if r["chapter"] == "05_kl_fix" and r["mode"] == "reader")
    row["seconds"] = 4321.0
    monkeypatch.setattr(running_numbers, "load", lambda *a, **k: changed)
    assert " / 4321 s |" in course_guide.substitutions()["course_sessions"]


def _table_rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in table.split("\n")[2:]]


def test_the_exercise_table_lists_every_exercise_of_every_chapter():
    table = course_guide.substitutions()["course_exercises"]
    listed = {tuple(map(int, re.match(r"\[(\d+)\.(\d+)\]", row[0]).groups())) for row in _table_rows(table)}
    # Counted here from the notebooks, independently of course_guide's parser.
    expected = set()
    for nb in CHAPTERS:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        exercises = text.split("## Exercises", 1)[1]
        numbers = {int(n) for n in re.findall(r"^(\d+)\. \*\*", exercises, re.M)}
        numbers |= {int(n) for n in re.findall(r"^\*\*(\d+)\. ", exercises, re.M)}
        expected |= {(int(nb.name[:2]), n) for n in numbers}
    assert listed == expected, (expected - listed, listed - expected)
    assert len(listed) == len(_table_rows(table))


def test_every_checked_exercise_is_marked_checked_under_its_name():
    rows = _table_rows(course_guide.substitutions()["course_exercises"])
    checked = {re.search(r"`(\w+)`", row[3])[1] for row in rows if row[3].startswith("yes")}
    assert checked == set(EXERCISES)
    assert all(row[3] == "no" for row in rows if not row[3].startswith("yes"))


def test_an_exercise_missing_from_the_guide_stops_the_build(monkeypatch):
    trimmed = dict(course_guide.EXERCISES)
    del trimmed[(5, 3)]
    monkeypatch.setattr(course_guide, "EXERCISES", trimmed)
    with pytest.raises(course_guide.CourseError, match=r"in the chapters only \[\(5, 3\)\]"):
        course_guide.substitutions()


def test_a_new_exercise_in_a_chapter_without_a_row_stops_the_build(tmp_path):
    """Chapter 3 with a fourth question: its coding exercises become 5 and 6, and 6 has no row."""
    (tmp_path / "chapters").mkdir()
    for nb in CHAPTERS:
        data = json.loads(nb.read_text(encoding="utf-8"))
        if nb.name.startswith("03"):
            for cell in data["cells"]:
                text = "".join(cell["source"])
                if "## Exercises" in text:
                    text = text.rstrip("\n") + "\n4. **A new question.** Why?\n"
                text = re.sub(r"\A\*\*(\d)\. ", lambda m: f"**{int(m[1]) + 1}. ", text)
                cell["source"] = text
        (tmp_path / "chapters" / nb.name).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(course_guide.CourseError, match=r"in the chapters only \[\(3, 6\)\]"):
        course_guide.all_exercises(tmp_path)


def test_every_exercise_says_what_it_practises_and_its_kind():
    for key, practice in course_guide.EXERCISES.items():
        assert practice.kind in ("pen and paper", "experiment", "code"), key
        assert len(practice.practises) > 20 and practice.practises.endswith("."), key


def test_the_page_covers_what_a_course_needs():
    text = PAGE.read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    for needed in ("A plan of sessions", "Prerequisites", "The exercises", "A student edition without solutions",
                   "Discussion questions and common misconceptions", "Projects"):
        assert needed in headings, needed
    for nb in CHAPTERS:  # misconceptions and questions for every chapter, under its title
        title = running_numbers.chapter_titles()[nb.stem]
        assert f"{int(nb.name[:2])}. {title}" in headings, title
    assert text.count("Misconceptions:") == len(CHAPTERS) and text.count("Questions:") == len(CHAPTERS)
    prose = _prose(text)
    assert "make book-student" in text and "VAELIB_STUDENT=1" in prose
    assert 'vaelib.exercises.progress("ch03")' in prose
    assert len(re.findall(r"^\*\*\d\. ", text, re.M)) >= 2, "two or three projects"
