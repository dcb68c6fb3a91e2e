"""Measured values handed from a chapter's code to its text: :func:`glue` keeps each one in :data:`glued`,
which a Markdown cell quotes as ``{eval}`f"{glued.ch5_kl:.1f}"```, and records it in the notebook's outputs
for the book build. The chapters call them as ``vaelib.book.glue`` and ``vaelib.book.glued``."""

from __future__ import annotations


class Glued:
    """The values a chapter hands to its text, by name. A Markdown cell quotes one with an inline
    expression, ``{eval}`f"{glued.ch5_kl:.1f}"```, which Jupyter Lab (with jupyterlab-myst) evaluates in the
    reader's own kernel, and which the book build fills in from the same run (``tools/book_prose.py``)."""

    def __init__(self) -> None:
        self.__dict__["_values"] = {}

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"this run has not computed {name!r} yet: run the cells above this text "
                                 "first (Run All runs them in order)") from None

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError("glued is read-only: hand a value to the text with vaelib.book.glue(name, value)")

    def __dir__(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"<the {len(self._values)} values this run handed to the text>"


#: The values handed to the text so far in this kernel: ``glued.ch5_kl``.
glued = Glued()


def glue(name: str, value, display: bool = False):
    """Hand a measured ``value`` to the book's prose under ``name``: a Markdown cell shows it with
    ``{eval}`f"{glued.name:.1f}"```. The value is kept in :data:`glued` for the reader's own kernel, and,
    during a book build, recorded in the notebook's outputs (MyST-NB's ``glue``) for the HTML. Returns
    ``value``; a NumPy or PyTorch scalar comes back as a plain Python number, so a format such as ``:.1f``
    always applies."""
    if not name.isidentifier():
        raise ValueError(f"glue: {name!r} is not a valid name; use letters, digits and underscores")
    if getattr(value, "shape", None) == ():  # numpy or torch scalar
        value = value.item()
    glued._values[name] = value
    _record(name, value, display)
    return value


# How MyST-NB finds a glued value in a notebook's outputs: a display whose MIME types carry this prefix (none
# when the value is also shown) and whose metadata names it. Written here rather than through myst_nb.glue,
# whose first call imports nbformat and its schema checks, most of a second in every chapter.
GLUE_PREFIX = "application/papermill.record/"


def _record(name: str, value, display: bool) -> None:
    """Record ``value`` in the running kernel's outputs as MyST-NB's ``glue`` does; nothing outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display as ipy_display
    except ImportError:
        return
    if get_ipython() is None:
        return
    mimebundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    ipy_display({prefix + k: v for k, v in mimebundle.items()}, raw=True, metadata=metadata)
