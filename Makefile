# `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve-demo test test-fast lint bench clean

# pytest-xdist workers: one more than the cores, since a third of a test's time is spent waiting on
# servers and subprocesses (Dovecot, Chromium, worker processes). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cadence.cli.demo demo

serve-demo: $(STAMP)
	$(BIN)/python -m cadence.cli.demo serve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy cadence
	@command -v dovecot >/dev/null || test -x /usr/sbin/dovecot || { echo "make test needs Dovecot: apt-get install -y dovecot-imapd" >&2; exit 1; }
	@command -v chromium >/dev/null || { echo "make test needs Chromium for the browser tests: apt-get install -y --no-install-recommends chromium" >&2; exit 1; }
	$(BIN)/pytest -q -n $(TEST_WORKERS)

# For local work: the same checks, without the fault-injection runs (tests/faults). CI runs `make test`.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy cadence
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not faults"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy cadence

bench: $(STAMP)
	$(BIN)/python bench/enroll.py
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
