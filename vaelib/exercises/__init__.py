"""Checkers for the coding exercises at the end of each chapter.

Each coding exercise gives a function to write, with a stub that says ``TODO``. Running
``vaelib.exercises.check("ch3_reparameterize", reparameterize)`` tests the function on inputs of the
checker's own (drawn with fixed seeds, so a verdict never changes from run to run), compares it with
a reference solution, and prints **one line**:

- ``correct: ...`` when the function agrees with the reference;
- ``not done yet: ...`` while the function still raises ``NotImplementedError`` or returns ``None``,
  as the unfilled stub does;
- ``not yet right: ...`` otherwise. When the answer matches a typical mistake (a mean instead of a
  sum, a variance instead of a standard deviation, a missing ``log K``), the line names it and says
  how to fix it; when it does not, it shows the first place where the answer differs.

``check`` never raises because of the learner's answer, even when the function itself raises: a
chapter runs from top to bottom with its stubs unfilled, which is how the book is built and tested.
It raises ``ValueError`` only for an exercise name it does not know. :func:`diagnose` returns the
verdict as a :class:`Verdict` instead of printing it, and :data:`EXERCISES` lists every exercise with
its reference solution. Each exercise that ``check`` finds correct is remembered in this environment, and
:func:`progress` shows which ones were passed (:mod:`vaelib.progress`).

A learner's function that draws random numbers without a generator gets a fixed seed for the call;
the learner's own random state is saved before and restored after (``torch.random.fork_rng``). It gets
copies of the checker's tensors, so an answer that changes its inputs in place cannot change the
verdict; it has ``checking.TIME_LIMIT_S`` seconds per call (in the main thread), and a ``sys.exit()``
in it is a wrong answer rather than the end of the notebook.

The shared checking code is in :mod:`vaelib.exercises.checking`, and each chapter's checkers and reference
solutions in a module of their own (:mod:`vaelib.exercises.ch1` to :mod:`vaelib.exercises.ch7`).
"""

from __future__ import annotations

from pathlib import Path

# Importing a chapter's module registers its checkers, so the chapters come in order: the order in which
# EXERCISES and progress() list them.
from vaelib.exercises import ch1, ch2, ch3, ch4, ch5, ch6, ch7  # noqa: F401
from vaelib.exercises.checking import EXERCISES, Exercise, Verdict, check, diagnose
from vaelib.progress import Progress, report


def progress(chapter: int | str | None = None, folder: str | Path | None = None) -> Progress:
    """Which checked exercises of ``chapter`` (``"ch03"``, ``3``; ``None`` for the whole book) the learner has
    passed in this environment, as a table (:func:`vaelib.progress.report`)."""
    return report(EXERCISES, chapter, folder)


__all__ = ["EXERCISES", "Exercise", "Verdict", "check", "diagnose", "progress"]
