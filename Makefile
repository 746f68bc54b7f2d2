# nnmiplib — two commands on a fresh machine with Python 3.11:
#   make book   install, fetch MNIST, run every chapter at SCALE (default quick), build _build/html
#   make test   install, then the whole test suite (unit, property, chapters at smoke, book, browser)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= quick
# worker processes for the chapters' grids and training (one solver / torch thread each)
N_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
STAMP  := $(VENV)/.installed

.PHONY: book test install browser mnist chapters html lint clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "nnmiplib needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name nnmiplib --display-name "Python (nnmiplib)" >/dev/null
	touch $(STAMP)

# Debian's chromium, for the page tests of the built book (headless, offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the page tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  { echo "could not install chromium: run 'apt-get install chromium' as root" >&2; exit 1; }; }

mnist: $(STAMP)
	$(BIN)/python -c "from nnmiplib.data import load_mnist; load_mnist()"

book: $(STAMP) mnist
	$(BIN)/python -m nnmiplib.study.book --scale $(SCALE) --n-jobs $(N_JOBS)

chapters: $(STAMP) mnist
	$(BIN)/python -m nnmiplib.study.book --scale $(SCALE) --n-jobs $(N_JOBS) --no-html

html: $(STAMP)
	$(BIN)/python -m nnmiplib.study.book --no-execute

test: $(STAMP) browser
	# two test processes on two cores: one BLAS thread each, so they never oversubscribe
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

lint: $(STAMP)
	$(BIN)/ruff check nnmiplib tests benchmarks

clean:
	rm -rf _build book/*.ipynb book/_generated
