# The two commands of the README: `make run` and `make test`. Only Python 3.11+ and make needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: venv run test test-instants lint demo bench drills worker simulators clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

run: venv  ## the embedded stack in the foreground: server + UI, simulators, workers, samples
	$(BIN)/python stack.py

test: venv  ## the whole suite on a real Temporal dev server, simulators and database
	$(BIN)/python -m pytest

# The clock and lifecycle tests with their dossiers received at instants where a clock that
# read the present would go wrong (README, Tests).
INSTANTS ?= friday-21h sunday-10h working-day-16h59 tet-eve makeup-saturday
test-instants: venv
	for at in $(INSTANTS); do \
		ENGINE_TEST_START_AT=$$at $(BIN)/python -m pytest -q tests/test_legal_clock.py \
			tests/test_lifecycle.py || exit 1; \
	done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

demo: venv
	$(BIN)/python starter.py demo --count 30

# The surge benchmark of the README; BENCH_ARGS="--open 10000" for many open dossiers.
BENCH_ARGS ?= --dossiers 5000 --baseline-dossiers 2000 --in-flight 200
bench: venv
	$(BIN)/python -m bench.surge $(BENCH_ARGS)

# Fault drills on the production shape (README, Reliability); DRILLS_ARGS=--short in CI.
DRILLS_ARGS ?=
drills: venv
	$(BIN)/python -m drills $(DRILLS_ARGS)

worker: venv
	$(BIN)/python worker.py --queues all

simulators: venv
	$(BIN)/python -m simulators

clean:
	rm -rf $(VENV) data/*.db data/results data/signing .pytest_cache .mypy_cache .ruff_cache
