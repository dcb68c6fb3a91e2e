"""The chapter notebooks as committed: no stored widget state, and every widget output has a static image.

Widget state saved into a notebook (``metadata.widgets``) is a large JSON blob that only a live Jupyter
front end can use; in the HTML book a widget is shown by its ``image/png`` fallback instead (see
``nb_mime_priority_overrides`` in ``_config.yml``). These checks need no browser, so ``make unit`` runs
them (they are not marked ``browser``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from book_site import SOURCE

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOTEBOOKS = sorted(p for p in (SOURCE / "chapters").glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.skipif(not NOTEBOOKS, reason="no chapter notebook yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_widget_state_is_stored(path):
    nb = _load(path)
    widgets = nb.get("metadata", {}).get("widgets")
    assert not widgets, (
        f"{path.name} stores widget state in metadata.widgets: delete that key (and in JupyterLab turn off "
        "Settings > Save Widget State Automatically)")
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            assert WIDGET_STATE not in out.get("data", {}), f"{path.name} cell {i}: an output holds widget state"


@pytest.mark.skipif(not NOTEBOOKS, reason="no chapter notebook yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_widget_outputs_carry_a_static_image(path):
    """A committed widget output (if outputs are committed at all) has its image/png, in a tagged cell."""
    problems = []
    for i, cell in enumerate(_load(path).get("cells", [])):
        tags = cell.get("metadata", {}).get("tags", [])
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            if "image/png" not in data:
                problems.append(f"cell {i}: a widget output without an image/png fallback")
            elif "widget-fallback" not in tags:
                problems.append(f"cell {i}: a widget output in a cell not tagged widget-fallback")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
