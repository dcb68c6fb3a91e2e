"""The learner's progress (vaelib.progress): what ``check`` records, what ``progress`` shows, and that a
missing, corrupt or unwritable record is never an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaelib import exercises, progress as pg
from vaelib.exercises import EXERCISES, check


def _stub(*args):
    raise NotImplementedError


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A private cache folder, as ``VAELIB_DATA`` names it."""
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    return tmp_path


def _status(table: pg.Progress) -> dict[str, bool]:
    return {name: when is not None for _, name, _, when in table.rows}


def test_a_correct_check_is_recorded_in_the_books_cache_folder_and_nothing_else_is(folder, capsys):
    check("ch3_split", _stub)                                    # not done yet
    check("ch3_split", lambda h: (h, h))                         # wrong
    assert not (folder / "progress.json").exists()
    assert _status(exercises.progress("ch03")) == {"ch3_reparameterize": False, "ch3_split": False}
    check("ch3_split", EXERCISES["ch3_split"].reference)
    assert capsys.readouterr().out.splitlines()[-1].startswith("correct: ")
    assert set(json.loads((folder / "progress.json").read_text())["passed"]) == {"ch3_split"}
    assert _status(exercises.progress("ch03")) == {"ch3_reparameterize": False, "ch3_split": True}


def test_the_first_pass_is_kept_and_a_later_wrong_answer_does_not_erase_it(folder):
    check("ch5_kl", EXERCISES["ch5_kl"].reference)
    first = pg.passed()["ch5_kl"]
    check("ch5_kl", lambda mu, logvar: mu.sum(1))
    check("ch5_kl", EXERCISES["ch5_kl"].reference)
    assert pg.passed() == {"ch5_kl": first}


@pytest.mark.parametrize("chapter", ["ch03", "ch3", 3, "3", "03_vae_encoder"])
def test_a_chapter_can_be_named_in_several_ways(folder, chapter):
    table = exercises.progress(chapter)
    assert table.chapter == 3 and {name for _, name, _, _ in table.rows} == {"ch3_reparameterize", "ch3_split"}


def test_the_whole_book_lists_every_checked_exercise_in_chapter_order(folder):
    table = exercises.progress()
    assert {name for _, name, _, _ in table.rows} == set(EXERCISES)
    chapters = [ch for ch, *_ in table.rows]
    assert chapters == sorted(chapters) and set(chapters) == set(range(1, 8))


def test_the_table_reads_as_markdown_and_as_text(folder):
    check("ch7_bits_per_dim", EXERCISES["ch7_bits_per_dim"].reference)
    table = exercises.progress("ch07")
    markdown, text = table._repr_markdown_(), str(table)
    assert "1 of the 2 checked exercises of chapter 7 passed in this environment" in markdown
    assert "| 7 | `ch7_bits_per_dim` | `to_bits_per_dim()` | passed (" in markdown
    assert "| 7 | `ch7_iw_bound` | `iw_bound()` | not yet |" in markdown
    assert "ch7_iw_bound" in text and "not yet" in text and "passed (" in text and "|" not in text


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"passed": [1]}', '{"passed": {"x": 3}}',
                                     "\x00\xff"])
def test_a_corrupt_record_reads_as_nothing_passed_and_is_replaced_by_the_next_pass(folder, content):
    (folder / "progress.json").write_text(content, encoding="latin-1")
    assert exercises.progress("ch1").n_passed == 0
    check("ch1_nll_floor", EXERCISES["ch1_nll_floor"].reference)
    assert set(pg.passed()) == {"ch1_nll_floor"}


def test_a_missing_folder_is_created_and_an_unwritable_one_leaves_the_verdict_alone(tmp_path, capsys):
    where = tmp_path / "not" / "there"
    assert pg.passed(where) == {} and pg.record_passed("ch5_kl", where) and set(pg.passed(where)) == {"ch5_kl"}
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the folder should be: nothing can be written under it
    assert pg.record_passed("ch5_kl", blocked) is False
    assert pg.passed(blocked) == {}


def test_an_unwritable_cache_folder_does_not_break_check(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("VAELIB_DATA", str(blocked))
    check("ch5_kl", EXERCISES["ch5_kl"].reference)
    assert capsys.readouterr().out.startswith("correct: ")


def test_a_name_that_is_no_chapter_says_what_to_write(folder):
    with pytest.raises(ValueError, match="progress\\('ch03'\\)"):
        exercises.progress("chapter three")
    with pytest.raises(ValueError, match="chapter 9 has no checked exercises"):
        exercises.progress(9)


# --- the chapters' last cell ----------------------------------------------------------------------------

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("0*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_ends_with_a_visible_cell_that_shows_its_progress(chapter, folder):
    cells = json.loads(chapter.read_text(encoding="utf-8"))["cells"]
    last, number = cells[-1], chapter.name[:2]
    assert last["cell_type"] == "code" and last["id"] == f"ch{number}-progress", chapter.name
    assert "remove-cell" not in last["metadata"].get("tags", []) and not last["metadata"].get("jupyter")
    code = "".join(last["source"])
    assert code.rstrip().endswith(f'vaelib.exercises.progress("ch{number}")') and len(code.split("\n")) <= 3
    table = exercises.progress(f"ch{number}")  # what the cell shows: this chapter's checked exercises
    assert table.chapter == int(number) and len(table.rows) >= 2
