# Two commands do everything on a fresh machine with python3 >= 3.11 and make:
#   make quickstart   set up, then run the quickstart on embedded SQLite
#   make check        set up, then lint + format check + types + tests + examples (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup quickstart check lint typecheck test examples bench demo-asciicast-agent clean

help:
	@echo "make quickstart  - install into .venv and run examples/quickstart_sync.py and examples/quickstart.py"
	@echo "make check       - install, then ruff, mypy --strict, pytest (SQLite + PostgreSQL) and the examples"
	@echo "make bench       - governed actions/s and token usage recorded/s vs the raw-driver limit, decision latency vs Cedar, approval round trip, adapter overhead"
	@echo "make demo-asciicast-agent - a narrated terminal walkthrough (recorded to demo-agent.cast when asciinema is installed)"

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
	cd examples && ../$(BIN)/python single_agent_continuous_loop.py --quick > /dev/null && ../$(BIN)/python multi_agent_continuous_loop.py --quick > /dev/null
	cd examples && ../$(BIN)/python continuous_loop_governance.py --quick > /dev/null && ../$(BIN)/python long_running_autonomous_agent.py --quick > /dev/null
	cd examples && ../$(BIN)/python audit_viewer.py --database-url sqlite:///single_agent_continuous_loop.db > /dev/null && ../$(BIN)/python demo_walkthrough.py --fast > /dev/null
	cd examples && ../$(BIN)/acp policy test policy.yaml > /dev/null
	cd examples && ../$(BIN)/python mcp_tool_gateway.py > /dev/null && env -u OPENAI_API_KEY ../$(BIN)/python openai_agents_sdk_integration.py > /dev/null
	cd examples && ../$(BIN)/python claude_agent_sdk_integration.py > /dev/null && ../$(BIN)/python langgraph_integration.py > /dev/null

check: lint typecheck test examples

bench: $(STAMP)
	$(BIN)/python -m agent_control_plane.bench

# Records with asciinema when it is installed (pip install asciinema, or apt install asciinema); otherwise the same
# walkthrough plays as a plain script in this terminal.
demo-asciicast-agent: $(STAMP)
	@if command -v asciinema > /dev/null 2>&1; then \
		asciinema rec --overwrite -q -i 2 -c "$(BIN)/python examples/demo_walkthrough.py" demo-agent.cast && \
		echo "recorded demo-agent.cast (play it with: asciinema play demo-agent.cast)"; \
	else \
		$(BIN)/python examples/demo_walkthrough.py; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache examples/*.db* demo-agent.cast
