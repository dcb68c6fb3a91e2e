"""The chapters as notebooks that any Jupyter renders: plain Markdown, the book's numbers, a pinned install.

The chapters are written in MyST, which the HTML book and Jupyter Lab with jupyterlab-myst render, but
Colab, classic Jupyter and most notebook viewers show as raw markup. ``reader(nb, ...)`` turns an executed
chapter (``tools/executed_notebooks.py`` makes it, with the run's numbers in ``user_expressions``) into the
notebook those readers get, cell for cell, code untouched:

- each inline expression ``{eval}`f"{glued.NAME:.1f}"``` becomes the number of the book's run, and a note
  at the top says that the text's numbers are the book's;
- admonitions become quotes, and dropdowns (the solutions) ``<details>`` blocks;
- ``(label)=`` targets become HTML anchors, and links to other pages of the book, to labels and to the
  bibliography become links to the published book;
- the Colab install cell installs ``vaelib`` from the commit the notebook was built from, not ``main``.

The student edition (``VAELIB_STUDENT=1``) leaves the solutions out: ``without_solutions(nb)`` drops each
solution (a Markdown cell that is a ``Solution`` dropdown) and the hidden cells after the Exercises heading,
which compute and check the numbers of the solutions and would show their code; the exercises, their stubs
and their checks stay.

Anything left that looks like MyST is an error (``leftover_myst``). A maintained Sphinx builder,
sphinx-tojupyter 0.6, was measured first: it writes the chapters' code cells as Markdown code blocks and
drops the hidden cells (the Colab install cell and the claim checks), so the book does not use it.
"""

from __future__ import annotations

import ast
import re

import nbformat

INLINE = re.compile(r"\{eval\}`([^`]+)`")
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<title>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
LABEL = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$", re.M)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
ADMONITIONS = {"note": "Note", "tip": "Tip", "important": "Important", "warning": "Warning"}
COLAB_INSTALL = re.compile(r"(git\+https://[^\s\"'@]+)@[\w./-]+")

EXERCISES_HEADING = re.compile(r"^## Exercises\s*$", re.M)
HIDDEN_TAG = "remove-cell"

BOOKS_NUMBERS = ("> **The numbers in this text are the book's**, from the run that built it, whose outputs "
                 "this notebook shows. Run the notebook and the outputs become yours; on another machine or "
                 "dataset they can differ a little from the numbers in the text.")


def _value(results: list[dict], expression: str) -> str:
    for entry in results:
        if entry.get("expression") == expression and entry.get("result", {}).get("status") == "ok":
            text = entry["result"]["data"]["text/plain"]
            try:
                return str(ast.literal_eval(text))
            except (ValueError, SyntaxError):
                return text
    raise ValueError(f"the inline expression {expression!r} has no result from the book's run")


def fill_numbers(text: str, results: list[dict]) -> str:
    """``text`` with each ``{eval}`...``` replaced by its result among jupyterlab-myst's ``results``."""
    return INLINE.sub(lambda m: _value(results, m.group(1)), text)


def _admonition(name: str, title: str, options: dict, body: list[str]) -> list[str]:
    title = title.strip() or ADMONITIONS.get(name, name.capitalize())
    if "dropdown" in options.get("class", "").split():
        return [f"<details><summary><b>{title}</b></summary>", "", *body, "", "</details>"]
    return [f"> **{title}**", ">", *[f"> {line}".rstrip() for line in body]]


def directives_to_markdown(text: str) -> str:
    """Admonition and note directives (``` or ::: fences) as quotes, dropdowns as ``<details>``."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        fence, name = m["fence"], m["name"]
        i += 1
        options = {}
        while i < len(lines) and OPTION.match(lines[i]):
            o = OPTION.match(lines[i])
            options[o["key"]] = o["value"]
            i += 1
        body = []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"the {name} directive that opens with {fence} is never closed")
        i += 1  # the closing fence
        if name != "admonition" and name not in ADMONITIONS:
            raise ValueError(f"no plain-Markdown form for the {name!r} directive")
        out.extend(_admonition(name, m["title"], options, directives_to_markdown("\n".join(body)).split("\n")))
    return "\n".join(out)


def links_to_book(text: str, site: str, labels: dict[str, str]) -> str:
    """Links to the book's pages and labels as links to the published book at ``site`` (ending in /)."""

    def target(m: re.Match) -> str:
        url = m["target"]
        if re.match(r"[a-z]+:", url):
            return m.group(0)
        page, _, anchor = url.partition("#")
        if not page:
            if anchor not in labels:
                raise ValueError(f"the link to #{anchor} names no label of the book")
            return f"]({site}{labels[anchor]})"
        page = re.sub(r"\.(ipynb|md)$", ".html", page)
        return f"]({site}chapters/{page}{'#' + anchor if anchor else ''})"

    text = LINK.sub(target, text)
    return LABEL.sub(lambda m: f'<a id="{m["label"]}"></a>', text)


def leftover_myst(text: str) -> list[str]:
    """Whatever in ``text`` still looks like MyST: roles, directive fences, targets."""
    return (re.findall(r"\{[\w:-]+\}`[^`]*`", text) + re.findall(r"^(?:`{3,}|:{3,})\{[\w-]+\}.*$", text, re.M)
            + re.findall(r"^\([\w-]+\)=[ \t]*$", text, re.M))


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_solution(cell: dict) -> bool:
    """True for a Markdown cell that is an exercise's solution: a collapsed ``Solution`` admonition."""
    if cell.get("cell_type") != "markdown":
        return False
    lines = _text(cell).lstrip("\n").split("\n")
    m = FENCE.match(lines[0])
    return bool(m and m["name"] == "admonition" and m["title"].strip() == "Solution"
                and any(OPTION.fullmatch(line) and "dropdown" in line for line in lines[1:4]))


def behind_solutions(cells: list[dict]) -> list[int]:
    """The hidden code cells after the Exercises heading: they compute and check the solutions' numbers."""
    start = next((i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"
                  and EXERCISES_HEADING.search(_text(c))), len(cells))
    return [i for i, c in enumerate(cells) if i > start and c.get("cell_type") == "code"
            and HIDDEN_TAG in c.get("metadata", {}).get("tags", [])]


def without_solutions(nb: dict) -> dict:
    """``nb`` (in place) without its solutions and the hidden cells behind them, for the student edition."""
    drop = set(behind_solutions(nb["cells"])) | {i for i, c in enumerate(nb["cells"]) if is_solution(c)}
    nb["cells"] = [c for i, c in enumerate(nb["cells"]) if i not in drop]
    return nb


def reader(nb: nbformat.NotebookNode, *, site: str, labels: dict[str, str], commit: str | None,
           name: str = "notebook") -> nbformat.NotebookNode:
    """``nb`` (in place) as the plain-Markdown reader notebook described in this module's docstring."""
    quoted = False
    for index, cell in enumerate(nb.cells):
        try:
            if cell.cell_type == "markdown":
                quoted = quoted or bool(INLINE.search(cell.source))
                text = fill_numbers(cell.source, cell.metadata.pop("user_expressions", []))
                text = links_to_book(directives_to_markdown(text), site, labels)
                left = leftover_myst(text)
                if left:
                    raise ValueError(f"MyST left in the reader notebook: {left}")
                cell.source = text
            elif cell.cell_type == "code" and commit and "google.colab" in cell.source:
                cell.source = COLAB_INSTALL.sub(lambda m: f"{m.group(1)}@{commit}", cell.source)
        except ValueError as exc:
            raise ValueError(f"{name}, cell {index}: {exc}") from None
    if quoted:  # under the title: the text's numbers are the book's
        note = nbformat.v4.new_markdown_cell(BOOKS_NUMBERS)
        note["id"] = "books-numbers"
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")
        nb.cells.insert(first + 1, note)
    return nb
