"""The claims ledger (``claims/*.yml``): every claim the chapters' prose makes, and the hidden assertion
that checks it. A ledger entry whose phrase is gone from the text, or that no assertion cell marks, fails;
so does an assertion marker that the ledger does not list."""

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


def _ledger(notebook: Path) -> list[dict]:
    path = ROOT / "claims" / f"{notebook.stem}.yml"
    assert path.exists(), f"{notebook.name} has no claims ledger at claims/{path.name}"
    entries = yaml.safe_load(path.read_text()) or []
    assert isinstance(entries, list), path
    return entries


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_ledger_claim_is_in_the_text_and_checked_by_a_hidden_assertion(notebook):
    cells = _cells(notebook)
    prose = _squash(" ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"))
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
        assert _squash(entry["says"]) in prose, \
            f"{notebook.name}: ledger claim {entry['id']!r} quotes text that is not in the chapter"
        assert entry["id"] in checks, f"{notebook.name}: ledger claim {entry['id']!r} has no '# claim:' marker"
        after = checks[entry["id"]].split(f"# claim: {entry['id']}", 1)[1]
        assert re.search(r"^\s*assert ", after, re.M), \
            f"{notebook.name}: no assert follows the marker of {entry['id']!r}"
    assert set(checks) <= set(ids), f"{notebook.name}: markers missing from the ledger: {set(checks) - set(ids)}"


def test_the_ledger_is_not_empty():
    total = sum(len(_ledger(nb)) for nb in CHAPTERS)
    assert total >= 5 * len(CHAPTERS), total
