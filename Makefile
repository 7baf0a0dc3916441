# Two set-up commands: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench assets teachers methods-table clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/workbench demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

methods-table: $(VENV)/.installed-test
	$(BIN)/python benchmarks/methods_table.py

assets: $(VENV)/.installed
	$(BIN)/python scripts/build_data_assets.py

teachers: $(VENV)/.installed
	$(BIN)/python scripts/build_teachers.py

clean:
	rm -rf $(VENV) runs .pytest_cache
