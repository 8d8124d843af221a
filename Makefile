# temporal-tracer: `make demo` runs the sample, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per extra installed into the virtualenv: `make demo` needs only the demo extra,
# the checks need dev (which includes every other extra).
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
# Arize Phoenix, the independent OTLP backend the export tests deliver to. It gets its own
# virtualenv: its dependencies are not ours.
PHOENIX_VERSION ?= 20.26.1
PHOENIX := $(VENV)/phoenix/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(VENV)/.installed-%: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	@touch $@

$(PHOENIX): | $(DEV_STAMP)
	$(PYTHON) -m venv $(VENV)/phoenix
	$(VENV)/phoenix/bin/python -m pip install --quiet 'arize-phoenix==$(PHOENIX_VERSION)'
	@touch $@

demo: $(DEMO_STAMP)
	$(BIN)/temporal-tracer demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP) $(PHOENIX)
	$(BIN)/pytest

test: lint typecheck pytest

# Figures, not pass/fail: each prints what it measured (minutes, not seconds).
bench: $(DEV_STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tree_api.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/ui_large_tree.py
	$(BIN)/python bench/interceptor_overhead.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/linker_idle.py
	$(BIN)/python bench/link_cost.py

clean:
	rm -rf $(VENV) .demo test-artifacts .pytest_cache .mypy_cache .ruff_cache
