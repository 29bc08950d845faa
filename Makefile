# rxllm developer commands. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)           ## stream from every simulated provider (no keys, no network)
	$(BIN)/rxllm demo

test: $(STAMP)           ## the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP)           ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)      ## mypy --strict on an installed copy (see STYLE: editable hooks hide it)
	rm -rf .typecheck
	$(BIN)/python -m pip install --quiet --no-deps --target .typecheck .
	cd .typecheck && ../$(BIN)/mypy -p rxllm

bench: $(STAMP)          ## every benchmark; figures go to benchmarks/RESULTS.md
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .typecheck build *.egg-info
