# Set-up lives here so that a fresh machine needs only `make up` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The JavaScript linter (ESLint, pinned by package-lock.json): `npm ci` again only when the lock changes.
NODE_STAMP := node_modules/.installed
# torch and torchvision first, pinned: pip takes these builds from the local disk instead of downloading, into a
# folder that every checkout on the machine shares (scripts/torch_cache.sh).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup up test lint docs bench services clean

setup: $(STAMP)

# --no-compile: pip would compile every module of every package up front (torch, sympy, scipy...: two thirds of the
# set-up's time); Python writes the bytecode of what is imported instead, when it is first imported. That needs
# PYTHONDONTWRITEBYTECODE unset, for the set-up and the tests alike.
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	bash scripts/torch_cache.sh $(PY) "$(TORCH)"  # once per machine, shared by every checkout (see the script)
	bash scripts/install_deps.sh $(PY) train,test  # train brings the server's packages too; wheels kept per machine
	$(PY) -c 'import fitboard.worker.engine, fitboard.app.web.app'  # the bytecode every process needs, written once
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

services:
	bash scripts/services.sh
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_compose.sh

up: setup
	$(VENV)/bin/fitboard up

# The gates first: ruff (style and likely bugs) and import-linter (app never imports the worker, torch or fastai;
# app's layers only import downwards), both set in pyproject.toml; then ESLint over app/static/*.js
# (eslint.config.mjs: unused values and variables, and code swallowed by a // comment).
lint: setup $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	npm run --silent lint

# The docs site builds strictly: a broken link or a page missing from the nav fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site

# pytest-xdist spreads the test files over $(TEST_PROCS) processes: most tests wait on worker processes, servers or
# chromium, so four keep two cores busy (three left a third of the machine idle); --dist loadfile keeps a file's
# tests (and its module fixtures) together, and --no-loadscope-reorder hands the files out longest first
# (tests/conftest.py: LONGEST_FIRST) instead of by their number of tests.
TEST_PROCS ?= 4
test: setup services lint docs
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder

# Benchmarks print figures; the load benchmark's Locust comes from the bench extra.
bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/engine_overhead.py
	$(PY) bench/store_and_start.py
	$(PY) bench/web.py
	$(PY) bench/compare.py
	$(PY) bench/resume.py
	$(PY) bench/sweep_flood.py
	$(PY) bench/api_hardening.py
	$(PY) bench/predict.py
	$(PY) bench/pipeline.py
	$(PY) bench/gpu.py
	$(PY) bench/progress_gaps.py
	$(PY) bench/augment.py
	$(PY) bench/search.py
	$(PY) bench/callback.py
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) node_modules
