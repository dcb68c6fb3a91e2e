"""The numbers in the chapters' prose, filled in from the run that built the page (a Sphinx extension).

A chapter quotes a measured value in its Markdown as an inline expression,

    the KL term costs {eval}`f"{glued.ch5_kl:.1f}"` nats

where a code cell computed it and handed it over with ``vaelib.book.glue("ch5_kl", value)``. Jupyter Lab
(with jupyterlab-myst) evaluates the expression in the reader's own kernel, so after Run All the text shows
the reader's numbers. The book is built with MyST-NB's cached execution, which has no kernel left when the
text is rendered, so this extension gives ``{eval}`` the meaning it has in Lab for the one form the book
uses: ``glued.NAME`` with an optional format, looked up among the values the notebook's run glued (MyST-NB's
glue records) and formatted exactly as Python's f-string would. (MyST-NB's own ``{eval}`` needs its inline
execution mode, which was measured and does not fit: it evaluates only bare variable names by default, and
it never runs the cells tagged ``remove-cell``, so every hidden claim check would silently be skipped.)

Anything else fails the build with the chapter, the cell and the name: an expression of another form, or a
name that the run never glued (a typo, or a value computed only in some configurations).

A figure's caption is the Markdown cell under it, tagged ``figure-caption`` and starting ``**Figure.**``, so
Jupyter Lab and Colab show it under the figure. For the book, this extension moves its text into the
figure cell's ``mystnb.figure.caption`` (which numbers it, "Fig. 6.2") and hides the cell, when the notebook
is read; a caption cell that does not follow a figure cell fails the build.

The student edition (``VAELIB_STUDENT=1``, ``make book-student``; or ``student_edition: true`` in the Sphinx
configuration) leaves the exercises' solutions out of the pages: when a notebook is read, each solution cell
(``reader_notebooks.is_solution``) is emptied and hidden. Its code cells are untouched, so the book's execution
cache still matches and the student edition runs no notebook again; the exercises and their checks stay. The
setting is part of Sphinx's environment, so switching it makes Sphinx read every page again.

Citations in the chapters are plain Markdown links, which every notebook viewer renders,
``[Kingma and Welling (2013)](references.md#kingma2013auto)``. The bibliography gives each entry its key as
its anchor (``bibtex_cite_id: "{key}"`` in ``_config.yml``), and this extension tells MyST that those
anchors exist, so the links resolve without a warning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from myst_nb.core.variables import RetrievalError, format_plain_text
from myst_nb.ext.glue.utils import retrieve_glue_data
from myst_nb.ext.utils import RoleBase
from reader_notebooks import HIDDEN_TAG, is_solution
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The one form of inline expression the book's prose uses.
EXPRESSION = re.compile(r'f"\{glued\.(?P<name>[A-Za-z_]\w*)(?::(?P<format>[^{}"]*))?\}"')


def parse(expression: str) -> tuple[str, str]:
    """``(name, format)`` of an inline expression ``f"{glued.NAME:FORMAT}"``; ValueError for any other form."""
    m = EXPRESSION.fullmatch(expression.strip())
    if not m:
        raise ValueError(f"the text quotes {expression!r}; the book's prose can only quote a glued value, "
                         'as {eval}`f"{glued.NAME:FORMAT}"`')
    return m["name"], m["format"] or ""


def where(source: str, line: int | None) -> str:
    """The chapter and Markdown cell of a line of a notebook page, for an error message. MyST-NB numbers the
    lines of a notebook's cell ``i`` from ``(i + 1) * 10000``."""
    path = Path(source)
    if path.suffix != ".ipynb" or not line or line < 10000:
        return f"{path.name}, line {line}"
    index = line // 10000 - 1
    try:
        cell_id = json.loads(path.read_text(encoding="utf-8"))["cells"][index].get("id", "?")
    except (OSError, ValueError, KeyError, IndexError):
        cell_id = "?"
    return f"{path.name}, markdown cell {index} (id {cell_id})"


class GluedValueRole(RoleBase):
    """``{eval}`f"{glued.NAME:FORMAT}"```: the value this page's run glued as NAME, formatted."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        try:
            name, fmt = parse(self.text)
            data = retrieve_glue_data(self.document, name)
            plain = data.data.get("text/plain")
            if plain is None:
                raise RetrievalError(f"the value glued as {name!r} has no text form")
            text = format_plain_text(plain, fmt)
        except ValueError as exc:
            return self._fail(str(exc))
        except RetrievalError:
            return self._fail(f"the text quotes glued.{name}, which this run never glued "
                              f"(no vaelib.book.glue({name!r}, ...) ran before it)")
        except Exception as exc:  # a format that does not fit the value, e.g. ':.1f' on a string
            return self._fail(f"glued.{name} cannot be formatted as {fmt!r}: {exc}")
        node = nodes.inline(text, text, classes=["pasted-text", "glued-value"])
        self.set_source_info(node)
        return [node], []

    def _fail(self, message: str) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        place = where(self.document["source"], self.line)
        logger.warning(f"{place}: {message}", location=(self.document.settings.env.docname, self.line),
                       type="book", subtype="prose")
        return [nodes.problematic(self.rawtext, self.rawtext)], []


CAPTION_TAG = "figure-caption"
CAPTION_PREFIX = "**Figure.**"


def captions_into_figures(nb: dict) -> dict:
    """``nb`` (in place) with each caption cell's text as the caption of the figure cell just above it, and
    the caption cell tagged ``remove-cell`` (it stays in place, so cell numbers in messages still hold)."""
    for index, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {})
        if cell["cell_type"] != "markdown" or CAPTION_TAG not in meta.get("tags", []):
            continue
        above = nb["cells"][index - 1] if index else {}
        figure = above.get("metadata", {}).get("mystnb", {}).get("figure") if above.get("cell_type") == "code" \
            else None
        if not isinstance(figure, dict):
            raise ValueError(f"cell {index} is a caption ({CAPTION_TAG!r}) but the cell above it is not a figure "
                             "(a code cell with mystnb.figure metadata)")
        text = "".join(cell["source"]).strip()
        if not text.startswith(CAPTION_PREFIX):
            raise ValueError(f"cell {index}: a caption cell starts with {CAPTION_PREFIX!r}")
        figure["caption"] = " ".join(text[len(CAPTION_PREFIX):].split())
        meta["tags"] = [*meta["tags"], "remove-cell"]
    return nb


def hide_solutions(nb: dict) -> dict:
    """``nb`` (in place) with every solution cell emptied and tagged ``remove-cell``. The cells stay, so cell
    numbers in messages still hold, and no code cell changes, so the execution cache still matches."""
    for cell in nb["cells"]:
        if is_solution(cell):
            cell["source"] = ""
            meta = cell.setdefault("metadata", {})
            meta["tags"] = [*meta.get("tags", []), HIDDEN_TAG]
    return nb


def read_captions(app, docname: str, source: list[str]) -> None:
    """Sphinx's ``source-read``: a notebook's caption cells become its figures' captions, and in the student
    edition its solutions are left out."""
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    try:
        nb = captions_into_figures(json.loads(source[0]))
        if app.config.student_edition:
            hide_solutions(nb)
        source[0] = json.dumps(nb, ensure_ascii=False)
    except ValueError as exc:
        logger.warning(f"{Path(app.env.doc2path(docname)).name}: {exc}", location=docname, type="book",
                       subtype="caption")


def register_citation_anchors(app, env) -> None:
    """Every bibliography entry's anchor (its key) as a MyST link target of the page that lists it."""
    if "cite" not in env.domains:  # no sphinxcontrib-bibtex, no bibliography
        return
    domain = env.get_domain("cite")
    for bib_key, bibliography in domain.bibliographies.items():
        slugs = env.metadata[bib_key.docname].setdefault("myst_slugs", {})
        for key in bibliography.citation_nodes:
            slugs.setdefault(key, (0, key, key))


def colab_opens_the_reader_notebooks(app, pagename, templatename, context, doctree) -> None:
    """The Colab button opens the page's reader notebook (plain Markdown, pinned install) on the branch
    ``reader_notebooks_branch``, which the publishing workflow fills, instead of the MyST source on the
    book's branch; Binder keeps the source, which its Jupyter Lab renders with jupyterlab-myst."""
    branch, reader = app.config.html_theme_options.get("repository_branch", "main"), app.config.reader_notebooks_branch
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if group.get("label") == "launch-buttons" else []:
            if button.get("text") == "Colab":
                button["url"] = button["url"].replace(f"/blob/{branch}/", f"/blob/{reader}/", 1)


def student_edition_from_environment(app, config) -> None:
    """``VAELIB_STUDENT=1`` (read by ``vaelib.book``) turns the student edition on."""
    from vaelib.book import student_edition

    config.student_edition = bool(config.student_edition) or student_edition()


def setup(app):
    app.add_config_value("reader_notebooks_branch", "notebooks", "html")
    app.add_config_value("student_edition", False, "env", types=[bool])
    app.connect("config-inited", student_edition_from_environment)
    app.connect("html-page-context", colab_opens_the_reader_notebooks, priority=600)
    app.setup_extension("myst_nb")
    app.add_role("eval", GluedValueRole(), override=True)
    app.connect("source-read", read_captions)
    app.connect("env-updated", register_citation_anchors)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
