# One gate and one demo. `make test` and `make demo` create .venv and install the pinned
# dependencies on first use; nothing else needs to be installed by hand.

SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
STAMP := $(VENV)/.installed
FUNCTIONS := $(wildcard functions/*/app.py)
# Project code checked with mypy --strict (functions are checked one folder at a time, since
# every handler module is called `app`).
STRICT_PATHS := layers/shared/change_contract localdev $(wildcard relay) $(wildcard bench)

.PHONY: help venv lock test lint typecheck pytest templates demo events bench build clean

help:
	@echo "make test    - every check: lint, types, all test tiers, template checks"
	@echo "make demo    - the whole pipeline locally (ARGS=--follow keeps it running)"
	@echo "make events  - regenerate events/*.json from the contract"
	@echo "make bench   - benchmarks, written to bench/results/"
	@echo "make build   - sam build (needs python3.13)"

$(STAMP): requirements/dev.txt localdev/find-python.sh
	@boot="$$(./localdev/find-python.sh)"; echo "creating $(VENV) with $$boot"; \
	  "$$boot" -m venv --clear $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements/dev.txt
	$(PYTHON) localdev/install_paths.py
	@touch $@

venv: $(STAMP)
	@$(PYTHON) localdev/install_paths.py >/dev/null

lock: $(STAMP)
	@echo "# Pinned by \`make lock\` from requirements/dev.in on Python 3.13. Do not edit by hand." > requirements/dev.txt.new
	$(PYTHON) -m pip install --quiet -r requirements/dev.in
	$(PYTHON) -m pip freeze | grep -ivE '^(pip|setuptools)==' >> requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy $(STRICT_PATHS)
	@for app in $(FUNCTIONS); do dir=$$(dirname $$app); echo "mypy $$dir"; \
	  $(BIN)/mypy $$dir || exit 1; done
	$(BIN)/mypy --config-file tests/mypy.ini tests

pytest: venv
	$(BIN)/pytest

templates: venv
	$(BIN)/cfn-lint template.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam validate --lint --template template.yaml --region us-east-1

test: lint typecheck pytest templates

events: venv
	$(PYTHON) -m localdev.generate_events

demo: venv
	$(PYTHON) -m localdev.demo $(ARGS)

bench: venv
	$(PYTHON) -m bench $(ARGS)

build: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache .hypothesis
