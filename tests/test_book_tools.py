"""tools/executed_notebooks.py: the notebook behind a chapter's download button is the executed one,
merged from the book's execution cache, and tidied for Jupyter."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import executed_notebooks as en  # noqa: E402  (tools/ is a folder of scripts, not a package)

GLUE = {"application/papermill.record/text/plain": "0.25"}
PNG = "iVBORw0KGgo="


def _notebook(with_outputs: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell("# A chapter"),
             nbformat.v4.new_code_cell("x = glue('ch_x', 0.25)"),
             nbformat.v4.new_code_cell("plot()"),
             nbformat.v4.new_code_cell("explorer")]
    if with_outputs:
        cells[1].outputs = [nbformat.v4.new_output("display_data", data=GLUE,
                                                   metadata={"scrapbook": {"name": "ch_x"}}),
                            nbformat.v4.new_output("stream", name="stdout", text="x = 0.25\n")]
        cells[2].outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
        cells[3].outputs = [nbformat.v4.new_output("execute_result", execution_count=3, data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "image/png": PNG, "text/plain": "<LatentExplorer>"})]
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells = cells
    return nb


def test_tidy_keeps_what_jupyter_can_show_and_drops_the_rest():
    nb = en.tidy(_notebook(with_outputs=True))
    assert "widgets" not in nb.metadata
    glue_cell, plot_cell, widget_cell = nb.cells[1:]
    assert [o.output_type for o in glue_cell.outputs] == ["stream"]  # the glue record is gone, the print stays
    assert plot_cell.outputs[0].data["image/png"] == PNG
    assert set(widget_cell.outputs[0].data) == {"image/png", "text/plain"}  # static image, no dead view


def test_a_widget_without_an_image_keeps_its_view():
    nb = _notebook(with_outputs=True)
    del nb.cells[3].outputs[0].data["image/png"]
    assert "application/vnd.jupyter.widget-view+json" in en.tidy(nb).cells[3].outputs[0].data


def test_executed_merges_the_cached_run_into_the_source(tmp_path):
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    source = tmp_path / "chapter.ipynb"
    nbformat.write(_notebook(with_outputs=False), source)
    cache = get_cache(tmp_path / "cache")
    cache.cache_notebook_bundle(CacheBundleIn(_notebook(with_outputs=True), str(source)), check_validity=False)
    nb = en.executed(source, cache)
    assert [len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"] == [1, 1, 1]
    assert nb.cells[2].outputs[0].data["image/png"] == PNG


def test_a_notebook_the_cache_never_ran_is_an_error(tmp_path, monkeypatch):
    from jupyter_cache import get_cache

    monkeypatch.setattr(en, "ROOT", tmp_path)
    source = tmp_path / "chapter.ipynb"
    nbformat.write(_notebook(with_outputs=False), source)
    with pytest.raises(SystemExit, match="no run in the execution cache"):
        en.executed(source, get_cache(tmp_path / "cache"))
