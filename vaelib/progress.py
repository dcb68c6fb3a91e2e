"""The learner's progress: which checked exercises they have passed in this environment.

Each time :func:`vaelib.exercises.check` finds an answer correct, :func:`record_passed` notes the exercise
in ``progress.json`` in the book's cache folder (:func:`vaelib.book.cache_dir`, ``~/.cache/vaelib`` by
default), with the time it was first passed. :func:`progress` reads it back as a small table, for one
chapter or for the whole book; each chapter ends with a cell that shows it:

    vaelib.exercises.progress("ch03")

The record is a convenience, never a reason to stop: a missing, unreadable or corrupt file reads as "nothing
passed yet", and a file that cannot be written leaves the verdict of the check unchanged.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

FILE_NAME = "progress.json"


def progress_file(folder: str | Path | None = None) -> Path:
    """Where the progress is kept: ``progress.json`` in ``folder``, by default the book's cache folder."""
    if folder is None:
        from vaelib.book import cache_dir

        folder = cache_dir()
    return Path(folder) / FILE_NAME


def passed(folder: str | Path | None = None) -> dict[str, str]:
    """The exercises passed so far, by name, each with the time (UTC, ISO 8601) it was first passed.
    A missing or corrupt file gives ``{}``."""
    try:
        data = json.loads(progress_file(folder).read_text(encoding="utf-8"))
        entries = data["passed"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {name: when for name, when in entries.items() if isinstance(name, str) and isinstance(when, str)}


def record_passed(name: str, folder: str | Path | None = None) -> bool:
    """Note that exercise ``name`` was passed (the first time is kept). Returns False, and changes
    nothing, when the file cannot be written; a corrupt file is replaced."""
    done = passed(folder)
    if name in done:
        return True
    done[name] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    path = progress_file(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole and then renamed, so that an interrupted write never leaves half a file.
        fd, tmp = tempfile.mkstemp(prefix=".progress-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"passed": dict(sorted(done.items()))}, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def chapter_of(name: str) -> int:
    """The chapter an exercise belongs to, from its name: ``"ch3_reparameterize"`` -> 3."""
    m = re.match(r"ch(\d+)_", name)
    if not m:
        raise ValueError(f"{name!r} is not an exercise name of the form chN_...")
    return int(m[1])


def _chapter_number(chapter: int | str) -> int:
    """3, "3", "ch3", "ch03" and "03_vae_encoder" all name chapter 3."""
    m = re.fullmatch(r"(?:ch)?0*(\d+)(?:_\w*)?", str(chapter).strip().lower())
    if not m:
        raise ValueError(f"progress: {chapter!r} names no chapter; write its number, e.g. progress('ch03') "
                         "or progress(3), or progress() for the whole book")
    return int(m[1])


@dataclass(frozen=True)
class Progress:
    """The checked exercises of a chapter or of the book, and which of them were passed. Shown in a notebook
    as a table; ``str()`` gives the same table as plain text."""

    chapter: int | None
    rows: tuple[tuple[int, str, str, str | None], ...]  # (chapter, exercise, function, passed at or None)

    @property
    def n_passed(self) -> int:
        return sum(when is not None for *_, when in self.rows)

    def summary(self) -> str:
        where = f"chapter {self.chapter}" if self.chapter is not None else "the book"
        return (f"{self.n_passed} of the {len(self.rows)} checked exercises of {where} passed in this "
                f"environment")

    def _cells(self) -> list[list[str]]:
        return [[str(ch), name, f"{function}()", f"passed ({when[:10]})" if when else "not yet"]
                for ch, name, function, when in self.rows]

    def _repr_markdown_(self) -> str:
        lines = [f"**Your progress:** {self.summary()}.", "",
                 "| chapter | exercise | function | status |", "| ---: | :--- | :--- | :--- |"]
        lines += ["| " + " | ".join(f"`{c}`" if i in (1, 2) else c for i, c in enumerate(cells)) + " |"
                  for cells in self._cells()]
        return "\n".join(lines)

    def __str__(self) -> str:
        header = ["chapter", "exercise", "function", "status"]
        cells = self._cells()
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *cells]]
        return f"Your progress: {self.summary()}.\n" + "\n".join(lines)

    __repr__ = __str__


def report(exercises: Mapping[str, Any], chapter: int | str | None = None,
           folder: str | Path | None = None) -> Progress:
    """Which of ``exercises`` (by name, each with its ``function``) of ``chapter`` (``"ch03"``, ``3``; ``None`` for
    the whole book) the learner has passed in this environment, as a table. Passing an exercise again after
    restarting the kernel, or on another day, is remembered; another machine has its own record.
    :func:`vaelib.exercises.progress` gives it the book's exercises."""
    wanted = None if chapter is None else _chapter_number(chapter)
    done = passed(folder)
    rows = [(chapter_of(name), name, ex.function, done.get(name)) for name, ex in exercises.items()
            if wanted is None or chapter_of(name) == wanted]
    if wanted is not None and not rows:
        chapters = sorted({chapter_of(name) for name in exercises})
        raise ValueError(f"progress: chapter {wanted} has no checked exercises; the chapters that have them "
                         f"are {', '.join(map(str, chapters))}")
    rows.sort(key=lambda row: row[0])  # by chapter; within one, in the order vaelib.exercises lists them
    return Progress(wanted, tuple(rows))
