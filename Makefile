# The two commands of the README: `make demo` (install + generate) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml plugins/arc_wan21/pyproject.toml plugins/arc_ltx/pyproject.toml plugins/arc_longlive/pyproject.toml plugins/arc_dreamdojo/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e plugins/arc_wan21 -e plugins/arc_ltx -e plugins/arc_longlive -e plugins/arc_dreamdojo
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m arc_fabric_core +model=wan21 output_dir=outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_vs_diffusers.py
	$(BIN)/python benchmarks/sessions.py
	$(BIN)/python benchmarks/hybrid.py
	$(BIN)/python benchmarks/runtime.py

clean:
	rm -rf $(VENV) .nox outputs multirun .pytest_cache .ruff_cache
