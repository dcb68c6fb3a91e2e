"""tools/print_pdf.py's bookmarks: Chromium's outline is replaced by one entry per heading, with the heading's
own text and the book's nesting, at the place Chromium found for it; the result is read back by poppler
(pdftohtml), an independent PDF reader."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import print_pdf  # noqa: E402  (tools/ is a folder of scripts, not a package)


def _pdf(objects: dict[int, bytes], root: int, info: int) -> bytes:
    """A classic PDF (one cross-reference table), as Chromium writes it."""
    out, where = bytearray(b"%PDF-1.4\n"), {}
    for n in sorted(objects):
        where[n] = len(out)
        out += b"%d 0 obj\n" % n + objects[n] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % where[n] for n in range(1, size))
    out += b"trailer\n<</Size %d\n/Root %d 0 R\n/Info %d 0 R>>\nstartxref\n%d\n%%%%EOF" % (size, root, info, xref)
    return bytes(out)


# Two pages; Chromium's bookmarks (garbled titles, as it writes them) for a title, its section and a chapter.
CHROMIUM_PDF = _pdf({
    1: b"<</Title (A book)>>",
    2: b"<</Type /Catalog\n/Pages 3 0 R\n/Outlines 6 0 R>>",
    3: b"<</Type /Pages\n/Kids [4 0 R 5 0 R]\n/Count 2>>",
    4: b"<</Type /Page\n/Parent 3 0 R\n/MediaBox [0 0 200 200]>>",
    5: b"<</Type /Page\n/Parent 3 0 R\n/MediaBox [0 0 200 200]>>",
    6: b"<</Type /Outlines\n/First 7 0 R\n/Last 7 0 R\n/Count 3>>",
    7: b"<</Title (A bookA book)\n/Dest [4 0 R /XYZ 0 190 0]\n/Parent 6 0 R\n/First 8 0 R\n/Last 9 0 R\n/Count 2>>",
    8: b"<</Title (Why)\n/Dest [4 0 R /XYZ 0 100 0]\n/Parent 7 0 R\n/Next 9 0 R>>",
    9: b"<</Title (1. 1. The  ofThe  of)\n/Dest [5 0 R /XYZ 0 190 0]\n/Parent 7 0 R\n/Prev 8 0 R>>",
}, root=2, info=1)


def _outline(pdf: Path) -> list[tuple[int, int, str]]:
    """(depth, page, title) of each bookmark, as poppler reads them."""
    tool = shutil.which("pdftohtml")
    if tool is None:
        pytest.skip("pdftohtml not found: apt-get install poppler-utils")
    xml = subprocess.run([tool, "-xml", "-i", "-q", "-stdout", str(pdf)], capture_output=True, text=True,
                         check=True).stdout
    out, depth = [], -1
    for m in re.finditer(r'<outline>|</outline>|<item page="(\d+)">(.*?)</item>', xml, re.S):
        if m.group(0) == "<outline>":
            depth += 1
        elif m.group(0) == "</outline>":
            depth -= 1
        else:
            out.append((depth, int(m.group(1)), html.unescape(m.group(2))))
    return out


def test_the_bookmarks_are_the_headings_at_chromiums_places(tmp_path):
    pdf = tmp_path / "book.pdf"
    headings = [(0, "A book"), (1, "Why"), (0, "1. The cost of σ")]
    pdf.write_bytes(print_pdf.set_outline(CHROMIUM_PDF, headings))
    assert _outline(pdf) == [(0, 1, "A book"), (1, 1, "Why"), (0, 2, "1. The cost of σ")]
    assert b"/PageMode /UseOutlines" in pdf.read_bytes()


def test_bookmarks_that_cannot_be_matched_to_the_headings_stop_the_print():
    with pytest.raises(SystemExit, match="3 bookmarks for 2 headings"):
        print_pdf.set_outline(CHROMIUM_PDF, [(0, "A book"), (1, "Why")])
