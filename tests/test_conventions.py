"""The repository's conventions: licence, citation, contributing guide, and the local Jupyter setup.

``tests/data/citation-file-format-1.2.0.schema.json`` is the JSON schema of the Citation File Format 1.2.0,
as published by the Citation File Format project (https://citation-file-format.github.io/1.2.0/schema.json).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CFF_SCHEMA = Path(__file__).parent / "data" / "citation-file-format-1.2.0.schema.json"


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- licence -----------------------------------------------------------------------------------------

def test_license_gives_mit_for_code_and_cc_by_for_text_and_figures():
    text = _squash(_read("LICENSE"))
    assert "MIT License" in text and "Permission is hereby granted, free of charge" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    assert re.search(r"text and the figures .* Creative Commons Attribution 4\.0 International", text)
    assert "https://creativecommons.org/licenses/by/4.0/" in text


def test_the_html_footer_states_both_licences():
    footer = yaml.safe_load(_read("_config.yml"))["html"].get("extra_footer", "")
    assert "MIT" in footer and "CC BY 4.0" in footer, footer
    assert "https://creativecommons.org/licenses/by/4.0/" in footer


def _pyproject(key: str) -> str:
    m = re.search(rf"^{key} = (.+)$", _read("pyproject.toml"), re.M)
    assert m, f"pyproject.toml has no {key}"
    return m.group(1).strip()


def test_pyproject_licence_matches():
    assert re.fullmatch(r'(\{ text = )?"MIT"( \})?', _pyproject("license")), _pyproject("license")


# --- citation ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def citation():
    return yaml.safe_load(_read("CITATION.cff"))


def test_citation_cff_is_valid_cff_1_2_0(citation):
    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(citation)  # raises with the first problem found
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
    assert citation["cff-version"] == "1.2.0"


def test_the_schema_check_can_fail(citation):
    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    broken = {k: v for k, v in citation.items() if k != "authors"} | {"license": "MIT-ish"}
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) >= 2, [e.message for e in errors]


def test_citation_agrees_with_the_book(citation):
    config = yaml.safe_load(_read("_config.yml"))
    assert citation["title"] == config["title"]
    assert [a.get("name") for a in citation["authors"]] == [config["author"]]
    assert set(citation["license"]) == {"MIT", "CC-BY-4.0"}
    assert f'"{citation["version"]}"' == _pyproject("version")
    assert citation["preferred-citation"]["type"] == "book"
    assert str(citation["preferred-citation"]["year"]) == str(config["copyright"])


def test_the_intro_says_how_to_cite(citation):
    intro = _read("intro.md")
    m = re.search(r"^## How to cite\n(.*?)(?=^## |\Z)", intro, re.M | re.S)
    assert m, "intro.md has no '## How to cite' section"
    section = _squash(m.group(1))
    assert citation["title"] in section and citation["url"] in section and "CITATION.cff" in section
    assert str(citation["preferred-citation"]["year"]) in section


def test_one_version_everywhere(citation):
    """vaelib.__version__ is the book's version: pyproject.toml, CITATION.cff and the changelog's newest entry
    name the same one (the book's footer reads it from vaelib, see tools/book_version.py)."""
    import vaelib

    assert f'"{vaelib.__version__}"' == _pyproject("version")
    assert str(citation["version"]) == vaelib.__version__
    headings = re.findall(r"^## (.+)$", _read("CHANGELOG.md"), re.M)
    assert headings, "CHANGELOG.md has no version headings"
    assert re.fullmatch(rf"{re.escape(vaelib.__version__)}( \(unreleased\))?", headings[0]), \
        f"CHANGELOG.md's newest entry is {headings[0]!r}, vaelib is {vaelib.__version__}"


def test_the_version_line_names_version_commit_and_date():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import book_version
    import vaelib

    line = book_version.version_line("https://github.com/o/r")
    m = re.fullmatch(r'<p class="book-version">Version (\S+), built from commit <a href="https://github\.com/o/r/'
                     r'commit/([0-9a-f]{40})"><code>([0-9a-f]{7})</code></a> of (\d{4}-\d\d-\d\d)\.</p>', line)
    assert m, line
    assert m.group(1) == vaelib.__version__ and m.group(2).startswith(m.group(3))


# --- contributing ------------------------------------------------------------------------------------

def test_contributing_covers_build_test_new_chapters_and_the_claims_rule():
    text = _read("CONTRIBUTING.md")
    headings = re.findall(r"^## (.+)$", text, re.M)
    for needed in ("Build and test", "How to add a chapter"):
        assert needed in headings, f"CONTRIBUTING.md has no '## {needed}' section: {headings}"
    assert any("claim" in h.lower() for h in headings), headings
    for needle in ("make test", "make book", "claims/", "# claim:", "remove-cell", "vaelib.book.glue",
                   "{eval}", "source_hidden", "_toc.yml", "tests/test_claims.py"):
        assert needle in text, f"CONTRIBUTING.md does not mention {needle!r}"
    makefile = _read("Makefile")
    for target in re.findall(r"`make ([a-z-]+)`", text):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), \
            f"CONTRIBUTING.md names `make {target}`, the Makefile has no such target"


# --- local Jupyter -----------------------------------------------------------------------------------

def test_make_lab_opens_the_chapters_in_jupyter_lab():
    makefile = _read("Makefile")
    m = re.search(r"^lab:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert m, "the Makefile has no lab target"
    assert re.search(r"jupyter lab chapters/", m.group(1)), m.group(1)
    assert "$(READER_STAMP)" in makefile[m.start():m.start() + 80], "`make lab` must install first"
