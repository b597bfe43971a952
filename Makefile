# Two entry points: `make run` (the paper's MNIST experiment) and `make test`.
# Each sets itself up from nothing; make skips the steps already done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MNIST := data/mnist/mnist.npz
WORKDIR ?= workdirs/mnist

.PHONY: run test bench bench-quick setup

setup: $(STAMP) $(MNIST)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(MNIST): | $(STAMP)
	$(PY) scripts/fetch_mnist.py --data-dir data

run: setup
	$(PY) main.py --config=configs/mnist.py --workdir=$(WORKDIR)

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m bench.run_all

bench-quick: setup
	$(PY) -m bench.run_all --quick
