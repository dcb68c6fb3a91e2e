"""Make each chapter's ``.ipynb`` download in the built HTML the executed notebook, with its outputs.

    python tools/executed_notebooks.py _build          # the build folder that holds html/ and .jupyter_cache/

Sphinx copies each page's source into ``html/_sources/``, and the page's download button links there, so
a reader would get the notebook as it is stored in the repository: without outputs and figures. After
the HTML build, this script replaces every notebook in ``html/_sources/`` with the same notebook merged
with its outputs from the book's execution cache (jupyter-cache, which Jupyter Book fills when it runs
the notebooks), so it runs nothing. The download is then tidied for Jupyter:

- the outputs that only carry ``glue`` values to the book's prose are dropped (Jupyter cannot show them);
- a widget output keeps its static image but loses its live view (which needs the kernel that drew it),
  and the notebook stores no widget state; running the cell brings the live widget back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
GLUE_PREFIX = "application/papermill.record/"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (in place) without glue outputs, live widget views that have an image, or widget state."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if data and all(key.startswith(GLUE_PREFIX) for key in data):
                continue
            if WIDGET_VIEW in data and "image/png" in data:
                del data[WIDGET_VIEW]
            kept.append(out)
        cell.outputs = kept
    return nb


def executed(source: Path, cache) -> nbformat.NotebookNode:
    """The notebook at ``source`` with the outputs of its run in the execution ``cache``."""
    nb = nbformat.read(source, as_version=4)
    try:
        _, merged = cache.merge_match_into_notebook(nb)
    except KeyError:
        raise SystemExit(f"executed_notebooks: {source.relative_to(ROOT)} has no run in the execution "
                         "cache: build the HTML book first (its code changed since the last build?)") from None
    return tidy(merged)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the build folder (with html/ and .jupyter_cache/)")
    args = parser.parse_args()
    from jupyter_cache import get_cache

    sources = args.build / "html" / "_sources"
    cache_path = args.build / ".jupyter_cache"
    if not cache_path.is_dir():
        raise SystemExit(f"executed_notebooks: no execution cache at {cache_path}: build the book first")
    cache = get_cache(cache_path)
    downloads = []
    for download in sorted(sources.rglob("*.ipynb")):
        source = ROOT / download.relative_to(sources)
        if not source.is_file():  # left over from an earlier build of a page the book no longer has
            download.unlink()
            continue
        nbformat.write(executed(source, cache), download)
        downloads.append(download)
    print(f"executed_notebooks: {len(downloads)} notebook downloads in {sources} now hold their outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
