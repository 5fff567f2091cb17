# Every target sets up what it needs: on a fresh machine `make test` alone installs and runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
# MNIST: the example's default is ../shared/data/mnist when it holds the files, else data/mnist
# in the checkout (git-ignored; torchvision downloads there when the network allows).
DATA_DIR ?=
DATA_FLAG := $(if $(DATA_DIR),--data-dir $(DATA_DIR))
OUT ?= runs

.PHONY: install check test lint format docs demo prior-demo colour-demo compress-demo compress-colour-demo ood-demo mnist mnist-progress bench bench-quick gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with every extra

check: $(STAMP)  ## the developer's loop (~3 min): lint, types, the fast tests, few Hypothesis examples
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -m "not slow" --hypothesis-profile=dev

test: $(STAMP)  ## everything CI runs: lint, types, every test (thorough Hypothesis), docs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest --hypothesis-profile=ci
	$(MAKE) docs

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

docs: $(STAMP)  ## build the HTML docs (warnings are errors) and run their doctests
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	$(PY) -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

demo: $(STAMP)  ## CPU-sized MNIST run in the automatic precision (--resume continues it)
	$(PY) examples/mnist_pixelcnn.py --demo --resume $(DATA_FLAG) --out $(OUT)/demo

prior-demo: $(STAMP)  ## CPU-sized VQ-VAE on MNIST + class-conditional PixelCNN prior over its codes
	$(PY) examples/vqvae_prior.py --demo --resume $(DATA_FLAG) --out $(OUT)/prior-demo

compress-demo: $(STAMP)  ## compress the 10,000 binarized MNIST test digits with the shipped model; vs PNG, gzip, bz2, lzma
	$(PY) examples/compress_images.py $(DATA_FLAG) --out $(OUT)/compress-mnist

compress-colour-demo: $(STAMP)  ## compress the 342 test photo patches with the colour demo's model (make colour-demo first); vs PNG, gzip, bz2, lzma
	$(PY) examples/compress_images.py --data colour --weights $(OUT)/colour-demo/checkpoint.pt --out $(OUT)/compress-colour

ood-demo: $(STAMP)  ## out-of-distribution MNIST: the shipped model's likelihood vs the likelihood ratio (trains a background model; --resume reuses it)
	$(PY) examples/ood_mnist.py --resume $(DATA_FLAG) --out $(OUT)/ood-mnist

mnist: $(STAMP)  ## the full 30-epoch reference run, compiled, checkpointed every 10 min (--resume continues it)
	$(PY) examples/mnist_pixelcnn.py --resume --compile $(DATA_FLAG) --out $(OUT)/mnist

mnist-progress: $(STAMP)  ## copy the reference run's metrics, loss curve and pictures (no checkpoints) into examples/results
	$(PY) examples/run_progress.py $(OUT)/mnist examples/results/mnist-reference

colour-demo: $(STAMP)  ## CPU-sized colour run on the offline photo patches (--resume continues it)
	$(PY) examples/colour_pixelcnn.py --demo --resume --out $(OUT)/colour-demo

bench: $(STAMP)  ## full benchmark suite, results in benchmarks/results/
	$(PY) -m benchmarks

bench-quick: $(STAMP)  ## a few minutes on 2 CPU cores
	$(PY) -m benchmarks --quick

gpu-check:  ## on a lent GPU: CUDA tests, CUDA benchmarks, the reference run (see benchmarks/gpu.sh)
	PYTHON=$(if $(wildcard $(PY)),$(PY),python3) bash benchmarks/gpu.sh $(OUT)/gpu-check-out

clean:
	rm -rf docs/_build .pytest_cache .ruff_cache .hypothesis
