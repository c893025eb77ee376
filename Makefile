# Two commands on a fresh machine: `make repro` and `make test` (see README).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The stages run `python` and `dvc`: the ones in the venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast lint params mlflow-ui bench clean

setup: $(STAMP)

# Re-install only when the dependencies change. The grep hides one pip warning that some
# machines' pip configs print for every package; pip's real errors still fail the build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	touch $@

repro: setup  ## run the pipeline: prepare -> search -> retrain -> evaluate
	dvc repro
	dvc metrics show

# Two test workers of one thread each (work-stealing, so the long end-to-end tests do not
# leave one worker idle): on two cores, two processes with torch's default
# threads slow each other down many times over.
TEST_WORKERS ?= 2

test: setup  ## the whole test suite, end-to-end pipeline included
	OMP_NUM_THREADS=1 pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: setup  ## the unit tests only
	OMP_NUM_THREADS=1 pytest -q -n $(TEST_WORKERS) -m "not slow"

lint: setup
	ruff check src tests pipelines benchmarks
	ruff format --check src tests pipelines benchmarks
	mypy

params: setup  ## regenerate the config schemas from the constructors, and params.yaml from conf/
	python -m nasflow.schemas
	python -m nasflow.params

mlflow-ui: setup  ## browse runs at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

bench: setup
	python benchmarks/lightning_overhead.py

clean:
	rm -rf data results outputs multirun mlflow.db mlartifacts
