# Two set-up commands: `make run` (the app) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run demo lab lessons test lint bench assets teachers methods-table clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[app]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-notebooks: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[notebooks]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-app $(VENV)/.installed-notebooks

# The Streamlit workbench on http://127.0.0.1:8501 (the URL is printed); Ctrl-C stops it.
run: $(VENV)/.installed-app
	$(BIN)/workbench app

# The command-line demo: scratch vs KD student from the shipped MNIST teacher, printed as a table.
demo: $(VENV)/.installed
	$(BIN)/workbench demo

# JupyterLab on the lessons in notebooks/.
lab: $(VENV)/.installed-notebooks
	$(BIN)/jupyter lab notebooks/

# Sync the lessons' jupytext pairs: notebooks/NN_*.py (percent format) is the source; its .ipynb
# follows it (an .ipynb edited in JupyterLab updates its .py) and keeps no outputs.
lessons: $(VENV)/.installed-notebooks
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py
	$(BIN)/jupyter nbconvert --clear-output --inplace --log-level=WARN notebooks/[0-9][0-9]_*.ipynb

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, then the house rules: no import circle in workbench/, no module above 800 lines, no function
# above 80 lines of body (scripts/check_structure.py).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python scripts/check_structure.py

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
