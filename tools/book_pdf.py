"""The whole-book PDF, one click from every page (a Sphinx extension).

The theme's download menu has a ".pdf" entry that prints the current page only. Every page's header gets
its own button to the whole book, ``book.pdf`` at the root of the HTML build (``tools/print_pdf.py`` prints
it there), and the menu's entry says that it is the page alone.
"""

from __future__ import annotations

PDF_NAME = "book.pdf"


def link_the_book_pdf(app, pagename, templatename, context, doctree) -> None:
    buttons = context.get("header_buttons")
    if buttons is None or app.builder.name != "html":
        return
    for group in buttons:
        for button in group.get("buttons", []):
            if button.get("label") == "download-pdf-button":
                button["text"] = ".pdf (this page)"
    buttons.insert(0, {
        "type": "link",
        "url": context["pathto"](PDF_NAME, 1),
        "tooltip": "The whole book as one PDF",
        "icon": "fas fa-file-pdf",
        "label": "book-pdf-button",
    })


def setup(app):
    # after the theme has filled header_buttons (its handlers run at priorities 500 and 501)
    app.connect("html-page-context", link_the_book_pdf, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
