# make test : every test (unit tests, notebook validation, book build, browser checks)
# make book : the HTML book in _build/html (reader mode), with the whole book as _build/html/book.pdf
# make book-student : the same book without the exercises' solutions, in _build/student/_build/html
# make lab  : Jupyter Lab on the chapters, with only what running them needs (requirements-reader.txt)
# All create .venv on first use; `make lab` installs the reader's set into it, the others requirements.txt
# (that set plus the tools that build and test the book).

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
READER_STAMP := $(VENV)/.installed-reader
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0

# Jupyter Book's execution cache keys on a notebook's code only, and Sphinx re-reads only the pages whose
# source changed. When vaelib changes, the notebooks that import it must run again, so whenever vaelib's
# source hash changes a build folder drops both its execution cache and Sphinx's saved environment.
define drop_stale_cache
	@h=$$(find vaelib -name '*.py' -o -name '*.html' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16); \
	if [ "$$(cat $(1)/_build/.vaelib-hash 2>/dev/null)" != "$$h" ]; then \
	  rm -rf $(1)/_build/.jupyter_cache $(1)/_build/.doctrees; mkdir -p $(1)/_build; \
	  echo "$$h" > $(1)/_build/.vaelib-hash; fi
endef

.PHONY: install reader test unit notebooks book book-quick book-student book-student-quick pdf lab browser bench clean

# MathJax is served from the book itself (no CDN), so math renders with no network.
# It comes from the npm registry at a pinned version, checked against the tarball's SHA-512.
# The website keeps only the self-contained single-file SVG build (all TeX extensions, no fonts or lazy
# loads); _config.yml copies _build/vendor/mathjax/ into the HTML output (html_extra_path). The PDF sets its
# math with the CHTML build and MathJax's fonts instead, so that the formulas are text in the PDF
# (tools/print_pdf.py serves them from _build/vendor/mathjax-print/; they are not part of the website).
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA512  := 06df9249553c7811b6ef30a155ec0e89c62ced7b1db78d2a9b8f94a47c97ee4d3f3bd36588f73ec7bee4d7f144b0fb2328f64626fb5164cd6f3be81e5b43a11b
MATHJAX_DIR     := _build/vendor/mathjax
MATHJAX_PRINT   := _build/vendor/mathjax-print
MATHJAX_STAMP   := $(MATHJAX_DIR)/.mathjax-$(MATHJAX_VERSION)-with-print

install: $(STAMP)

$(STAMP): requirements.txt requirements-reader.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

test: unit notebooks book-quick browser

unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not browser"

notebooks: $(STAMP)
	VAELIB_QUICK=1 $(BIN)/python -m pytest --nbval-lax chapters/ -p no:cacheprovider

$(MATHJAX_STAMP):
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed to fetch MathJax from the npm registry" >&2; exit 1; }
	rm -rf $(MATHJAX_DIR) $(MATHJAX_PRINT) && mkdir -p $(MATHJAX_DIR)/_static/mathjax $(MATHJAX_PRINT)/output/chtml/fonts
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  npm pack --silent --pack-destination "$$tmp" mathjax@$(MATHJAX_VERSION) >/dev/null && \
	  echo "$(MATHJAX_SHA512)  $$tmp/mathjax-$(MATHJAX_VERSION).tgz" | sha512sum --check --quiet - && \
	  tar -xzf "$$tmp/mathjax-$(MATHJAX_VERSION).tgz" -C "$$tmp" package/es5/tex-svg-full.js package/LICENSE \
	    package/es5/tex-chtml-full.js package/es5/output/chtml/fonts/woff-v2 && \
	  cp "$$tmp/package/es5/tex-svg-full.js" "$$tmp/package/LICENSE" $(MATHJAX_DIR)/_static/mathjax/ && \
	  cp "$$tmp/package/es5/tex-chtml-full.js" "$$tmp/package/LICENSE" $(MATHJAX_PRINT)/ && \
	  cp -r "$$tmp/package/es5/output/chtml/fonts/woff-v2" $(MATHJAX_PRINT)/output/chtml/fonts/
	touch $@

# After the HTML build of folder $(1) (run with environment $(2)): each chapter's .ipynb download becomes
# the executed notebook (outputs from the execution cache), and the whole book becomes $(1)/_build/html/book.pdf:
# the single-page HTML, built from the same execution cache (no notebook runs again), printed by Chromium
# once MathJax has typeset it; no TeX needed. intro.html is the single page (intro is the root in _toc.yml).
# Without Chromium the book is built without its PDF (with a notice), except under CI=true; `make pdf` insists.
define finish_book
	$(2) $(BIN)/python tools/executed_notebooks.py $(1)/_build
	$(2) $(BIN)/jupyter-book build . -W -n --keep-going --quiet --builder singlehtml --path-output $(1)
	$(BIN)/python tools/print_pdf.py $(if $(filter true,$(CI)),,--optional) \
	  $(1)/_build/singlehtml/intro.html $(1)/_build/html/book.pdf
endef

# The book in quick mode, for tests; its own build folder keeps it apart from the reader's book.
book-quick: $(STAMP) $(MATHJAX_STAMP)
	$(call drop_stale_cache,_build/quick)
	VAELIB_QUICK=1 TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/quick
	$(call finish_book,_build/quick,VAELIB_QUICK=1 TQDM_DISABLE=1)

book: $(STAMP) $(MATHJAX_STAMP)
	$(call drop_stale_cache,.)
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going
	$(call finish_book,.,TQDM_DISABLE=1)
	@echo "Open _build/html/index.html in a browser; the whole book is _build/html/book.pdf."

# The student edition: the book of `make book` without the exercises' solutions (VAELIB_STUDENT=1; the
# exercises and their checks stay), HTML, reader notebooks and PDF. It starts from a copy of that book's
# execution cache: leaving solutions out changes no code cell, so no notebook runs again.
book-student: book
	$(call drop_stale_cache,_build/student)
	rm -rf _build/student/_build/.jupyter_cache && mkdir -p _build/student/_build
	cp -a _build/.jupyter_cache _build/student/_build/.jupyter_cache
	VAELIB_STUDENT=1 TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/student
	$(call finish_book,_build/student,VAELIB_STUDENT=1 TQDM_DISABLE=1)
	@echo "The student edition: _build/student/_build/html/index.html and _build/student/_build/html/book.pdf."

# The whole-book PDF is part of the book (the HTML links to it); this target insists on it.
pdf: book
	@test -f _build/html/book.pdf || { echo "no PDF: install Chromium (apt-get install chromium)" >&2; exit 1; }
	@echo "The whole book as a PDF: _build/html/book.pdf"

# A reader's install: what running the chapters needs (requirements-reader.txt), none of the build and test
# tools. On Linux, PyTorch comes from PyTorch's CPU-only index: pip's `torch==2.14.1` then resolves to
# `2.14.1+cpu`, without the several GB of CUDA libraries that PyPI's Linux build brings (`make lab
# TORCH_INDEX=` keeps PyPI's build). On macOS and Windows, PyPI's PyTorch has no CUDA libraries anyway.
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu)

reader: $(READER_STAMP)

$(READER_STAMP): requirements-reader.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements-reader.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Jupyter Lab on the chapters, with the widget manager that chapter 7's explorer needs (ipywidgets 8).
# --allow-root only where make runs as root (a container), which Jupyter otherwise refuses.
lab: $(READER_STAMP)
	$(BIN)/jupyter lab chapters/ $(if $(filter 0,$(shell id -u)),--allow-root)

# The student edition of the quick book (HTML and reader notebooks), from the quick book's execution cache,
# so that the tests can compare the two built books.
book-student-quick: book-quick
	$(call drop_stale_cache,_build/student-quick)
	rm -rf _build/student-quick/_build/.jupyter_cache && mkdir -p _build/student-quick/_build
	cp -a _build/quick/_build/.jupyter_cache _build/student-quick/_build/.jupyter_cache
	VAELIB_QUICK=1 VAELIB_STUDENT=1 TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/student-quick
	VAELIB_QUICK=1 VAELIB_STUDENT=1 $(BIN)/python tools/executed_notebooks.py _build/student-quick/_build

# Headless Chromium over every page of the quick book, so it runs after (and depends on) book-quick; and the
# built student edition against the built book.
browser: book-quick book-student-quick
	BOOK_HTML=_build/quick/_build/html $(BIN)/python -m pytest tests/browser -m browser
	BOOK_HTML=_build/quick/_build/html STUDENT_BOOK_HTML=_build/student-quick/_build/html \
	  $(BIN)/python -m pytest tests/test_student_edition.py -k built_student_edition

bench: $(STAMP)
	$(BIN)/python -m vaelib bench --dataset fashion-mnist

clean:
	rm -rf _build
