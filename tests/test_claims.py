"""The claims ledger (``claims/*.yml``): every claim the chapters' prose makes, and the hidden assertion
that checks it. The prose is the Markdown, captions included, and the figures' alt texts. A ledger entry
whose phrases are gone from the text, or that no assertion cell marks, fails; so does an assertion marker
that the ledger does not list. One claim has one entry: an entry lists every phrase that states it (the
text, a caption, an alt text, the summary), and no two entries check it with the same assertion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
MARKER = re.compile(r"^\s*# claim: ([a-z0-9-]+)\s*$", re.M)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def _alt_texts(cells: list[dict]) -> list[str]:
    return [c["metadata"]["mystnb"]["image"]["alt"] for c in cells
            if c["metadata"].get("mystnb", {}).get("image", {}).get("alt")]


def _captions(cells: list[dict]) -> list[str]:
    return ["".join(c["source"]) for c in cells if "figure-caption" in c["metadata"].get("tags", [])]


def _phrases(entry: dict) -> list[str]:
    says = entry["says"]
    return [says] if isinstance(says, str) else list(says)


def _ledger(notebook: Path) -> list[dict]:
    path = ROOT / "claims" / f"{notebook.stem}.yml"
    assert path.exists(), f"{notebook.name} has no claims ledger at claims/{path.name}"
    entries = yaml.safe_load(path.read_text()) or []
    assert isinstance(entries, list), path
    return entries


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_ledger_claim_is_in_the_text_and_checked_by_a_hidden_assertion(notebook):
    cells = _cells(notebook)
    prose = _squash(" ".join(["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
                             + _alt_texts(cells)))
    checks: dict[str, str] = {}
    for c in cells:
        source = "".join(c["source"])
        for claim_id in MARKER.findall(source):
            assert c["cell_type"] == "code" and "remove-cell" in c["metadata"].get("tags", []), \
                f"{notebook.name}: the marker of {claim_id!r} is not in a hidden code cell"
            checks[claim_id] = source
    entries = _ledger(notebook)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), f"{notebook.name}: duplicate claim ids"
    for entry in entries:
        assert set(entry) >= {"id", "says"}, entry
        for phrase in _phrases(entry):
            assert _squash(phrase) in prose, \
                f"{notebook.name}: ledger claim {entry['id']!r} quotes text that is not in the chapter: {phrase!r}"
        assert entry["id"] in checks, f"{notebook.name}: ledger claim {entry['id']!r} has no '# claim:' marker"
        after = checks[entry["id"]].split(f"# claim: {entry['id']}", 1)[1]
        assert re.search(r"^\s*assert ", after, re.M), \
            f"{notebook.name}: no assert follows the marker of {entry['id']!r}"
    assert set(checks) <= set(ids), f"{notebook.name}: markers missing from the ledger: {set(checks) - set(ids)}"


def test_the_ledger_is_not_empty():
    total = sum(len(_ledger(nb)) for nb in CHAPTERS)
    assert total >= 5 * len(CHAPTERS), total


def _assertions(source: str, claim_id: str) -> str:
    """The assertion lines that follow a claim's marker, up to the next marker, normalised."""
    after = source.split(f"# claim: {claim_id}", 1)[1]
    block = re.split(r"^\s*# claim: ", after, maxsplit=1, flags=re.M)[0]
    return "\n".join(_squash(line) for line in block.splitlines() if line.strip().startswith("assert "))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_no_claim_is_checked_twice(notebook):
    """A claim stated twice (the text and the summary, or the text and a caption) is one entry with two
    phrases, not two entries with one assertion."""
    cells = _cells(notebook)
    checks = {}
    for c in cells:
        source = "".join(c["source"])
        for claim_id in MARKER.findall(source):
            block = _assertions(source, claim_id)
            assert block not in checks, \
                f"{notebook.name}: {claim_id!r} asserts exactly what {checks[block]!r} asserts; merge the two entries"
            checks[block] = claim_id
    phrases = [_squash(p) for entry in _ledger(notebook) for p in _phrases(entry)]
    repeated = {p for p in phrases if phrases.count(p) > 1}
    assert not repeated, f"{notebook.name}: a phrase is quoted by two ledger entries: {repeated}"


# Words that say something about the data or a model, rather than what a figure draws: where a caption or
# an alt text uses one, a ledger phrase must quote it, so that an assertion checks it on every build.
CLAIM_WORDS = re.compile(
    r"\b(falls?|falling|rises?|rising|drops?|grows?|growing|shrinks?|shrunk|lower|higher|lowest|highest|"
    r"more|less|most|fewer|almost|nearly|close to|sharper|blurry|smoothly|gradually|steeply|flat|flattens|"
    r"flattening|level|narrower|narrowest|wider|widest|larger|smaller|ends|mix|mixes|moves?|stays?|"
    r"covers?|misses|about|tens|hundreds|thousands|most common|a little|similar|alike|few|several|longer|shorter|longest|shortest)\b", re.I)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_claim_in_a_caption_or_alt_text_is_in_the_ledger(notebook):
    cells = _cells(notebook)
    phrases = [_squash(p) for entry in _ledger(notebook) for p in _phrases(entry)]
    unchecked = []
    for text in _captions(cells) + _alt_texts(cells):
        text = _squash(text)
        covered = [(m.start(), m.start() + len(p)) for p in phrases for m in re.finditer(re.escape(p), text)]
        for word in CLAIM_WORDS.finditer(text):
            if not any(a <= word.start() and word.end() <= b for a, b in covered):
                unchecked.append(f"{word.group(0)!r} in: {text[max(0, word.start() - 60):word.end() + 40]}")
    assert not unchecked, f"{notebook.name}: claims in captions or alt texts that no ledger phrase quotes:\n" + \
        "\n".join(unchecked)


def test_the_claim_words_catch_a_claim():
    """The vocabulary above is what the coverage test relies on: a caption with an unchecked trend fails."""
    assert CLAIM_WORDS.search("the red line falls in every epoch")
    assert not CLAIM_WORDS.search("Line chart of the training loss against the epoch")
