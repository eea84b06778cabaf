# Every target sets itself up: it creates .venv when missing and reinstalls when pyproject changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m softgrad demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)
	$(VENV)/bin/mypy

# Two pytest workers (pytest-xdist): a fresh clone spends about half of a serial run compiling
# Numba kernels, one core at a time; with two workers CI's suite took 7.6 instead of 13-14
# minutes. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS)

bench: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m softgrad bench

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
