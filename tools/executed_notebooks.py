"""Make each chapter's ``.ipynb`` download in the built HTML the executed reader notebook, with its outputs.

    python tools/executed_notebooks.py _build          # the build folder that holds html/ and .jupyter_cache/

Sphinx copies each page's source into ``html/_sources/``, and the page's download button links there, so
a reader would get the notebook as it is stored in the repository: without outputs and figures. After
the HTML build, this script replaces every notebook in ``html/_sources/`` with the same notebook merged
with its outputs from the book's execution cache (jupyter-cache, which Jupyter Book fills when it runs
the notebooks), so it runs nothing. The download is then tidied for Jupyter:

- the numbers of the prose are looked up: each Markdown cell's inline expressions,
  ``{eval}`f"{glued.NAME:.1f}"```, get their results from the run's glue records, stored where
  jupyterlab-myst keeps the results it evaluates (``metadata.user_expressions``), from which the reader
  notebook below writes them into the text;
- the outputs that only carry ``glue`` values to the book's prose are then dropped (Jupyter cannot show them);
- a widget output keeps its static image but loses its live view (which needs the kernel that drew it),
  and the notebook stores no widget state; running the cell brings the live widget back;
- its MyST becomes plain Markdown (``tools/reader_notebooks.py``), so Colab, classic Jupyter and any viewer
  render it: the numbers are the book's, the links point at the published book, and the Colab install
  cell installs vaelib from the commit the book was built from.

In the student edition (``VAELIB_STUDENT=1``, ``make book-student``) the reader notebooks leave out the
solutions and the hidden cells behind them (``reader_notebooks.without_solutions``).

The same notebooks, in ``<build>/reader/chapters/``, are what the publishing workflow puts on the
repository's ``notebooks`` branch, which the Colab buttons open.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat
from book_prose import CAPTION_TAG, captions_into_figures, parse
from myst_nb.core.variables import format_plain_text
from myst_nb.ext.glue import GLUE_PREFIX
from book_version import build_commit
from reader_notebooks import INLINE, reader, without_solutions

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def glued_values(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The text form of every value the run glued, by name (the last one where a name is glued twice)."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            plain = out.get("data", {}).get(GLUE_PREFIX + "text/plain")
            if name and plain is not None:
                values[name] = plain
    return values


def fill_prose(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (in place) with each Markdown cell's inline expressions evaluated from the glue records, as
    jupyterlab-myst stores them; an expression whose value the run never glued is an error."""
    values = glued_values(nb)
    for index, cell in enumerate(nb.cells):
        expressions = INLINE.findall(cell.source) if cell.cell_type == "markdown" else []
        if not expressions:
            continue
        results = []
        for expression in expressions:
            name, fmt = parse(expression)
            if name not in values:
                raise SystemExit(f"executed_notebooks: cell {index} quotes glued.{name}, which the run never glued")
            text = format_plain_text(values[name], fmt)
            results.append({"expression": expression, "result": {
                "status": "ok", "data": {"text/plain": repr(text)}, "metadata": {}}})
        cell.metadata["user_expressions"] = results
    return nb


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
    captions_into_figures(nb)  # as the book read it, so that it matches the run the book cached
    try:
        _, merged = cache.merge_match_into_notebook(nb)
    except KeyError:
        raise SystemExit(f"executed_notebooks: {source.relative_to(ROOT)} has no run in the execution "
                         "cache: build the HTML book first (its code changed since the last build?)") from None
    for cell in merged.cells:  # the caption cells stay visible in Jupyter, under their figures
        if CAPTION_TAG in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "remove-cell"]
    return tidy(fill_prose(merged))


def site_url() -> str:
    """The published book's address, derived from the repository of ``_config.yml`` (GitHub Pages)."""
    import yaml

    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)/?", url)
    if not m:
        raise SystemExit(f"executed_notebooks: the repository {url!r} is not a GitHub address")
    return f"https://{m.group(1)}.github.io/{m.group(2)}/"


def book_labels(html: Path) -> dict[str, str]:
    """Every label of the built book (``(label)=`` targets, headings), as ``page.html#anchor``."""
    from sphinx.util.inventory import InventoryFile

    with open(html / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    return {name: entry[2] for name, entry in inventory.get("std:label", {}).items()}


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
    site, labels = site_url(), book_labels(args.build / "html")
    sha = (build_commit() or (None,))[0]  # the Colab install cell installs vaelib from this commit
    from vaelib.book import student_edition

    student = student_edition()
    readers = args.build / "reader"
    shutil.rmtree(readers, ignore_errors=True)
    downloads = []
    for download in sorted(sources.rglob("*.ipynb")):
        source = ROOT / download.relative_to(sources)
        if not source.is_file():  # left over from an earlier build of a page the book no longer has
            download.unlink()
            continue
        try:
            nb = executed(source, cache)
            if student:
                without_solutions(nb)
            nb = reader(nb, site=site, labels=labels, commit=sha, name=source.name)
        except ValueError as exc:
            raise SystemExit(f"executed_notebooks: {exc}") from None
        nbformat.write(nb, download)
        (readers / download.relative_to(sources)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(download, readers / download.relative_to(sources))
        downloads.append(download)
    (readers / "README.md").write_text(
        "# The book's chapters as reader notebooks\n\n"
        f"Generated from commit {sha or '(unknown)'} of the book's repository by its publishing workflow, "
        "which replaces this branch whole: edit the chapters on the main branch instead. Each notebook is a "
        "chapter, executed, with its text in plain Markdown and the numbers of the book's run; its first cell "
        "installs vaelib from that commit when it runs on Colab. "
        + ("This is the student edition: the exercises and their checks, without the solutions. " if student else "")
        + "The book: " + site + "\n", encoding="utf-8")
    print(f"executed_notebooks: {len(downloads)} notebook downloads in {sources} (and {readers}) now hold "
          f"their outputs, as plain-Markdown reader notebooks" + (", without solutions" if student else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
