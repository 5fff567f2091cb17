# Every target sets up what it needs: on a fresh machine `make test` alone installs and runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
DATA_DIR ?= ../shared/data/mnist
OUT ?= runs

.PHONY: install test lint format docs demo mnist bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with every extra

test: $(STAMP)  ## lint, unit + property tests, doctests and the docs build
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest
	$(MAKE) docs

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

docs: $(STAMP)  ## build the HTML docs (warnings are errors) and run their doctests
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	$(PY) -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

demo: $(STAMP)  ## CPU-sized MNIST run (about 10 minutes on 2 cores)
	$(PY) examples/mnist_pixelcnn.py --demo --data-dir $(DATA_DIR) --out $(OUT)/demo

mnist: $(STAMP)  ## the full 30-epoch reference run
	$(PY) examples/mnist_pixelcnn.py --data-dir $(DATA_DIR) --out $(OUT)/mnist

bench: $(STAMP)  ## full benchmark suite, results in benchmarks/results/
	$(PY) -m benchmarks

bench-quick: $(STAMP)  ## a few minutes on 2 CPU cores
	$(PY) -m benchmarks --quick

clean:
	rm -rf docs/_build .pytest_cache .ruff_cache .hypothesis
