# make test : every test (unit tests, notebook validation, book build, browser checks)
# make book : the HTML book in _build/html (reader mode)
# Both create .venv and install requirements.txt on first use.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

# Jupyter Book's execution cache keys on a notebook's code only. When vaelib changes, the notebooks that
# import it must run again, so a build folder's cache is dropped whenever vaelib's source hash changes.
define drop_stale_cache
	@h=$$(cat vaelib/*.py | sha256sum | cut -c1-16); \
	if [ "$$(cat $(1)/_build/.vaelib-hash 2>/dev/null)" != "$$h" ]; then \
	  rm -rf $(1)/_build/.jupyter_cache; mkdir -p $(1)/_build; echo "$$h" > $(1)/_build/.vaelib-hash; fi
endef

.PHONY: install test unit notebooks book book-quick browser bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
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

# The book in quick mode, for tests; its own build folder keeps it apart from the reader's book.
book-quick: $(STAMP)
	$(call drop_stale_cache,_build/quick)
	VAELIB_QUICK=1 TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/quick

book: $(STAMP)
	$(call drop_stale_cache,.)
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open _build/html/index.html in a browser."

browser: $(STAMP)
	BOOK_HTML=_build/quick/_build/html $(BIN)/python -m pytest tests/browser -m browser

bench: $(STAMP)
	$(BIN)/python -m vaelib bench --dataset fashion-mnist

clean:
	rm -rf _build
