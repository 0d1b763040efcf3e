# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
PORT ?= 8000
# Exported so the settings' default SITE_URL (the links in notifications) names the port served on.
export PORT
VENV := .venv
PY := $(VENV)/bin/python
HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Two stamps: `make run` installs only what running needs; `make test` adds the test extras
# (pytest, Playwright, ruff, …) on top. Each is rebuilt when pyproject.toml changes.
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)

.PHONY: run test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet .
	rm -f $(VENV)/.installed-run-*
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet ".[test]"
	rm -f $(VENV)/.installed-run-* $(VENV)/.installed-test-*
	touch $(RUN_STAMP) $(TEST_STAMP)

# PORT=8001 picks another port; DEMO=0 starts no simulated customers.
run: $(RUN_STAMP)
	$(PY) manage.py start --port $(PORT)

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

bench: $(RUN_STAMP)
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) var/test.sqlite3*
