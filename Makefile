# newsmon — `make run` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/newsmon.yaml

.PHONY: run test lint typecheck unit venv fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	install -d -m 0700 var
	$(BIN)/newsmon --config $(CONFIG) run

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor

typecheck: $(STAMP)
	$(BIN)/mypy monitor

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# Longer fuzzing than `make test` runs (5,000 examples a test instead of 200).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q --timeout=3600 tests/test_fuzz.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
