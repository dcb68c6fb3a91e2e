"""The tables of the book's "Using this book in a course" page (chapters/course.md), a Sphinx extension.

The page is plain Markdown; its tables are MyST substitutions, ``{{ course_... }}``, that this extension
fills when the book is built:

- ``course_sessions``: the plan of sessions. Each session's chapter, learning goals and suggested teaching
  time come from :data:`SESSIONS`; its running time in quick and reader mode is the chapter's measured time,
  read from ``benchmarks/results`` by ``benchmarks/running_numbers.py``, the same numbers that the Running
  page shows. Nothing measured is typed.
- ``course_exercises``: every exercise of every chapter, read from the chapter notebooks: its number and
  title from the Exercises list and the coding exercises' task cells, and whether it is checked
  automatically from the ``vaelib.exercises.check`` cell under it. What each exercise practises, and what
  kind of work it is, come from :data:`EXERCISES`; an exercise that the chapters have and :data:`EXERCISES`
  lacks (or the other way round) stops the build.

``_config.yml`` loads it: ``sphinx.local_extensions`` puts ``tools/`` on the path, and
``sphinx.config.extensions`` names ``course_guide``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:  # running_numbers: the Running page's numbers, read once
    sys.path.insert(0, str(ROOT / "benchmarks"))
import running_numbers  # noqa: E402

CHECK_CALL = re.compile(r"""vaelib\.exercises\.check\(\s*["']([a-z0-9_]+)["']""")
LIST_ITEM = re.compile(r"^(\d+)\.\s+\*\*(.+?)\*\*", re.M)     # 1. **Title.** ... in the Exercises list
TASK = re.compile(r"\A\*\*(\d+)\.\s+(.+?)\*\*")                 # **4. Title.** ... a coding exercise's task


class CourseError(Exception):
    """The course page and the chapters no longer agree."""


# One session per chapter, in book order: the learning goals in short (the chapter opens with them in full),
# and a suggested teaching time in minutes: a plan for a lecture with time to run the chapter and start its
# exercises, not a measurement.
SESSIONS: list[dict] = [
    dict(chapter="01_autoencoder", minutes=90,
         goals="Encoder, code and decoder; the Bernoulli NLL in nats per image against simple baselines; "
               "training with `batches` and `fit`; reading a 2-D latent space; bottleneck size against "
               "reconstruction."),
    dict(chapter="02_why_not_generate", minutes=75,
         goals="Decode random codes and measure what goes wrong; find the gaps between codes with a "
               "nearest-neighbour test; why it is worse in 20-D; the two properties a generative latent "
               "space needs."),
    dict(chapter="03_vae_encoder", minutes=60,
         goals="The encoder's $\\mu$ and $\\log\\sigma^2$; drawing $z = \\mu + \\sigma \\odot \\epsilon$ and "
               "decoding it; each image's Gaussian as an ellipse; reconstruction alone shrinks $\\sigma$."),
    dict(chapter="04_narrow_variance", minutes=60,
         goals="Measure how far $\\sigma$ shrinks without the KL term and why; show that such a model is an "
               "autoencoder in disguise; the two jobs a fix must do."),
    dict(chapter="05_kl_fix", minutes=120,
         goals="The KL divergence, closed form and Monte Carlo; the negative ELBO; check what the KL term "
               "does on trained models; the $\\beta$ sweep, rate and distortion, posterior collapse and "
               "active units; amortized inference and the ELBO's gap."),
    dict(chapter="06_reparameterization", minutes=90,
         goals="Why sampling cuts the gradient and how `rsample` fixes it; the reparameterization trick "
               "against REINFORCE and its baseline, measured; a whole VAE training loop in plain PyTorch, "
               "checked against `fit`."),
    dict(chapter="07_putting_together", minutes=90,
         goals="Interpolation and the decoded manifold; VAE against autoencoder samples; the importance-"
               "weighted bound in nats and bits per dimension; a convolutional VAE; where to read next."),
]


@dataclass(frozen=True)
class Practice:
    kind: str       # "pen and paper", "experiment" or "code"
    practises: str


# What each exercise practises, by (chapter, exercise number), in the words of a teacher planning a session.
EXERCISES: dict[tuple[int, int], Practice] = {
    (1, 1): Practice("pen and paper", "Minimising one pixel's Bernoulli NLL; why grey-level images have an NLL "
                                      "floor above zero."),
    (1, 2): Practice("experiment", "Writing a training loop with `batches`; comparing two losses by the test NLL; "
                                   "why squared error tolerates confident mistakes."),
    (1, 3): Practice("experiment", "Predicting, then measuring, what a decoder makes of codes near and far from "
                                   "the training codes."),
    (1, 4): Practice("code", "The Bernoulli NLL from logits, per image in nats, stable for confident logits."),
    (1, 5): Practice("code", "Each image's binary entropy, the floor no model can beat; $0 \\log 0$."),
    (2, 1): Practice("experiment", "How the threshold of the gap test sets the share of gaps, and why it can "
                                   "only move one way."),
    (2, 2): Practice("experiment", "Fitting a Gaussian per class in 20-D and testing whether its samples still "
                                   "land in gaps."),
    (2, 3): Practice("experiment", "Seeing that the layout of an autoencoder's codes depends on the seed, so "
                                   "there is no fixed distribution of codes to sample from."),
    (2, 4): Practice("code", "Sampling from a Gaussian fitted to codes, dimension by dimension, with a seeded "
                             "generator."),
    (2, 5): Practice("code", "The nearest-neighbour gap test as one function."),
    (3, 1): Practice("pen and paper", "Keeping $\\sigma$ positive; why the encoder outputs $\\log \\sigma^2$."),
    (3, 2): Practice("experiment", "Decoding several draws from one image's cloud, with the encoder's own $\\sigma$ and "
                                   "with $\\sigma = 1$."),
    (3, 3): Practice("pen and paper", "Why fixing $\\sigma = 1$ would not force the noise to matter: the encoder "
                                      "can move its means instead."),
    (3, 4): Practice("code", "Splitting the encoder's output into $\\mu$ and $\\sigma$, from $\\log \\sigma^2$."),
    (3, 5): Practice("code", "Drawing $z = \\mu + \\sigma \\odot \\epsilon$ so that gradients reach $\\mu$ and "
                             "$\\log \\sigma^2$."),
    (4, 1): Practice("experiment", "The clamp on $\\log \\sigma^2$: the smallest $\\sigma$ the encoder can output, "
                                   "and how close the model without the KL term comes to it."),
    (4, 2): Practice("experiment", "Comparing $\\sigma$ with the spread of the centres $\\mu$, dimension by "
                                   "dimension."),
    (4, 3): Practice("experiment", "Scaling the codes to see why fixing $\\sigma = 1$ could not prevent the "
                                   "failure."),
    (4, 4): Practice("experiment", "Adam against plain SGD on a loss with a constant gradient: why Adam's steps "
                                   "do not shrink with the gradient."),
    (4, 5): Practice("code", "Each image's mean $\\sigma$ from its log-variances."),
    (4, 6): Practice("code", "The ratio of noise to spread, per latent dimension."),
    (5, 1): Practice("pen and paper", "The closed-form KL of a diagonal Gaussian, checked with `gaussian_kl` and "
                                      "a Monte Carlo estimate."),
    (5, 2): Practice("experiment", "Monte Carlo KL in both directions, and why the KL divergence is not "
                                   "symmetric."),
    (5, 3): Practice("experiment", "Reading the $\\beta$ trade-off in the samples of the sweep's models."),
    (5, 4): Practice("experiment", "Seeing posterior collapse: at $\\beta = 100$ the code says little about the "
                                   "image."),
    (5, 5): Practice("code", "The closed-form KL to $\\mathcal{N}(0, I)$ of each image's cloud."),
    (5, 6): Practice("code", "The $\\beta$-weighted loss of each image (the negative ELBO at $\\beta = 1$)."),
    (6, 1): Practice("experiment", "How the variance of the reparameterized gradient falls with the number of "
                                   "samples."),
    (6, 2): Practice("experiment", "A constant baseline for REINFORCE: its variance, and why it keeps the "
                                   "estimator unbiased."),
    (6, 3): Practice("code", "Changing the from-scratch training loop: a $\\beta$-VAE and dynamically binarized "
                             "images."),
    (6, 4): Practice("pen and paper", "Why a baseline must not depend on the sample it is subtracted from."),
    (6, 5): Practice("code", "The REINFORCE estimate by hand, without autograd."),
    (6, 6): Practice("code", "The reparameterization gradient, with autograd."),
    (7, 1): Practice("experiment", "Interpolating without a prior: the autoencoder's walk against the VAE's."),
    (7, 2): Practice("experiment", "The importance-weighted bound as the number of samples grows."),
    (7, 3): Practice("experiment", "Training the convolutional VAE for the book's epochs, a longer run, and "
                                   "comparing test ELBOs."),
    (7, 4): Practice("code", "From nats per image to bits per dimension."),
    (7, 5): Practice("code", "The importance-weighted bound with `logsumexp`, without underflow."),
}


@dataclass(frozen=True)
class Exercise:
    chapter: int
    number: int
    title: str
    checked: str | None  # the name vaelib.exercises checks it under, or None


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text(encoding="utf-8"))["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _title(raw: str) -> str:
    return " ".join(raw.split()).rstrip(".")


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


def chapter_exercises(notebook: Path) -> list[Exercise]:
    """A chapter's exercises, in order: the numbered list under its Exercises heading, then the coding
    exercises, each a task cell (``**4. Title.** ...``) two cells above its ``vaelib.exercises.check`` cell."""
    chapter, cells = int(notebook.name[:2]), _cells(notebook)
    found: list[Exercise] = []
    for cell in cells:
        text = _text(cell)
        if cell["cell_type"] == "markdown" and "## Exercises" in text:
            found += [Exercise(chapter, int(n), _title(t), None)
                      for n, t in LIST_ITEM.findall(text.split("## Exercises", 1)[1])]
    for index, cell in enumerate(cells):
        m = CHECK_CALL.search(_text(cell)) if cell["cell_type"] == "code" else None
        if not m:
            continue
        task = TASK.match(_text(cells[index - 2]))
        if not task:
            raise CourseError(f"{notebook.name}: the cell two above check({m[1]!r}) is not a task "
                              "'**N. Title.** ...'")
        found.append(Exercise(chapter, int(task[1]), _title(task[2]), m[1]))
    numbers = [e.number for e in found]
    if numbers != list(range(1, len(found) + 1)):
        raise CourseError(f"{notebook.name}: the exercises are numbered {numbers}, not 1 to {len(found)}")
    return found


def all_exercises(root: Path = ROOT) -> list[Exercise]:
    exercises = [e for nb in chapter_notebooks(root) for e in chapter_exercises(nb)]
    have, described = {(e.chapter, e.number) for e in exercises}, set(EXERCISES)
    if have != described:
        raise CourseError(f"course_guide: the chapters' exercises and EXERCISES in tools/course_guide.py differ: "
                          f"in the chapters only {sorted(have - described)}, "
                          f"in EXERCISES only {sorted(described - have)}")
    return exercises


def exercise_table(exercises: list[Exercise], root: Path = ROOT) -> str:
    stems = {int(nb.name[:2]): nb.stem for nb in chapter_notebooks(root)}
    lines = ["| chapter.exercise | what it practises | kind | checked automatically |",
             "| :--- | :--- | :--- | :--- |"]
    for e in exercises:
        p = EXERCISES[(e.chapter, e.number)]
        checked = f"yes, `{e.checked}`" if e.checked else "no"
        lines.append(f"| [{e.chapter}.{e.number}]({stems[e.chapter]}.ipynb) {e.title} | {p.practises} | {p.kind} | "
                     f"{checked} |")
    return "\n".join(lines)


def _seconds(rows: list[dict], stem: str, mode: str) -> float | None:
    row = next((r for r in rows if r["chapter"] == stem and r["mode"] == mode), None)
    return row["seconds"] if row else None


def session_table(rows: list[dict], titles: dict[str, str]) -> str:
    """The plan of sessions, with each chapter's measured running time in both modes."""
    missing = set(titles) - {s["chapter"] for s in SESSIONS}
    if missing or [s["chapter"] for s in SESSIONS] != sorted(s["chapter"] for s in SESSIONS):
        raise CourseError(f"course_guide: SESSIONS must list every chapter once, in book order (missing: "
                          f"{sorted(missing)})")
    lines = ["| session: chapter | learning goals | teaching | running: quick / reader mode |",
             "| :--- | :--- | ---: | ---: |"]
    for number, session in enumerate(SESSIONS, 1):
        stem = session["chapter"]
        times = [_seconds(rows, stem, mode) for mode in ("quick", "reader")]
        cells = [f"{t:.0f} s" if t is not None else "not measured" for t in times]
        lines.append(f"| {number}: [{titles[stem]}]({stem}.ipynb) | {session['goals']} | "
                     f"{session['minutes']} min | {cells[0]} / {cells[1]} |")
    totals = [sum(r["seconds"] for r in rows if r["mode"] == mode) for mode in ("quick", "reader")]
    lines.append(f"| **all chapters** | | {sum(s['minutes'] for s in SESSIONS) / 60:.1f} h | "
                 f"{totals[0] / 60:.1f} min / {totals[1] / 60:.1f} min |")
    return "\n".join(lines)


def substitutions(root: Path = ROOT) -> dict[str, str]:
    """Every ``{{ course_... }}`` of chapters/course.md, as the text it stands for."""
    rows = running_numbers.load()["chapters"]
    exercises = all_exercises(root)
    return {
        "course_sessions": session_table(rows, running_numbers.chapter_titles(root)),
        "course_exercises": exercise_table(exercises, root),
        "course_n_exercises": f"{len(exercises)}",
        "course_n_checked": f"{sum(e.checked is not None for e in exercises)}",
        "course_n_sessions": f"{len(SESSIONS)}",
    }


def _fill(app, config) -> None:
    from sphinx.errors import ExtensionError

    try:
        values = substitutions()
    except (CourseError, running_numbers.ClaimError) as e:
        raise ExtensionError(str(e)) from None
    config.myst_substitutions = {**(config.myst_substitutions or {}), **values}


def setup(app):
    app.connect("config-inited", _fill)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
