# Two commands do everything on a fresh machine with python3 >= 3.11 and make:
#   make quickstart   set up, then run the quickstart on embedded SQLite
#   make check        set up, then lint + format check + types + tests + examples (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup quickstart check lint typecheck test examples bench clean

help:
	@echo "make quickstart  - install into .venv and run examples/quickstart_sync.py and examples/quickstart.py"
	@echo "make check       - install, then ruff, mypy --strict, pytest (SQLite + PostgreSQL) and the examples"
	@echo "make bench       - governed actions/s and token usage recorded/s vs the raw-driver limit, decision latency vs Cedar, approval round trip"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	cd examples && ../$(BIN)/python quickstart_sync.py && ../$(BIN)/python quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/pytest -q

examples: $(STAMP)
	cd examples && ../$(BIN)/python quickstart_sync.py > /dev/null && ../$(BIN)/python quickstart.py > /dev/null && ../$(BIN)/python steering_demo.py > /dev/null && ../$(BIN)/python condition_tree_evaluator_demo.py > /dev/null
	cd examples && ../$(BIN)/python tenant_budget_tracking.py > /dev/null && ../$(BIN)/python token_governance_demo.py > /dev/null
	cd examples && ../$(BIN)/acp policy test policy.yaml > /dev/null

check: lint typecheck test examples

bench: $(STAMP)
	$(BIN)/python -m agent_control_plane.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache examples/*.db*
