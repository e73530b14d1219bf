# Entry points for people and CI. Every target that needs Python creates the venv first.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
MODEL_DIR := scoring/model
# The other example models (python -m scoring.train --kind ...), trained by `make examples`.
EXAMPLES_DIR := .devstack/models
CHURN_SOURCES := scoring/train.py scoring/examples/__init__.py scoring/examples/common.py $(wildcard scoring/examples/churn/*.py)

.PHONY: setup browser test lint unit demo up down status logs bench chaos clean examples

$(VENV_STAMP): pyproject.toml requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e ".[dev]"
	touch $(VENV_STAMP)

node_modules/.bin/azurite: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.bin/azurite

$(MODEL_DIR)/MLmodel: $(VENV_STAMP) $(CHURN_SOURCES)
	$(PY) -m scoring.train --kind churn --out $(MODEL_DIR)

$(EXAMPLES_DIR)/%/MLmodel: $(VENV_STAMP) scoring/train.py scoring/examples/common.py scoring/examples/iris.py scoring/examples/diabetes.py
	$(PY) -m scoring.train --kind $* --out $(EXAMPLES_DIR)/$*

# The multiclass (iris) and regression (diabetes) example models, next to the churn model of `setup`.
examples: $(MODEL_DIR)/MLmodel $(EXAMPLES_DIR)/multiclass/MLmodel $(EXAMPLES_DIR)/regression/MLmodel

setup: $(VENV_STAMP) node_modules/.bin/azurite $(MODEL_DIR)/MLmodel

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# pytest exits 5 when it collects nothing: that must fail, not pass quietly.
# The status page test drives Debian's chromium (Playwright's executable_path); nothing downloads a browser.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# The suite runs on TEST_WORKERS processes (pytest-xdist, one test file per process at a time, so a module's
# fixtures stay in one process). Many tests spend their time waiting on services (lock expiry, retries, restarts,
# samples that sleep), so three processes keep two cores busy (README, "Get started"). TEST_WORKERS=0 runs the tests in
# this one process.
TEST_WORKERS ?= 3

test: setup browser lint
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

unit: $(VENV_STAMP)
	$(PY) -m pytest tests/unit

up: setup
	$(PY) -m devstack up

down:
	$(PY) -m devstack down

status:
	$(PY) -m devstack status

# make logs NAME=scoring shows one service's log
logs:
	$(PY) -m devstack logs $(NAME)

demo: setup
	$(PY) -m devstack demo

bench: setup
	$(PY) -m benchmarks

# make chaos REPEAT=10 runs it ten times in a row; CHAOS_ARGS passes any other option (--files, --keep ...)
chaos: setup
	$(PY) -m tests.support.chaos $(if $(REPEAT),--repeat $(REPEAT)) $(CHAOS_ARGS)

# Stops a running local stack first: its pid files live in .devstack/.
clean:
	-if [ -x $(PY) ]; then $(PY) -m devstack down; fi
	rm -rf .devstack .pytest_cache .mypy_cache .ruff_cache
