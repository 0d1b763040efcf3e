# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
PORT ?= 8000
# Exported so the settings' default SITE_URL (the links in notifications) names the port served on.
export PORT
VENV := .venv
PY := $(VENV)/bin/python
# What is installed comes from the lock files (requirements/*.lock: every package pinned, with hashes);
# pyproject.toml states the ranges they were resolved in. `make lock` refreshes them.
RUN_LOCK := requirements/run.lock
TEST_LOCK := requirements/test.lock
# Two stamps: `make run` installs only what running needs; `make test` adds the test extras (pytest,
# Playwright, ruff, …) on top. Each is rebuilt when pyproject.toml or its lock file changes.
RUN_HASH := $(shell cat pyproject.toml $(RUN_LOCK) | sha1sum | cut -c1-12)
TEST_HASH := $(shell cat pyproject.toml $(TEST_LOCK) | sha1sum | cut -c1-12)
RUN_STAMP := $(VENV)/.installed-run-$(RUN_HASH)
TEST_STAMP := $(VENV)/.installed-test-$(TEST_HASH)
# The locking tool: uv, because it resolves one lock for every platform in seconds (pip-tools resolves for
# the platform it runs on) and writes a plain requirements file, so installing needs nothing but pip.
# Pinned, so that the same inputs give the same lock files; installed into the venv by `make lock` only.
UV_VERSION := 0.13.9
# One lock for every platform (--universal: macOS and Windows markers included), for Python 3.11 and
# later; hashes make pip check each file it downloads. Extra flags: LOCK_ARGS=--upgrade (everything to
# the newest version in range) or LOCK_ARGS="--upgrade-package openai".
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command "make lock"

.PHONY: run test lint bench lock clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The lock first (exact versions, hash-checked), then the project itself without resolving again.
$(RUN_STAMP): pyproject.toml $(RUN_LOCK) | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r $(RUN_LOCK)
	$(PY) -m pip install --quiet --no-deps .
	rm -f $(VENV)/.installed-run-*
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml $(TEST_LOCK) | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r $(TEST_LOCK)
	$(PY) -m pip install --quiet --no-deps .
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

# Re-resolves both lock files from pyproject.toml, keeping every pin that is still in range (so a
# changed range moves only what it must); the run lock is resolved within the test lock, so both pin
# the same versions. Then `make test` installs the result.
lock: | $(VENV)/bin/python
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) $(LOCK_ARGS) -o $(TEST_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml -c $(TEST_LOCK) $(LOCK_FLAGS) -o $(RUN_LOCK)

clean:
	rm -rf $(VENV) var/test.sqlite3*
